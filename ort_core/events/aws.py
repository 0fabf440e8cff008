"""AWS Lambda events as CloudEvents 1.0: one small mapper per event source.

`to_cloudevents(event)` tries the mappers of `SOURCES` in order; the first that recognises the
event's shape maps it, one `Mapped` per record for sources that deliver records. An event no
mapper recognises becomes one generic CloudEvent carrying the raw event, so no JSON value makes
it raise. docs/events.md holds the table of ids, sources, types, subjects, times and data.

Importing this module imports no cloudevents SDK; base64, zlib and urllib.parse load only for
the events that need them.
"""

from __future__ import annotations

import json

from ort_core.events.cloudevent import (
    BINARY,
    JSON,
    SPECVERSION,
    TEXT,
    Mapped,
    epoch_time,
    new_id,
    now_time,
    rfc3339,
    to_cloudevent,
    to_structured_json,
)
from ort_core.events.tracing import xray_fields, xray_to_traceparent

TYPE_CHECKING = False  # typing's own constant would import typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Mapper = Callable[[dict[str, Any], "_Invocation"], "list[Mapped] | None"]

__all__ = [
    "BATCH_KINDS",
    "FAAS_TRIGGER",
    "SOURCES",
    "UNKNOWN_SOURCE",
    "UNKNOWN_TYPE",
    "Mapped",
    "batch_response",
    "record_ids",
    "to_cloudevent",
    "to_cloudevents",
    "to_structured_json",
]

UNKNOWN_TYPE = "com.amazonaws.lambda.invoke"
UNKNOWN_SOURCE = "aws:lambda"
BATCH_KINDS = frozenset({"sqs", "kinesis", "dynamodb"})
# OpenTelemetry's faas.trigger for each kind
FAAS_TRIGGER = {
    "cloudevent": "other",
    "sqs": "pubsub",
    "sns": "pubsub",
    "s3": "datasource",
    "dynamodb": "datasource",
    "kinesis": "pubsub",
    "lambda.url": "http",
    "apigateway.v2": "http",
    "alb": "http",
    "apigateway.v1": "http",
    "scheduled": "timer",
    "eventbridge": "pubsub",
    "logs": "pubsub",
    "unknown": "other",
}

# Tests set this to let a mapper's exception through; otherwise a mapper that raises is skipped.
_STRICT = False


class _Invocation:
    """What the invocation, not the event, tells: request id, trace, function ARN, arrival."""

    __slots__ = ("function_arn", "now", "request_id", "traceparent")

    def __init__(self, trace_id: object, request_id: object, function_arn: object) -> None:
        self.request_id = _text(request_id)
        self.function_arn = _text(function_arn)
        self.traceparent = xray_to_traceparent(trace_id)
        self.now = now_time()

    def fallback_id(self, index: int | None = None) -> str:
        """The Lambda request id (with the record's index for records), else a random UUID."""
        if self.request_id is None:
            return new_id()
        return self.request_id if index is None else f"{self.request_id}:{index}"


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _obj(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _event(
    inv: _Invocation,
    *,
    id: object,
    source: object,
    default_source: str,
    type: str,
    data: Any,
    datacontenttype: str | None = JSON,
    subject: object = None,
    time: str | None = None,
    trace: object = None,
    index: int | None = None,
) -> Mapped:
    """Assemble a valid CloudEvent: missing or ill-typed values fall back, never raise.

    `time` is the occurrence time when the event carries one, else the invocation's arrival
    (the spec allows the producer's current time). `trace` is an X-Ray header the event
    carries itself (SQS's AWSTraceHeader, an HTTP request's X-Amzn-Trace-Id); when it does not
    convert, the invocation's trace id does.
    """
    attributes: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": _text(id) or inv.fallback_id(index),
        "source": _text(source) or default_source,
        "type": type,
        "time": time or inv.now,
    }
    if _text(subject):
        attributes["subject"] = subject
    if data is not None and datacontenttype:
        attributes["datacontenttype"] = datacontenttype
    traceparent = xray_to_traceparent(trace) or inv.traceparent
    if traceparent:
        attributes["traceparent"] = traceparent
    return Mapped(attributes, data)


