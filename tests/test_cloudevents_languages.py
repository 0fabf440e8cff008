"""The same AWS events reach Python, Node and Deno handlers as the same CloudEvents."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from test_events import (
    ALB,
    CLOUDEVENT,
    CLOUDEVENT_BINARY,
    EVENTBRIDGE,
    FUNCTION_URL,
    LOGS,
    SCHEDULED,
    SNS,
)

from ort_core import Context, FunctionConfig
from ort_core.events.aws import to_cloudevents
from ort_core.events.cloudevent import to_structured_json
from ort_core.startup import start_function

EVENTS = {
    "sns": SNS,
    "eventbridge": EVENTBRIDGE,
    "scheduled": SCHEDULED,
    "logs": LOGS,
    "cloudevent": CLOUDEVENT,
    "cloudevent-binary": CLOUDEVENT_BINARY,
    "function-url": FUNCTION_URL,
    "alb": ALB,
    "unknown": {"anything": ["goes", 1]},
}

# Each echoes what it received: the spec's attributes, and the data (bytes as base64).
HANDLERS = {
    "python": (
        "echo_python.py",
        """
import base64

def handler(event, context):
    data = event.get_data()
    if isinstance(data, bytes):
        data = {"base64": base64.b64encode(data).decode()}
    return {"id": event.get_id(), "source": event.get_source(), "type": event.get_type(),
            "subject": event.get_subject(), "data": data}
""",
    ),
    "node": (
        "echo_node.js",
        """
exports.handler = async (event) => ({
  id: event.id, source: event.source, type: event.type, subject: event.subject ?? null,
  data: Buffer.isBuffer(event.data) ? {base64: event.data.toString('base64')} : event.data ?? null,
});
""",
    ),
    "deno": (
        "echo_deno.ts",
        """
export const handler = async (event: Record<string, unknown>) => {
  const data = event.data instanceof Uint8Array
    ? { base64: btoa(String.fromCharCode(...event.data)) }
    : event.data ?? null;
  return { id: event.id, source: event.source, type: event.type,
           subject: event.subject ?? null, data };
};
""",
    ),
}


@pytest.fixture(scope="module", params=[*HANDLERS, "python-subprocess"])
def echo(request, tmp_path_factory, monkeypatch_module):
    language = request.param.removesuffix("-subprocess")
    if request.param == "python-subprocess":
        monkeypatch_module.setenv("ORT_PYTHON_MODE", "subprocess")
    folder = tmp_path_factory.mktemp(request.param)
    name, source = HANDLERS[language]
    name = name.replace("echo_python", "echo_python_" + request.param.replace("-", "_"))
    (folder / name).write_text(source)
    config = FunctionConfig(
        handler=f"{Path(name).stem}.handler",
        task_root=str(folder),
        language=language,
        signature="cloudevent",
    )
    pipeline = start_function(config, {"ORT_PLUGINS": f"ort-{language}"})
    if request.param == "python-subprocess":
        assert type(pipeline.bridge).__name__ == "WorkerBridge"
    yield config, pipeline
    pipeline.close()
    monkeypatch_module.delenv("ORT_PYTHON_MODE", raising=False)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def expected(event: object) -> dict:
    _, [mapped] = to_cloudevents(event, request_id="req-echo")
    document = to_structured_json(mapped)
    data = document.get("data")
    if "data_base64" in document:
        data = {"base64": document["data_base64"]}
    elif isinstance(data, dict) and data.get("isBase64Encoded") and "body" in data:
        pass  # an HTTP request's body, already base64 text in structured form
    return {
        "id": document["id"],
        "source": document["source"],
        "type": document["type"],
        "subject": document.get("subject"),
        "data": data,
    }


@pytest.mark.parametrize("name", list(EVENTS))
def test_the_handler_receives_the_mapped_cloudevent(echo, name):
    config, pipeline = echo
    context = Context("req-echo", int(time.time() * 1000) + 30_000, config)
    answer = json.loads(pipeline.invoke(json.dumps(EVENTS[name]).encode(), context))
    if isinstance(answer, dict) and "statusCode" in answer:  # an HTTP trigger's response
        answer = json.loads(answer["body"])
    assert answer == expected(EVENTS[name])


def test_binary_data_arrives_as_bytes_in_every_language(echo):
    config, pipeline = echo
    context = Context("req-echo", int(time.time() * 1000) + 30_000, config)
    answer = json.loads(pipeline.invoke(json.dumps(CLOUDEVENT_BINARY).encode(), context))
    assert base64.b64decode(answer["data"]["base64"]) == base64.b64decode(
        CLOUDEVENT_BINARY["data_base64"]
    )


def test_executables_read_the_structured_cloudevent_on_stdin(tmp_path):
    (tmp_path / "echo.sh").write_text("#!/bin/sh\ncat\n")
    (tmp_path / "echo.sh").chmod(0o755)
    config = FunctionConfig(
        handler="echo.sh", task_root=str(tmp_path), language="executable", signature="cloudevent"
    )
    pipeline = start_function(config, {"ORT_PLUGINS": ""})
    try:
        context = Context("req-echo", int(time.time() * 1000) + 30_000, config)
        answer = json.loads(pipeline.invoke(json.dumps(EVENTBRIDGE).encode(), context))
    finally:
        pipeline.close()
    _, [mapped] = to_cloudevents(EVENTBRIDGE, request_id="req-echo")
    assert answer == to_structured_json(mapped)


FAILING_ORDER = {  # each raises for the record whose data says order 1
    "python": (
        "batch_python.py",
        "def handler(event, context):\n"
        "    if event.get_data()['order'] == 1:\n"
        "        raise ValueError('order 1')\n",
    ),
    "node": (
        "batch_node.js",
        "exports.handler = async (event) => { if (event.data.order === 1) throw new Error('1'); };",
    ),
    "deno": (
        "batch_deno.ts",
        "export const handler = (event: {data: {order: number}}) => {\n"
        "  if (event.data.order === 1) throw new Error('order 1');\n};\n",
    ),
}


@pytest.mark.parametrize("language", list(FAILING_ORDER))
def test_each_language_gets_one_cloudevent_per_record_and_fails_only_one(tmp_path, language):
    from test_signatures import SQS_BATCH

    name, source = FAILING_ORDER[language]
    (tmp_path / name).write_text(source)
    config = FunctionConfig(
        handler=f"{Path(name).stem}.handler",
        task_root=str(tmp_path),
        language=language,
        signature="cloudevent",
    )
    pipeline = start_function(config, {"ORT_PLUGINS": f"ort-{language}"})
    try:
        context = Context("req-batch", int(time.time() * 1000) + 30_000, config)
        answer = json.loads(pipeline.invoke(json.dumps(SQS_BATCH).encode(), context))
    finally:
        pipeline.close()
    assert answer == {"batchItemFailures": [{"itemIdentifier": "msg-1"}]}
