"""X-Ray trace headers as W3C `traceparent` values (the CloudEvents tracing extension)."""

from __future__ import annotations

_HEX = frozenset("0123456789abcdefABCDEF")


def xray_fields(header: object) -> dict[str, str]:
    """`Root=1-...;Parent=...;Sampled=1` as a dict; the first occurrence of a key wins."""
    fields: dict[str, str] = {}
    if isinstance(header, str):
        for part in header.split(";"):
            key, sep, value = part.partition("=")
            if sep:
                fields.setdefault(key.strip(), value.strip())
    return fields


def xray_to_traceparent(header: object) -> str | None:
    """`Root=1-5759e988-bd862e3f...;Parent=53995c3f42cd8ad8;Sampled=1` -> `00-5759e988bd86...-01`.

    None when the header is missing or malformed, or has no `Parent` (a traceparent needs a
    parent span id and inventing one would attach the event to a span that never existed).
    `Sampled=1` gives the sampled flag `01`; anything else (0, `?`, absent) gives `00`.
    """
    fields = xray_fields(header)
    root = fields.get("Root", "")  # 1-<8 hex: epoch seconds>-<24 hex>
    parent = fields.get("Parent", "")
    if not (len(root) == 35 and root[:2] == "1-" and root[10] == "-" and len(parent) == 16):
        return None
    trace_id = root[2:10] + root[11:]
    if not _HEX.issuperset(trace_id) or not _HEX.issuperset(parent):
        return None
    trace_id = trace_id.lower()
    parent_id = parent.lower()
    if trace_id == "0" * 32 or parent_id == "0" * 16:  # invalid in W3C trace context
        return None
    flags = "01" if fields.get("Sampled") == "1" else "00"
    return f"00-{trace_id}-{parent_id}-{flags}"
