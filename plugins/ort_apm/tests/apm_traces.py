"""Assertions on received traces, shared by ort-apm's end-to-end tests."""

from __future__ import annotations

import base64
import socket
from pathlib import Path
from typing import Any

PRELOADS = Path(__file__).resolve().parents[1] / "ort_apm" / "preload"


ID_FIELDS = {"traceId": 16, "spanId": 8, "parentSpanId": 8}


def hex_ids_to_base64(value: Any) -> Any:
    """OTLP/JSON writes ids in hex where protobuf's JSON mapping wants base64: convert, and
    check each id is hex of the right length on the way."""
    if isinstance(value, list):
        return [hex_ids_to_base64(item) for item in value]
    if not isinstance(value, dict):
        return value
    converted = {}
    for key, item in value.items():
        if key in ID_FIELDS and isinstance(item, str) and item:
            raw = bytes.fromhex(item)
            assert len(raw) == ID_FIELDS[key] and item == item.lower(), f"{key}={item!r}"
            converted[key] = base64.b64encode(raw).decode()
        else:
            converted[key] = hex_ids_to_base64(item)
    return converted


def any_value(value: Any) -> Any:
    """A protobuf AnyValue as a Python value."""
    which = value.WhichOneof("value")
    if which == "array_value":
        return [any_value(item) for item in value.array_value.values]
    return getattr(value, which) if which else None


def attributes(key_values: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in key_values}


REQUIRED_SERVER_ATTRIBUTES = {
    "faas.name": "traced",
    "faas.version": "$LATEST",
    "faas.max_memory": 256 * 1024 * 1024,
    "cloud.provider": "aws",
    "cloud.region": "eu-west-1",
    "cloud.account.id": "111122223333",
    "cloud.resource_id": "arn:aws:lambda:eu-west-1:111122223333:function:peer",
}


def trace(receiver: Any, trace_id: str, count: int = 1, timeout: float = 10) -> list[dict]:
    """The spans of one trace, once at least ``count`` arrived."""
    return receiver.wait_for(
        lambda: (
            (found := [s for s in receiver.spans() if s["trace_id"] == trace_id])
            and len(found) >= count
            and found
        ),
        timeout,
    ) or [s for s in receiver.spans() if s["trace_id"] == trace_id]


def one(spans: list[dict], **match: Any) -> dict:
    """The single span whose fields match (``name=``, ``kind=``...)."""
    found = [s for s in spans if all(s.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, [(s["name"], s["kind"]) for s in spans])
    return found[0]


def server_span(spans: list[dict]) -> dict:
    return one(spans, kind="server")


def assert_invocation_span(span: dict, request_id: str, coldstart: bool, trigger: str) -> None:
    assert span["name"] == "traced"
    attributes = span["attributes"]
    assert attributes["faas.invocation_id"] == request_id
    assert attributes["faas.trigger"] == trigger
    assert attributes["faas.coldstart"] is coldstart
    for key, value in REQUIRED_SERVER_ATTRIBUTES.items():
        assert attributes[key] == value, (key, attributes.get(key))
    assert span["resource"]["service.name"] == "traced"
    assert span["resource"]["cloud.provider"] == "aws"
    assert span["scope"] == "ort-apm"


def assert_nested(child: dict, parent: dict) -> None:
    assert child["parent_id"] == parent["span_id"], (child["name"], parent["name"])
    assert child["trace_id"] == parent["trace_id"]
    assert parent["start_ns"] <= child["start_ns"] <= child["end_ns"], child
    assert child["end_ns"] <= parent["end_ns"] + 1_000_000, (child, parent)  # clocks: 1 ms


def assert_exported_after_the_answer_before_the_next_event(
    spans: list[dict], peer: Any, result: Any
) -> None:
    """ort-apm's default: the export is off the answer's latency, yet done before the runtime
    asks for the next event, which is when Lambda may freeze the sandbox."""
    asked_ms = peer.next_request_after(result.received_ms)
    arrived = [span["received_ms"] for span in spans]
    assert result.received_ms <= min(arrived) and max(arrived) <= asked_ms, (
        result.received_ms,
        arrived,
        asked_ms,
    )


def traceparent_ids(value: str) -> tuple[str, str, str]:
    version, trace_id, span_id, flags = value.split("-")
    assert version == "00" and len(trace_id) == 32 and len(span_id) == 16, value
    return trace_id, span_id, flags


def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on (connections are refused)."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def preload_exists(language: str) -> bool:
    """Whether ort-apm's worker-side preload for ``language`` is there."""
    names = {"node": "node.cjs", "deno": "deno.ts", "python": "python.py"}
    return (PRELOADS / names[language]).is_file()
