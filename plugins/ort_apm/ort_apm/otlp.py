"""OTLP/HTTP's JSON encoding of traces and metrics, written out with ``json``.

The encoding is protobuf's JSON mapping of OpenTelemetry's messages with OTLP's own rules:
lowerCamelCase field names, trace and span ids as hex strings (not base64), enums as
integers, 64-bit integers as decimal strings. A collector reads it at
``Content-Type: application/json``.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]

TYPE_CHECKING = False  # typing's own constant would import typing
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

    from ort_apm.spans import Span

# AggregationTemporality
CUMULATIVE = 2


def any_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):  # not JSON numbers
            return {"stringValue": str(value)}
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [any_value(item) for item in value]}}
    return {"stringValue": str(value)}


def key_values(attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value": any_value(value)} for key, value in attributes.items()]


# JSON strings, written by json's own C encoder (the OTLP keys below are plain ASCII)
_string = encode_basestring_ascii
_encoded: dict[tuple[str, type, Any], str] = {}  # attributes repeat across invocations


def _value_json(value: Any) -> str:
    if value is True:
        return '{"boolValue":true}'
    if value is False:
        return '{"boolValue":false}'
    if isinstance(value, int):
        return f'{{"intValue":"{int(value)}"}}'
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return '{"stringValue":' + _string(str(value)) + "}"
        return '{"doubleValue":' + repr(value) + "}"
    if isinstance(value, str):
        return '{"stringValue":' + _string(value) + "}"
    if isinstance(value, (list, tuple)):
        return '{"arrayValue":{"values":[' + ",".join(map(_value_json, value)) + "]}}"
    return '{"stringValue":' + _string(str(value)) + "}"


def _key_value_json(key: str, value: Any) -> str:
    cache_key = (key, value.__class__, value) if not isinstance(value, list) else None
    if cache_key is not None:
        found = _encoded.get(cache_key)
        if found is not None:
            return found
    encoded = '{"key":' + _string(key) + ',"value":' + _value_json(value) + "}"
    if cache_key is not None:
        if len(_encoded) >= 4096:
            _encoded.clear()
        _encoded[cache_key] = encoded
    return encoded


def attributes_json(attributes: Mapping[str, Any]) -> str:
    return "[" + ",".join([_key_value_json(k, v) for k, v in attributes.items()]) + "]"


def span_json(span: Span) -> str:
    """One span as OTLP JSON text. Its ids are hex already checked (ort-apm's own, or a
    worker's that :func:`ort_apm.spans.from_worker` validated), so they are written as they are.
    """
    parts = [
        f'{{"traceId":"{span.trace_id}","spanId":"{span.span_id}"',
        f',"parentSpanId":"{span.parent_id}"' if span.parent_id else "",
        ',"name":',
        _string(span.name),
        f',"kind":{span.kind},"startTimeUnixNano":"{span.start_ns}",'
        f'"endTimeUnixNano":"{span.end_ns}","attributes":',
        attributes_json(span.attributes),
    ]
    if span.events:
        events = [
            f'{{"timeUnixNano":"{at}","name":{_string(name)},"attributes":'
            f"{attributes_json(attributes)}}}"
            for name, at, attributes in span.events
        ]
        parts.append(',"events":[' + ",".join(events) + "]")
    if span.status_code:
        message = span.status_message
        parts.append(f',"status":{{"code":{span.status_code}')
        parts.append(f',"message":{_string(message)}}}' if message else "}")
    parts.append("}")
    return "".join(parts)


class TracesEncoder:
    """ExportTraceServiceRequest bodies for one resource and scope, whose JSON is written once."""

    def __init__(self, resource: Mapping[str, Any], scope: Mapping[str, str]) -> None:
        self._head = (
            '{"resourceSpans":[{"resource":{"attributes":'
            + attributes_json(resource)
            + '},"scopeSpans":[{"scope":'
            + json.dumps(dict(scope), separators=(",", ":"))
            + ',"spans":['
        ).encode()

    def __call__(self, spans: Iterable[Span]) -> bytes:
        return self._head + ",".join([span_json(s) for s in spans]).encode() + b"]}]}]}"


def traces_body(
    resource: Mapping[str, Any], scope: Mapping[str, str], spans: Iterable[Span]
) -> bytes:
    """An ExportTraceServiceRequest: one resource, one instrumentation scope."""
    return TracesEncoder(resource, scope)(spans)


def metrics_body(
    resource: Mapping[str, Any], scope: Mapping[str, str], metrics: list[dict[str, Any]]
) -> bytes:
    """An ExportMetricsServiceRequest around metrics from :meth:`ort_apm.metrics.Metrics.otlp`."""
    request = {
        "resourceMetrics": [
            {
                "resource": {"attributes": key_values(resource)},
                "scopeMetrics": [{"scope": dict(scope), "metrics": metrics}],
            }
        ]
    }
    return json.dumps(request, separators=(",", ":")).encode()
