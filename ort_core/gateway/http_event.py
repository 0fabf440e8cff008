"""HTTP requests as Scaleway's events, and answers as HTTP responses.

The event is what Scaleway's core runtime hands its sub-runtimes (an API Gateway v1-like
request), except that ``isBase64Encoded`` is true only for a body that is not UTF-8 text.
An answer is shaped as on Lambda's HTTP triggers (:func:`ort_core.signatures.http_answer`):
``{statusCode, headers, body, isBase64Encoded}`` is the response, a CloudEvent goes out in
binary mode, anything else is 200 with JSON.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qsl

# The JWT's headers: checked by the gateway, never handed to the function (nor to its logs).
TOKEN_HEADERS = frozenset({"scw-functions-token", "scw_functions_token"})
# The server frames the body itself; a function's own values would contradict it.
FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})


def request_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-cased names; repeated headers joined with ``, `` as RFC 9110 allows."""
    headers: dict[str, str] = {}
    for name_bytes, value_bytes in raw:
        name = name_bytes.decode("latin-1").lower()
        value = value_bytes.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def request_event(
    method: str, path: str, query: bytes, headers: dict[str, str], body: bytes
) -> dict[str, Any]:
    """Scaleway's HTTP event for one request."""
    try:
        text, binary = body.decode(), False
    except UnicodeDecodeError:
        text, binary = base64.b64encode(body).decode(), True
    parameters = dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True))
    return {
        "path": path,
        "httpMethod": method,
        "headers": {name: value for name, value in headers.items() if name not in TOKEN_HEADERS},
        "multiValueHeaders": None,
        "queryStringParameters": parameters,
        "multiValueQueryStringParameters": None,
        "stageVariables": {},
        "body": text,
        "isBase64Encoded": binary,
        "requestContext": {"httpMethod": method, "path": path, "stage": ""},
    }


def trigger_event(body: bytes) -> bytes:
    """A non-HTTP trigger's body is the event: JSON as it is (a cron's arguments), any other
    text as a JSON string."""
    try:
        json.loads(body)
    except ValueError:
        return json.dumps(body.decode(errors="replace")).encode()
    return body


def response_parts(answer: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """(status, headers, body) for an answer shaped by ``http_answer``."""
    status = answer.get("statusCode")
    if not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError(f"statusCode {status!r} is not an HTTP status")
    body = answer.get("body")
    if body is None:
        payload = b""
    elif answer.get("isBase64Encoded"):
        payload = base64.b64decode(body)
    else:
        payload = str(body).encode()
    headers = answer.get("headers") or {}
    if not isinstance(headers, dict):
        raise ValueError("headers is not an object")
    pairs = [
        (str(name).encode(), str(value).encode())
        for name, value in headers.items()
        if str(name).lower() not in FRAMING_HEADERS
    ]
    return status, pairs, payload
