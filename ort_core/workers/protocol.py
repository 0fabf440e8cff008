"""ORT's worker protocol on the wire: a message is a JSON header and a raw body, each
preceded by its length as a 4-byte big-endian unsigned integer (docs/worker-protocol.md).

Bodies are never re-encoded, so any JSON payload (or any bytes) passes byte-exact.
"""

from __future__ import annotations

import json
import socket
from typing import Any, BinaryIO

MAX_PART = 64 * 1024 * 1024  # far above Lambda's 6 MB; anything bigger is a broken peer


class ProtocolError(Exception):
    """The peer closed the channel or sent something that is not a message."""


def event_bytes(event: Any, context: Any) -> bytes:
    """The event as JSON for a worker: a worker's answer (bytes) as it is, the bytes the front
    end received when this is their value untouched (``Context.event_body``: no encoding
    again, 6 ms for 1 MB), else encoded."""
    if isinstance(event, bytes):  # pipeline.JSONBytes
        return event
    received = getattr(context, "event_body", None)
    if received is not None and received[0] is event:
        return received[1]
    return json.dumps(event).encode()


def write_message(channel: socket.socket, header: dict[str, Any], body: bytes = b"") -> None:
    head = json.dumps(header).encode()
    channel.sendall(len(head).to_bytes(4, "big") + head + len(body).to_bytes(4, "big"))
    if body:
        channel.sendall(body)


def read_message(reader: BinaryIO) -> tuple[dict[str, Any], bytes]:
    head = _read_part(reader)
    try:
        header = json.loads(head)
    except ValueError as exc:
        raise ProtocolError(f"a message header is not JSON: {head[:100]!r}") from exc
    if not isinstance(header, dict) or "type" not in header:
        raise ProtocolError(f"a message header has no type: {head[:100]!r}")
    return header, _read_part(reader)


def _read_part(reader: BinaryIO) -> bytes:
    prefix = reader.read(4)
    if len(prefix) < 4:
        raise ProtocolError("the worker closed its channel")
    size = int.from_bytes(prefix, "big")
    if size > MAX_PART:
        raise ProtocolError(f"a message part of {size} bytes is over the {MAX_PART} limit")
    data = reader.read(size)
    if len(data) < size:
        raise ProtocolError("the worker closed its channel in the middle of a message")
    return data
