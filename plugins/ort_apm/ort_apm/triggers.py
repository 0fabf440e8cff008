"""What an event says for tracing: its ``faas.trigger``, the incoming trace context, and a few
attributes (the HTTP method and path, the CloudEvent's id, source and type).

The pipeline's hooks see the event in the function's signature: a structured CloudEvent
(``ORT_SIGNATURE=cloudevent``, ORT's default; its type names the AWS source), the HTTP request
object (``http``), or Lambda's own event (``raw``), recognised by the same shapes as ORT's
mappers in ``ort_core/events/aws.py``.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's own constant would import typing
if TYPE_CHECKING:
    from typing import Any

HTTP_TYPES = frozenset(
    {
        "com.amazonaws.apigateway.request",
        "com.amazonaws.lambda.url.request",
        "com.amazonaws.elasticloadbalancing.request",
    }
)
TYPE_PREFIXES = (
    ("com.amazonaws.sqs.", "pubsub"),
    ("com.amazonaws.sns.", "pubsub"),
    ("com.amazonaws.kinesis.", "pubsub"),
    ("com.amazonaws.logs.", "pubsub"),
    ("com.amazonaws.s3.", "datasource"),
    ("com.amazonaws.dynamodb.", "datasource"),
)
RECORD_SOURCES = {
    "aws:sqs": "pubsub",
    "aws:sns": "pubsub",
    "aws:kinesis": "pubsub",
    "aws:s3": "datasource",
    "aws:dynamodb": "datasource",
}
_CLOUDEVENT_REQUIRED = ("specversion", "id", "source", "type")


class Described:
    """The trigger, the W3C traceparent the event carries (HTTP header first, then the
    CloudEvent's extension), and attributes for the invocation span."""

    __slots__ = ("attributes", "traceparents", "trigger")

    def __init__(self, trigger: str) -> None:
        self.trigger = trigger
        self.traceparents: list[str] = []
        self.attributes: dict[str, Any] = {}


def describe(event: Any, signature: str | None) -> Described:
    if not isinstance(event, dict):
        return Described("other")
    if _is_cloudevent(event):
        return _cloudevent(event)
    if signature == "http" and isinstance(event.get("headers"), dict) and "method" in event:
        described = Described("http")  # the request object of ORT_SIGNATURE=http
        _http(described, event.get("method"), event.get("path"), event.get("headers"))
        return described
    return _raw(event)


def _is_cloudevent(event: dict[str, Any]) -> bool:
    return all(isinstance(event.get(name), str) for name in _CLOUDEVENT_REQUIRED)


def _cloudevent(event: dict[str, Any]) -> Described:
    kind = event["type"]
    if kind in HTTP_TYPES:
        trigger = "http"
    elif kind == "Scheduled Event" and event["source"] == "aws.events":
        trigger = "timer"
    else:
        trigger = next((t for prefix, t in TYPE_PREFIXES if kind.startswith(prefix)), None)
        if trigger is None:  # EventBridge's AWS sources; any other CloudEvent is "other"
            trigger = "pubsub" if event["source"].startswith("aws.") else "other"
    described = Described(trigger)
    data = event.get("data")
    if trigger == "http" and isinstance(data, dict):
        _http(described, data.get("method"), data.get("path"), data.get("headers"))
    if isinstance(event.get("traceparent"), str):
        described.traceparents.append(event["traceparent"])
    described.attributes.update(
        {
            "cloudevents.event_id": event["id"],
            "cloudevents.event_source": event["source"],
            "cloudevents.event_type": kind,
            "cloudevents.event_spec_version": event["specversion"],
        }
    )
    if isinstance(event.get("subject"), str):
        described.attributes["cloudevents.event_subject"] = event["subject"]
    return described


def _raw(event: dict[str, Any]) -> Described:
    records = event.get("Records")
    if isinstance(records, list) and records and isinstance(records[0], dict):
        first = records[0]
        source = first.get("eventSource") or first.get("EventSource")
        if source in RECORD_SOURCES:
            return Described(RECORD_SOURCES[source])
    context = event.get("requestContext")
    if isinstance(context, dict):
        http = context.get("http")
        if event.get("version") == "2.0" and isinstance(http, dict):
            described = Described("http")
            path = event.get("rawPath") if isinstance(event.get("rawPath"), str) else None
            _http(described, http.get("method"), path or http.get("path"), _headers(event))
            return described
        if isinstance(context.get("elb"), dict) or "httpMethod" in event:
            described = Described("http")
            _http(described, event.get("httpMethod"), event.get("path"), _headers(event))
            return described
    if "detail-type" in event and "source" in event:
        scheduled = event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
        return Described("timer" if scheduled else "pubsub")
    if isinstance(event.get("awslogs"), dict):
        return Described("pubsub")
    return Described("other")


def _headers(event: dict[str, Any]) -> dict[str, str]:
    """Header names lower-cased, from ``headers`` or ``multiValueHeaders`` (first value)."""
    found: dict[str, str] = {}
    multi = event.get("multiValueHeaders")
    if isinstance(multi, dict):
        for name, values in multi.items():
            if isinstance(name, str) and isinstance(values, list) and values:
                if isinstance(values[0], str):
                    found.setdefault(name.lower(), values[0])
    single = event.get("headers")
    if isinstance(single, dict):
        for name, value in single.items():
            if isinstance(name, str) and isinstance(value, str):
                found.setdefault(name.lower(), value)
    return found


def _http(described: Described, method: object, path: object, headers: object) -> None:
    if isinstance(method, str) and method:
        described.attributes["http.request.method"] = method.upper()
    if isinstance(path, str) and path:
        described.attributes["url.path"] = path
    if isinstance(headers, dict):
        for name, value in headers.items():
            if isinstance(name, str) and name.lower() == "traceparent" and isinstance(value, str):
                described.traceparents.insert(0, value)  # the caller's W3C context comes first
                break
