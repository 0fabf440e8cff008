"""ort-apm: OpenTelemetry traces and metrics for ORT functions, in any language.

Everything here is cheap to import: the plugin module is read at every cold start where ort-apm
is installed, and does nothing unless :func:`enabled` says so.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's own constant would import typing
if TYPE_CHECKING:
    from collections.abc import Mapping

__version__ = "0.1.0"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def enabled(environ: Mapping[str, str]) -> bool:
    """On when an OTLP endpoint is configured or ``ORT_APM=1``; ``ORT_APM=0`` or
    ``OTEL_SDK_DISABLED=true`` turn it off whatever else is set."""
    switch = environ.get("ORT_APM", "").strip().lower()
    if switch in _FALSE or environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if switch in _TRUE:
        return True
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    )
