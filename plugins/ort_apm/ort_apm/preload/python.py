"""ort-apm's preload for ORT's Python worker (``ORT_PRELOAD``, docs/worker-protocol.md).

Times the handler's outgoing HTTP calls (``http.client``, so ``urllib.request`` and what else
is built on it), passes their trace context on, and leaves their spans in
``builtins.__ort_spans__``, which the worker sends to ORT after the invocation's result. The
handler itself is timed by the worker (``time_handler``), whose span ORT builds. No
OpenTelemetry SDK: spans are plain dicts, OTLP-like, times in epoch nanoseconds. Only
invocations with a traceparent (the handler span's context, from ORT) are traced. Standard
library only, and cheap: ``http.client`` is patched when something imports it, not imported
here.
"""

from __future__ import annotations

import builtins
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds to import: only for type checkers
    from typing import Any

_HEX = frozenset("0123456789abcdef")

spans: list[dict[str, Any]] = getattr(builtins, "__ort_spans__", None) or []
_current: tuple[str, str] | None = None  # the handler span's trace id and span id, while it runs
_flags = "01"  # the invocation's trace flags (sampled or not), passed on downstream
_open: dict[str, dict[str, Any]] = {}  # client spans not ended yet: ended with the handler's


def _finish(span: dict[str, Any]) -> None:
    if span["endTimeUnixNano"] is None:
        span["endTimeUnixNano"] = time.time_ns()
        _open.pop(span["spanId"], None)
        spans.append(span)


def _fail(span: dict[str, Any], exc: BaseException) -> None:
    span["status"] = {"code": "error", "message": str(exc)}
    span["attributes"]["error.type"] = getattr(exc, "error_type", None) or type(exc).__name__


def around_handler(context: Any, call: Any) -> Any:
    """The seam: ORT's worker calls this around the handler; ``call()`` runs it. The
    handler's outgoing calls are its children, and end with it at the latest."""
    global _current, _flags
    traceparent = getattr(context, "traceparent", None)
    if not (  # 00-<trace id>-<span id>-<flags>, lower-case hex
        isinstance(traceparent, str)
        and len(traceparent) == 55
        and traceparent[:3] == "00-"
        and traceparent[35] == traceparent[52] == "-"
        and _HEX.issuperset(traceparent[3:35] + traceparent[36:52] + traceparent[53:])
    ):
        return call()
    _current = (traceparent[3:35], traceparent[36:52])
    _flags = traceparent[53:]
    try:
        return call()
    finally:
        _current = None
        for client in list(_open.values()):  # still running: ended with the invocation
            _finish(client)


# -- http.client --------------------------------------------------------------------------------


def _client_span(connection: Any, method: str, url: str) -> dict[str, Any]:
    assert _current is not None
    https = getattr(connection, "default_port", 80) == 443
    tunnel = getattr(connection, "_tunnel_host", None)  # through a proxy: where it goes
    host = tunnel or connection.host
    port = connection._tunnel_port if tunnel else connection.port
    if url.startswith(("http://", "https://")):  # a proxy's absolute form
        full = url
    else:
        shown = f"[{host}]" if ":" in host else host
        if port != (443 if https else 80):
            shown = f"{shown}:{port}"
        full = f"{'https' if https else 'http'}://{shown}{url}"
    span = {
        "traceId": _current[0],
        "spanId": os.urandom(8).hex(),
        "parentSpanId": _current[1],
        "name": method,
        "kind": "client",
        "startTimeUnixNano": time.time_ns(),
        "endTimeUnixNano": None,
        "attributes": {
            "http.request.method": method,
            "url.full": full,
            "server.address": host,
            "server.port": port,
        },
        "status": {"code": "unset", "message": ""},
    }
    _open[span["spanId"]] = span
    return span


def _patch(module: Any) -> None:
    cls = module.HTTPConnection
    if getattr(cls, "_ort_apm", False):
        return
    putrequest, endheaders, getresponse = cls.putrequest, cls.endheaders, cls.getresponse

    def _putrequest(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        span = self._ort_span = None
        if _current is not None:
            try:
                span = self._ort_span = _client_span(self, method, url)
            except Exception:
                pass  # never fail the request for its span
        try:
            return putrequest(self, method, url, *args, **kwargs)
        except BaseException as exc:
            if span is not None:
                _fail(span, exc)
                _finish(span)
            raise

    def _endheaders(self: Any, *args: Any, **kwargs: Any) -> Any:
        span = getattr(self, "_ort_span", None)
        if span is not None:
            if not any(line.lower().startswith(b"traceparent:") for line in self._buffer):
                self.putheader("traceparent", f"00-{span['traceId']}-{span['spanId']}-{_flags}")
        try:
            return endheaders(self, *args, **kwargs)
        except BaseException as exc:
            if span is not None:
                _fail(span, exc)
                _finish(span)
            raise

    def _getresponse(self: Any) -> Any:
        span = getattr(self, "_ort_span", None)
        self._ort_span = None
        try:
            response = getresponse(self)
        except BaseException as exc:
            if span is not None:
                _fail(span, exc)
                _finish(span)
            raise
        if span is not None:
            span["attributes"]["http.response.status_code"] = response.status
            if response.status >= 400:
                span["status"] = {"code": "error", "message": ""}
                span["attributes"]["error.type"] = str(response.status)
            _finish(span)
        return response

    cls.putrequest, cls.endheaders, cls.getresponse = _putrequest, _endheaders, _getresponse
    cls._ort_apm = True


class _PatchOnImport:
    """Patches ``http.client`` when it is first imported, rather than importing it now."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "http.client":
            return None
        sys.meta_path.remove(self)
        for finder in sys.meta_path:
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is not None and hasattr(loader, "exec_module"):
            exec_module = loader.exec_module

            def exec_and_patch(module: Any) -> None:
                exec_module(module)
                _patch(module)

            loader.exec_module = exec_and_patch
        return spec


if not hasattr(builtins, "__ort_around_handler__"):
    builtins.__ort_spans__ = spans  # type: ignore[attr-defined]
    builtins.__ort_around_handler__ = around_handler  # type: ignore[attr-defined]
    if "http.client" in sys.modules:
        _patch(sys.modules["http.client"])
    else:
        sys.meta_path.insert(0, _PatchOnImport())
