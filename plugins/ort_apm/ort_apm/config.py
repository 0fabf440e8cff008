"""ort-apm's configuration: OpenTelemetry's standard ``OTEL_*`` variables, and ``ORT_APM_*``."""

from __future__ import annotations

from ort_apm.spans import Sampler, sampler_from_environ

TYPE_CHECKING = False  # typing's own constant would import typing
if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_ENDPOINT = "http://localhost:4318"


def _unquote(text: str) -> str:
    """Percent-decoding (W3C baggage octets, as OTEL_RESOURCE_ATTRIBUTES and the headers
    variables use), without urllib.parse."""
    if "%" not in text:
        return text
    raw = bytearray()
    index = 0
    data = text.encode()
    while index < len(data):
        if data[index] == 0x25 and _is_hex(data[index + 1 : index + 3]):
            raw.append(int(data[index + 1 : index + 3], 16))
            index += 3
        else:
            raw.append(data[index])
            index += 1
    return raw.decode("utf-8", "replace")


def _is_hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)


def key_value_list(text: str | None) -> dict[str, str]:
    """``k1=v1,k2=v2`` (percent-encoded) as a dict; malformed members are skipped."""
    found: dict[str, str] = {}
    for member in (text or "").split(","):
        key, sep, value = member.partition("=")
        key = _unquote(key.strip())
        if sep and key:
            found[key] = _unquote(value.strip())
    return found


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError:
        return default
    return value if value >= 0 else default


def _signal_endpoint(environ: Mapping[str, str], signal: str) -> str:
    """OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT as given, else the base endpoint + /v1/<signal>."""
    specific = environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT", "").strip()
    if specific:
        return specific
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or DEFAULT_ENDPOINT
    return f"{base.rstrip('/')}/v1/{signal}"


class Settings:
    """Everything ort-apm reads from the environment, once, at cold start."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.problems: list[str] = []
        self.traces_endpoint = _signal_endpoint(environ, "traces")
        self.metrics_endpoint = _signal_endpoint(environ, "metrics")
        common = key_value_list(environ.get("OTEL_EXPORTER_OTLP_HEADERS"))
        self.traces_headers = {
            **common,
            **key_value_list(environ.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS")),
        }
        self.metrics_headers = {
            **common,
            **key_value_list(environ.get("OTEL_EXPORTER_OTLP_METRICS_HEADERS")),
        }
        compression = (
            (
                environ.get("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION")
                or environ.get("OTEL_EXPORTER_OTLP_COMPRESSION")
                or "none"
            )
            .strip()
            .lower()
        )
        self.gzip = compression == "gzip"
        protocol = (
            (
                environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/json"
            )
            .strip()
            .lower()
        )
        if protocol != "http/json":
            self.problems.append(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: ort-apm sends http/json only, "
                "which OTLP/HTTP collectors accept on the same port"
            )
        self.export_timeout_ms = _positive_int(environ, "ORT_APM_EXPORT_TIMEOUT_MS", 100)
        mode = environ.get("ORT_APM_EXPORT_MODE", "").strip().lower() or "ack"
        if mode not in ("ack", "send"):
            self.problems.append(f"ORT_APM_EXPORT_MODE={mode!r}: use ack or send; ack")
            mode = "ack"
        self.wait_for_ack = mode == "ack"
        flush = environ.get("ORT_APM_FLUSH", "").strip().lower() or "after_answer"
        if flush not in ("after_answer", "before_answer"):
            self.problems.append(
                f"ORT_APM_FLUSH={flush!r}: use after_answer or before_answer; after_answer"
            )
            flush = "after_answer"
        self.flush_before_answer = flush == "before_answer"
        self.retry_ms = _positive_int(environ, "ORT_APM_RETRY_MS", 1000)
        self.metrics_interval_ms = _positive_int(environ, "OTEL_METRIC_EXPORT_INTERVAL", 60000)
        self.max_queue = _positive_int(environ, "OTEL_BSP_MAX_QUEUE_SIZE", 2048) or 2048
        self.max_batch = _positive_int(environ, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512) or 512
        self.resource_attributes = key_value_list(environ.get("OTEL_RESOURCE_ATTRIBUTES"))
        self.service_name = (
            environ.get("OTEL_SERVICE_NAME", "").strip()
            or self.resource_attributes.get("service.name")
            or None
        )
        self.sampler: Sampler
        self.sampler, problems = sampler_from_environ(environ)
        self.problems += problems
