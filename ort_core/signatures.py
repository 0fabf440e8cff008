"""The function's signature: what its handler receives, and how its answers map back.

``ORT_SIGNATURE``:

- ``raw``: the platform's event, as Lambda sends it (AWS's runtime clients do this);
- ``cloudevent`` (the default): one CloudEvent per event, or per record for SQS, Kinesis and
  DynamoDB batches (whose failures become Lambda's ``batchItemFailures``), in its structured
  JSON form; each language bridge makes it idiomatic (the ``cloudevents`` SDK's object in
  Python);
- ``http``: for HTTP triggers, the request object ``{method, path, query, headers, body...}``.

For HTTP triggers (API Gateway v1 and v2, function URLs, ALB) an answer is a CloudEvent (sent
back in binary mode), an HTTP response (``statusCode``...) or plain data (200, JSON).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, NamedTuple

from ort_core.config import SIGNATURES
from ort_core.events.aws import BATCH_KINDS, batch_response, record_ids, to_cloudevents
from ort_core.events.cloudevent import to_structured_json
from ort_core.pipeline import JSONBytes

__all__ = ["SIGNATURES", "Adapted", "adapt", "carried_cloudevent", "http_answer", "is_cloudevent"]
HTTP_KINDS = frozenset({"apigateway.v1", "apigateway.v2", "lambda.url", "alb"})
CE_ATTRIBUTES_NOT_HEADERS = ("data", "data_base64", "datacontenttype")


class Adapted(NamedTuple):
    """What the handler receives for one Lambda event, and how to combine its answers."""

    inputs: list[Any]
    record_ids: list[str] | None  # a batch: failures are reported per record
    answer: Callable[[list[Any]], Any]


def adapt(
    event: Any, signature: str, request_id: str, trace_id: str | None, function_arn: str | None
) -> Adapted:
    kind, mapped = to_cloudevents(
        event, trace_id=trace_id, request_id=request_id, function_arn=function_arn
    )
    if signature == "http" and kind in HTTP_KINDS:
        return Adapted([mapped[0].data], None, lambda answers: http_answer(value(answers[0])))
    if signature == "http":
        return Adapted([event], None, lambda answers: answers[0])
    inputs = [to_structured_json(item) for item in mapped]
    if kind in HTTP_KINDS:
        carried = carried_cloudevent(mapped[0].data)
        if carried is not None:  # the request is a CloudEvent in binary or structured mode
            inputs = [carried]
    if kind in BATCH_KINDS:
        return Adapted(inputs, record_ids(kind, event), batch_response)
    if kind in HTTP_KINDS:
        return Adapted(inputs, None, lambda answers: http_answer(value(answers[0])))
    return Adapted(
        inputs, None, lambda answers: answers[0] if len(answers) == 1 else list(map(value, answers))
    )


def value(answer: Any) -> Any:
    """A worker's JSON answer (sent on unchanged otherwise) as a value, to shape it."""
    return json.loads(answer) if isinstance(answer, JSONBytes) else answer


def carried_cloudevent(request: Any) -> dict[str, Any] | None:
    """The CloudEvent an HTTP request carries (``ce-`` headers, or a body of type
    ``application/cloudevents+json``), read with the SDK's HTTP binding; None if it carries
    none or a broken one."""
    headers = request.get("headers") if isinstance(request, dict) else None
    if not isinstance(headers, dict):
        return None
    content_type = str(headers.get("content-type", ""))
    if "ce-specversion" not in headers and not content_type.startswith(
        "application/cloudevents+json"
    ):
        return None
    from cloudevents.core.bindings.http import HTTPMessage, from_http_event

    from ort_core.events.cloudevent import from_sdk

    body = request.get("body") or b""
    try:
        message = HTTPMessage(
            headers={k: v for k, v in headers.items() if isinstance(v, str)},
            body=body if isinstance(body, bytes) else str(body).encode(),
        )
        return from_sdk(from_http_event(message))
    except Exception:
        return None


def is_cloudevent(value: Any) -> bool:
    return isinstance(value, dict) and {"specversion", "id", "source", "type"} <= value.keys()


def http_answer(answer: Any) -> dict[str, Any]:
    """Shape a handler's answer into the response API Gateway, ALB or a function URL expects."""
    if isinstance(answer, dict) and "statusCode" in answer:
        response = dict(answer)
        body = response.get("body")
        if body is not None and not isinstance(body, str):
            response["body"] = json.dumps(body)
        response.setdefault("isBase64Encoded", False)
        return response
    if is_cloudevent(answer):
        return _binary_mode(answer)
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(answer),
        "isBase64Encoded": False,
    }


def _binary_mode(event: dict[str, Any]) -> dict[str, Any]:
    """A structured CloudEvent as CloudEvents' HTTP binary mode: attributes as ``ce-`` headers."""
    headers = {
        f"ce-{name}": value if isinstance(value, str) else json.dumps(value)
        for name, value in event.items()
        if name not in CE_ATTRIBUTES_NOT_HEADERS
    }
    if "data_base64" in event:
        headers["content-type"] = event.get("datacontenttype", "application/octet-stream")
        return {
            "statusCode": 200,
            "headers": headers,
            "body": event["data_base64"],
            "isBase64Encoded": True,
        }
    data = event.get("data")
    content_type = event.get("datacontenttype", "application/json")
    headers["content-type"] = content_type
    if isinstance(data, str) and not content_type.endswith("json"):
        body = data
    elif isinstance(data, bytes):
        return {
            "statusCode": 200,
            "headers": headers,
            "body": base64.b64encode(data).decode(),
            "isBase64Encoded": True,
        }
    else:
        body = json.dumps(data)
    return {"statusCode": 200, "headers": headers, "body": body, "isBase64Encoded": False}
