"""The physical limit for Python: a bare Lambda Runtime API loop (bench reference)."""

import http.client
import importlib
import json
import os
import sys

sys.path.insert(0, os.environ["LAMBDA_TASK_ROOT"])
module_name, function_name = os.environ["_HANDLER"].rsplit(".", 1)
handler = getattr(importlib.import_module(module_name), function_name)
connection = http.client.HTTPConnection(*os.environ["AWS_LAMBDA_RUNTIME_API"].split(":"))
while True:
    connection.request("GET", "/2018-06-01/runtime/invocation/next")
    response = connection.getresponse()
    request_id = response.headers["Lambda-Runtime-Aws-Request-Id"]
    result = handler(json.loads(response.read()), None)
    connection.request(
        "POST", f"/2018-06-01/runtime/invocation/{request_id}/response", json.dumps(result)
    )
    connection.getresponse().read()