def _reject_constant(name: str) -> Any:
    raise ValueError(name)  # NaN and Infinity are not JSON


def _json_container(text: str) -> tuple[bool, Any]:
    """(True, value) when `text` is a JSON object or array, else (False, None)."""
    if text.lstrip(" \t\r\n")[:1] not in ("{", "["):
        return False, None
    try:
        return True, json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False, None


def _payload(value: object) -> tuple[Any, str | None]:
    """A message body: a JSON object/array is decoded, any other string stays text."""
    if isinstance(value, str):
        ok, decoded = _json_container(value)
        return (decoded, JSON) if ok else (value, TEXT)
    return value, JSON


def _b64decode(text: object) -> bytes | None:
    if not isinstance(text, str):
        return None
    import base64
    import binascii

    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _blob(raw: bytes) -> tuple[Any, str]:
    """Decoded binary data: UTF-8 JSON object/array -> decoded, anything else stays bytes."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw, BINARY
    ok, decoded = _json_container(text)
    return (decoded, JSON) if ok else (raw, BINARY)


# -- a structured CloudEvent passes through --------------------------------------------------

_REQUIRED = ("specversion", "id", "source", "type")
_OPTIONAL_TEXT = ("subject", "datacontenttype", "dataschema")


def _cloudevent(event: dict[str, Any], inv: _Invocation) -> list[Mapped] | None:
    if event.get("specversion") != SPECVERSION or not all(_text(event.get(k)) for k in _REQUIRED):
        return None
    attributes: dict[str, Any] = {}
    for name, value in event.items():
        if name in ("data", "data_base64") or value is None:  # JSON null: the attribute is absent
            continue
        if name in _OPTIONAL_TEXT and not _text(value):
            return None
        if name == "time" and rfc3339(value) is None:
            return None
        if name not in _REQUIRED and name not in _OPTIONAL_TEXT and name != "time":
            if not _is_extension_name(name) or not isinstance(value, (str, int)):  # bool is int
                return None
        attributes[name] = value
    data = event.get("data")
    encoded = event.get("data_base64")
    if encoded is not None:
        if data is not None:
            return None  # the spec forbids both
        data = _b64decode(encoded)
        if data is None:
            return None
    return [Mapped(attributes, data)]


def _is_extension_name(name: str) -> bool:
    return bool(name) and name.isascii() and name.isalnum() and name == name.lower()


# -- records: SQS, SNS, S3, DynamoDB Streams, Kinesis ----------------------------------------


def _records(event: dict[str, Any], key: str, value: str) -> list[Any] | None:
    """Event["Records"] when its first record says `key: value` (e.g. eventSource: aws:sqs)."""
    records = event.get("Records")
    if isinstance(records, list) and records and _obj(records[0]).get(key) == value:
        return records
    return None


def _sqs_record(raw: Any, inv: _Invocation, index: int) -> Mapped:
    record = _obj(raw)
    attributes = _obj(record.get("attributes"))
    data, content_type = _payload(record.get("body"))
    return _event(
        inv,
        id=record.get("messageId"),
        source=record.get("eventSourceARN"),
        default_source="aws:sqs",
        type="com.amazonaws.sqs.message",
        data=data,
        datacontenttype=content_type,
        time=epoch_time(attributes.get("SentTimestamp"), 1000),
        trace=attributes.get("AWSTraceHeader"),
        index=index,
    )


def _sns_record(raw: Any, inv: _Invocation, index: int) -> Mapped:
    record = _obj(raw)
    sns = _obj(record.get("Sns"))
    message_type = _text(sns.get("Type")) or "message"
    data, content_type = _payload(sns.get("Message"))
    return _event(
        inv,
        id=sns.get("MessageId"),
        # the adapter: a Notification's source is its subscription ARN
        source=_text(record.get("EventSubscriptionArn")) or sns.get("TopicArn"),
        default_source="aws:sns",
        type=f"com.amazonaws.sns.{message_type}",
        data=data,
        datacontenttype=content_type,
        subject=sns.get("Subject"),
        time=rfc3339(sns.get("Timestamp")),
        index=index,
    )


def _s3_record(raw: Any, inv: _Invocation, index: int) -> Mapped:
    record = _obj(raw)
    response = _obj(record.get("responseElements"))
    s3 = _obj(record.get("s3"))
    ids = [_text(response.get("x-amz-request-id")), _text(response.get("x-amz-id-2"))]
    where = [
        _text(record.get("eventSource")),
        _text(record.get("awsRegion")),
        _text(_obj(s3.get("bucket")).get("name")),
    ]
    name = _text(record.get("eventName")) or "event"
    return _event(
        inv,
        id=".".join(part for part in ids if part),
        source=".".join(part for part in where if part),
        default_source="aws:s3",
        type=f"com.amazonaws.s3.{name}",
        data=raw,
        subject=_obj(s3.get("object")).get("key"),
        time=rfc3339(record.get("eventTime")),
        index=index,
    )


def _dynamodb_record(raw: Any, inv: _Invocation, index: int) -> Mapped:
    record = _obj(raw)
    change = record.get("dynamodb")
    arn = _text(record.get("eventSourceARN"))
    name = _text(record.get("eventName")) or "record"
    return _event(
        inv,
        id=record.get("eventID"),
        source=arn.split("/stream/", 1)[0] if arn else None,  # the table's ARN
        default_source="aws:dynamodb",
        type=f"com.amazonaws.dynamodb.{name}",
        data=change,
        time=epoch_time(_obj(change).get("ApproximateCreationDateTime")),
        index=index,
    )


def _kinesis_record(raw: Any, inv: _Invocation, index: int) -> Mapped:
    record = _obj(raw)
    kinesis = _obj(record.get("kinesis"))
    encoded = kinesis.get("data")
    raw = _b64decode(encoded)
    if raw is not None:
        data, content_type = _blob(raw)
    else:  # not base64: passed on as it came
        data, content_type = encoded, (TEXT if isinstance(encoded, str) else JSON)
    return _event(
        inv,
        id=record.get("eventID"),
        source=record.get("eventSourceARN"),
        default_source="aws:kinesis",
        type="com.amazonaws.kinesis.record",
        data=data,
        datacontenttype=content_type,
        subject=kinesis.get("partitionKey"),
        time=epoch_time(kinesis.get("approximateArrivalTimestamp")),
        index=index,
    )


# -- HTTP: function URLs, API Gateway HTTP APIs (v2) and REST APIs (v1), ALB ------------------


def _function_url(event: dict[str, Any], inv: _Invocation) -> list[Mapped] | None:
    if not _is_v2(event):
        return None
    if ".lambda-url." not in (_text(event["requestContext"].get("domainName")) or ""):
        return None
    return [_http_v2(event, inv, "com.amazonaws.lambda.url.request", "aws:lambda")]


def _apigateway_v2(event: dict[str, Any], inv: _Invocation) -> list[Mapped] | None:
    if not _is_v2(event):
        return None
    return [_http_v2(event, inv, "com.amazonaws.apigateway.request", "aws:apigateway")]


def _is_v2(event: dict[str, Any]) -> bool:
    context = event.get("requestContext")
    return event.get("version") == "2.0" and isinstance(_obj(context).get("http"), dict)


def _http_v2(event: dict[str, Any], inv: _Invocation, type: str, default: str) -> Mapped:
    context = event["requestContext"]
    path = event.get("rawPath")
    if not isinstance(path, str):
        path = context["http"].get("path")
    headers = _headers(event)
    cookies = event.get("cookies")
    if isinstance(cookies, list):  # v2 moves the Cookie header here
        jar = "; ".join(c for c in cookies if isinstance(c, str))
        if jar:
            headers["cookie"] = f"{headers['cookie']}; {jar}" if "cookie" in headers else jar
    raw_query = event.get("rawQueryString")
    if isinstance(raw_query, str):
        from urllib.parse import parse_qsl

        query: dict[str, list[str]] = {}
        for key, value in parse_qsl(raw_query, keep_blank_values=True):
            query.setdefault(key, []).append(value)
    else:
        query = _query(event, decode=False)
    return _http(
        inv,
        event,
        type=type,
        default_source=default,
        source=_https(context.get("domainName")) or _https(headers.get("host")),
        id=context.get("requestId"),
        time=epoch_time(context.get("timeEpoch"), 1000),
        method=context["http"].get("method"),
        path=path,
        query=query,
        headers=headers,
        context=context,
    )


def _alb(event: dict[str, Any], inv: _Invocation) -> list[Mapped] | None:
    context = event.get("requestContext")
    elb = _obj(context).get("elb")
    if not isinstance(elb, dict):
        return None
    headers = _headers(event)
    trace = xray_fields(headers.get("x-amzn-trace-id"))
    return [
        _http(
            inv,
            event,
            type="com.amazonaws.elasticloadbalancing.request",
            default_source="aws:elasticloadbalancing",
            source=elb.get("targetGroupArn"),
            # ALB gives no request id: its trace id (Self when it added one to a caller's) is
            # per request; then Lambda's request id
            id=_text(trace.get("Self")) or trace.get("Root"),
            time=None,
            method=event.get("httpMethod"),
            path=event.get("path"),
            query=_query(event, decode=True),  # ALB passes the query string undecoded
            headers=headers,
            context=context,
        )
    ]


def _apigateway_v1(event: dict[str, Any], inv: _Invocation) -> list[Mapped] | None:
    context = event.get("requestContext")
    if "httpMethod" not in event or not isinstance(context, dict):
        return None
    headers = _headers(event)
    return [
        _http(
            inv,
            event,
            type="com.amazonaws.apigateway.request",
            default_source="aws:apigateway",
            source=_https(context.get("domainName")) or _https(headers.get("host")),
            id=context.get("requestId"),
            time=epoch_time(context.get("requestTimeEpoch"), 1000),
            method=event.get("httpMethod"),
            path=event.get("path"),
            query=_query(event, decode=False),
            headers=headers,
            context=context,
        )
    ]


def _https(host: object) -> str | None:
    return f"https://{host}" if _text(host) else None


def _headers(event: dict[str, Any]) -> dict[str, str]:
    """Header names lowercased; several values of one name joined with ', ' ('; ' for cookie)."""
    multi = event.get("multiValueHeaders")
    pairs: list[tuple[str, str]] = []
    if isinstance(multi, dict) and multi:
        for name, values in multi.items():
            if isinstance(values, list):
                pairs.extend((name, v) for v in values if isinstance(v, str))
    else:
        pairs = [(k, v) for k, v in _obj(event.get("headers")).items() if isinstance(v, str)]
    headers: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        if key in headers:
            value = headers[key] + ("; " if key == "cookie" else ", ") + value
        headers[key] = value
    return headers


def _query(event: dict[str, Any], *, decode: bool) -> dict[str, list[str]]:
    """Query parameters, each with its list of values, from the multi-value form when given."""
    multi = event.get("multiValueQueryStringParameters")
    pairs: list[tuple[str, str]] = []
    if isinstance(multi, dict) and multi:
        for name, values in multi.items():
            if isinstance(values, list):
                pairs.extend((name, v) for v in values if isinstance(v, str))
    else:
        single = _obj(event.get("queryStringParameters"))
        pairs = [(k, v) for k, v in single.items() if isinstance(v, str)]
    if decode:
        from urllib.parse import unquote_plus

        pairs = [(unquote_plus(k), unquote_plus(v)) for k, v in pairs]
    query: dict[str, list[str]] = {}
    for name, value in pairs:
        query.setdefault(name, []).append(value)
    return query


def _http(
    inv: _Invocation,
    event: dict[str, Any],
    *,
    type: str,
    default_source: str,
    source: object,
    id: object,
    time: str | None,
    method: object,
    path: object,
    query: dict[str, list[str]],
    headers: dict[str, str],
    context: object,
) -> Mapped:
    body = event.get("body")
    binary = event.get("isBase64Encoded") is True and isinstance(body, str)
    if binary:
        decoded = _b64decode(body)
        if decoded is None:  # claimed base64 but is not: passed on as text
            binary = False
        else:
            body = decoded
    elif not isinstance(body, str):
        body = None
    path_parameters = event.get("pathParameters")
    request = {
        "method": method if isinstance(method, str) else "",
        "path": path if isinstance(path, str) else "",
        "query": query,
        "headers": headers,
        "body": body,
        "isBase64Encoded": binary,
        "pathParameters": path_parameters if isinstance(path_parameters, dict) else {},
        "requestContext": _obj(context),
    }
    return _event(
        inv,
        id=id,
        source=source,
        default_source=default_source,
        type=type,
        data=request,
        subject=request["path"],
        time=time,
        trace=headers.get("x-amzn-trace-id"),
    )


# -- EventBridge (scheduled events included) and CloudWatch Logs ------------------------------


def _scheduled(event: dict[str, Any], inv: _Invocation) -> list[Mapped] | None:
    if event.get("detail-type") != "Scheduled Event" or event.get("source") != "aws.events":
        return None
    return _eventbridge(event, inv)


def _eventbridge(event: dict[str, Any], inv: _Invocation) -> list[Mapped] | None:
    if "detail-type" not in event or "source" not in event:
        return None
    resources = event.get("resources")
    only = resources[0] if isinstance(resources, list) and len(resources) == 1 else None
    return [
        _event(
            inv,
            id=event.get("id"),
            source=event.get("source"),
            default_source="aws:events",
            type=_text(event.get("detail-type")) or "com.amazonaws.events.event",
            data=event.get("detail"),
            subject=only,  # the one resource the event concerns (a schedule's rule ARN)
            time=rfc3339(event.get("time")),
        )
    ]


_LOGS_LIMIT = 64 * 1024 * 1024  # decompressed; CloudWatch Logs sends at most ~1 MB


def _logs(event: dict[str, Any], inv: _Invocation) -> list[Mapped] | None:
    raw = _b64decode(_obj(event.get("awslogs")).get("data"))
    if raw is None:
        return None
    import zlib

    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip
    try:
        text = inflater.decompress(raw, _LOGS_LIMIT)
    except zlib.error:
        return None
    if inflater.unconsumed_tail:
        return None
    ok, payload = _json_container(text.decode("utf-8", "replace"))
    if not ok or not isinstance(payload, dict):
        return None
    log_events = payload.get("logEvents")
    first = _obj(log_events[0]) if isinstance(log_events, list) and log_events else {}
    message_type = _text(payload.get("messageType")) or "message"
    return [
        _event(
            inv,
            id=first.get("id"),
            source=payload.get("logGroup"),
            default_source="aws:logs",
            type=f"com.amazonaws.logs.{message_type}",
            data=payload,
            subject=payload.get("logStream"),
            time=epoch_time(first.get("timestamp"), 1000),
        )
    ]


# -- the registry and the entry points --------------------------------------------------------


# Tried in order; a mapper returns None for a shape that is not its own. Specific shapes come
# before the general ones they resemble (function URLs are v2 events, ALB events look like v1,
# scheduled events are EventBridge events).
def _per_record(
    key: str, value: str, record_mapper: Callable[[Any, _Invocation, int], Mapped]
) -> Mapper:  # record mappers take the record as it came (S3's data is the record itself)
    """A mapper for events whose ``Records[0][key]`` is ``value``: one CloudEvent a record."""

    def mapper(event: dict[str, Any], inv: _Invocation) -> list[Mapped] | None:
        records = _records(event, key, value)
        if records is None:
            return None
        return [record_mapper(record, inv, i) for i, record in enumerate(records)]

    return mapper


SOURCES: list[tuple[str, Mapper]] = [
    ("cloudevent", _cloudevent),
    ("sqs", _per_record("eventSource", "aws:sqs", _sqs_record)),
    ("sns", _per_record("EventSource", "aws:sns", _sns_record)),
    ("s3", _per_record("eventSource", "aws:s3", _s3_record)),
    ("dynamodb", _per_record("eventSource", "aws:dynamodb", _dynamodb_record)),
    ("kinesis", _per_record("eventSource", "aws:kinesis", _kinesis_record)),
    ("lambda.url", _function_url),
    ("apigateway.v2", _apigateway_v2),
    ("alb", _alb),
    ("apigateway.v1", _apigateway_v1),
    ("scheduled", _scheduled),
    ("eventbridge", _eventbridge),
    ("logs", _logs),
]


def _unknown(event: Any, inv: _Invocation) -> Mapped:
    return _event(
        inv,
        id=None,
        source=inv.function_arn,
        default_source=UNKNOWN_SOURCE,
        type=UNKNOWN_TYPE,
        data=event,
    )


def to_cloudevents(
    event: Any,
    *,
    trace_id: str | None = None,
    request_id: str | None = None,
    function_arn: str | None = None,
) -> tuple[str, list[Mapped]]:
    """(kind, CloudEvents) for a Lambda event: one per record for SQS, SNS, S3, Kinesis and
    DynamoDB, one otherwise. Never raises for a JSON value.

    `trace_id` is the invocation's X-Ray header (Lambda-Runtime-Trace-Id), `request_id` its
    request id (an id for events that carry none), `function_arn` the source of events no
    mapper recognises (kind "unknown", type `com.amazonaws.lambda.invoke`).
    """
    inv = _Invocation(trace_id, request_id, function_arn)
    if isinstance(event, dict):
        for kind, mapper in SOURCES:
            try:
                mapped = mapper(event, inv)
            except Exception:
                if _STRICT:
                    raise
                mapped = None  # a shape that fooled a mapper's detection: try the next
            if mapped:
                return kind, mapped
    return "unknown", [_unknown(event, inv)]


_RECORD_ID_PATH = {
    "sqs": ("messageId",),
    "kinesis": ("kinesis", "sequenceNumber"),
    "dynamodb": ("dynamodb", "SequenceNumber"),
}


def record_ids(kind: str, event: Any) -> list[str]:
    """The `itemIdentifier` of each record, in record order, for a partial batch response.

    SQS: messageId; Kinesis: kinesis.sequenceNumber; DynamoDB: dynamodb.SequenceNumber. A
    record without one gets "" (Lambda then retries the whole batch, the safe failure). Other
    kinds have no partial batch response: [].
    """
    path = _RECORD_ID_PATH.get(kind)
    records = _obj(event).get("Records")
    if path is None or not isinstance(records, list):
        return []
    ids = []
    for record in records:
        value: Any = record
        for key in path:
            value = _obj(value).get(key)
        ids.append(value if isinstance(value, str) else "")
    return ids


def batch_response(failed_ids: list[str]) -> dict[str, list[dict[str, str]]]:
    """Lambda's partial batch response: the records to retry (none: an empty list)."""
    return {"batchItemFailures": [{"itemIdentifier": i} for i in failed_ids]}
