"""CloudEvents 1.0 as plain Python, and the two ways out: the SDK's CloudEvent, structured JSON.

A `Mapped` pair holds spec attribute names with string values (``time`` as an RFC 3339 string)
and the data. Building one costs no SDK import (about 14 ms at cold start); `to_cloudevent`
imports the SDK on first use, `to_structured_json` never does.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False  # typing's own constant would import typing
if TYPE_CHECKING:
    import re
    from typing import Any

SPECVERSION = "1.0"
JSON = "application/json"
TEXT = "text/plain"
BINARY = "application/octet-stream"


class Mapped(tuple):
    """One CloudEvent: its attributes (spec names, `time` an RFC 3339 string) and its data.

    A named pair, written out rather than made by typing.NamedTuple, whose generated code costs
    a fraction of a millisecond at import.
    """

    __slots__ = ()

    def __new__(cls, attributes: dict[str, Any], data: Any) -> Mapped:
        return tuple.__new__(cls, (attributes, data))

    @property
    def attributes(self) -> dict[str, Any]:
        return self[0]

    @property
    def data(self) -> Any:
        return self[1]

    def __repr__(self) -> str:
        return f"Mapped(attributes={self[0]!r}, data={self[1]!r})"


def new_id() -> str:
    """A random (version 4) UUID, without importing uuid."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_RFC3339 = (
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)  # compiled on first use: re caches it, and importing this module stays cheap
_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _fields(text: object) -> re.Match[str] | None:
    """The regex match of a valid RFC 3339 timestamp that `datetime` can hold, else None."""
    if not isinstance(text, str):
        return None
    import re

    match = re.fullmatch(_RFC3339, text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    if year < 1 or not 1 <= month <= 12 or hour > 23 or minute > 59 or second > 59:
        return None  # a leap second (60) has no datetime either
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if not 1 <= day <= _DAYS[month - 1] + (month == 2 and leap):
        return None
    if match[8] and (int(match[9]) > 23 or int(match[10]) > 59):
        return None
    return match


def rfc3339(text: object) -> str | None:
    """`text` when it is a valid RFC 3339 timestamp, else None."""
    return text if _fields(text) is not None else None  # type: ignore[return-value]


def epoch_time(value: object, per_second: int = 1) -> str | None:
    """An epoch number (seconds, or milliseconds with ``per_second=1000``) as RFC 3339 UTC.

    Strings of digits count (SQS sends its timestamps so); booleans, NaN and values outside the
    years 1-9999 give None.
    """
    if isinstance(value, str):
        try:
            value = float(value) if "." in value or "e" in value.lower() else int(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int):
        millis = value * 1000 // per_second
    else:
        scaled = value * (1000 / per_second)
        if scaled - scaled != 0:  # NaN or infinite
            return None
        millis = round(scaled)
    seconds, millis = divmod(millis, 1000)
    try:
        tm = time.gmtime(seconds)
    except (OverflowError, OSError, ValueError):
        return None
    if not 1 <= tm.tm_year <= 9999:
        return None
    return (
        f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d}"
        f"T{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}.{millis:03d}Z"
    )


def now_time() -> str:
    """The current time as RFC 3339 UTC, millisecond precision."""
    return epoch_time(time.time()) or "1970-01-01T00:00:00.000Z"


def to_datetime(text: str) -> Any:
    """An RFC 3339 string as a timezone-aware datetime (sub-microsecond digits are dropped)."""
    from datetime import datetime, timedelta, timezone

    match = _fields(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    fraction = match[7]
    micros = int((fraction[1:] + "000000")[:6]) if fraction else 0
    if match[8]:
        offset = timedelta(hours=int(match[9]), minutes=int(match[10]))
        tz = timezone(-offset if match[8] == "-" else offset)
    else:
        tz = timezone.utc
    year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    return datetime(year, month, day, hour, minute, second, micros, tzinfo=tz)


def to_cloudevent(mapped: Mapped) -> Any:
    """The SDK's `cloudevents.core.v1.event.CloudEvent` (what Python handlers get).

    Imports the SDK on first call. `time` becomes a datetime, as the SDK requires.
    """
    from cloudevents.core.v1.event import CloudEvent

    attributes = dict(mapped.attributes)
    if "time" in attributes:
        attributes["time"] = to_datetime(attributes["time"])
    return CloudEvent(attributes=attributes, data=mapped.data)


def to_structured_json(mapped: Mapped) -> dict[str, Any]:
    """The structured-mode JSON object (a dict for json.dumps), for handlers in other languages.

    Bytes data goes to `data_base64`; bytes at the top level of a data object (an HTTP body)
    are written as base64 strings, which the object's `isBase64Encoded` announces. Absent data
    (None) writes no `data` member.
    """
    event = dict(mapped.attributes)
    data = mapped.data
    if isinstance(data, (bytes, bytearray)):
        event["data_base64"] = _b64(data)
    elif isinstance(data, dict) and any(isinstance(v, (bytes, bytearray)) for v in data.values()):
        event["data"] = {
            k: _b64(v) if isinstance(v, (bytes, bytearray)) else v for k, v in data.items()
        }
    elif data is not None:
        event["data"] = data
    return event


def _b64(raw: bytes | bytearray) -> str:
    import base64

    return base64.b64encode(raw).decode("ascii")


def from_structured_json(event: dict[str, Any]) -> Mapped:
    """The attributes and data of a structured-mode CloudEvent (``data_base64`` decoded)."""
    attributes = {k: v for k, v in event.items() if k not in ("data", "data_base64")}
    if "data_base64" in event:
        import base64

        return Mapped(attributes, base64.b64decode(event["data_base64"]))
    return Mapped(attributes, event.get("data"))


def from_sdk(event: Any) -> dict[str, Any]:
    """The structured-mode JSON object of an SDK CloudEvent (what a Python handler returned)."""
    attributes = {
        name: value.isoformat().replace("+00:00", "Z") if hasattr(value, "isoformat") else value
        for name, value in event.get_attributes().items()
    }
    return to_structured_json(Mapped(attributes, event.get_data()))
