"""Outgoing HTTP spans for Python handlers that run in ORT's own process.

A worker's preload does this inside the worker; for ``ORT_PYTHON_MODE=in-process`` ORT's
process is the handler's, so ort-apm patches ``http.client.HTTPConnection`` here: every
request made through it (``urllib.request``, and urllib3/requests, whose connections subclass
it) gets a CLIENT span, child of the handler span, and a ``traceparent`` header naming that
span unless the caller set its own. ``http.client`` is patched when it is first imported (an
import hook), never imported for this: its import costs about 20 ms.

Spans belong to the invocation running on the calling thread; a request from another thread
(a handler's worker thread) belongs to the invocation in flight when there is exactly one.
"""

from __future__ import annotations

import sys
import threading
import time

from ort_apm.spans import KIND_CLIENT, Span, new_span_id, traceparent

TYPE_CHECKING = False  # typing's own constant would import typing
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any

MAX_SPANS = 1000  # per invocation: a handler looping over requests must not grow memory


class Recorder:
    """The client spans of one invocation, under its handler span: recording from its
    creation (on the calling thread) until ``end``."""

    __slots__ = ("closed", "handler_span_id", "lock", "sampled", "spans", "trace_id")

    def __init__(self, trace_id: str, handler_span_id: str, sampled: bool) -> None:
        self.trace_id = trace_id
        self.handler_span_id = handler_span_id
        self.sampled = sampled
        self.spans: list[Span] = []
        self.closed = False
        self.lock = threading.Lock()
        _local.recorder = self
        _active[id(self)] = self

    def add(self, span: Span) -> None:
        with self.lock:
            if not self.closed and len(self.spans) < MAX_SPANS:
                self.spans.append(span)

    def end(self) -> list[Span]:
        """Stop recording; the spans recorded."""
        _active.pop(id(self), None)
        if getattr(_local, "recorder", None) is self:
            _local.recorder = None
        with self.lock:
            self.closed = True
            spans, self.spans = self.spans, []
        return spans


_local = threading.local()
_active: dict[int, Recorder] = {}


def current() -> Recorder | None:
    recorder = getattr(_local, "recorder", None)
    if recorder is None and len(_active) == 1:
        recorder = next(iter(_active.values()), None)
    return None if recorder is None or recorder.closed else recorder


# -- the patch ----------------------------------------------------------------------------------


class _Pending:
    """A request between ``putrequest`` and ``getresponse``."""

    __slots__ = ("attributes", "method", "recorder", "span_id", "start_ns", "user_traceparent")

    def __init__(self, recorder: Recorder, connection: Any, method: str, url: str) -> None:
        self.recorder = recorder
        self.span_id = new_span_id()
        self.start_ns = time.time_ns()
        self.method = method
        self.user_traceparent = False
        host = getattr(connection, "_tunnel_host", None) or connection.host
        port = getattr(connection, "_tunnel_port", None) or connection.port
        default_port = getattr(connection, "default_port", 80)
        scheme = "https" if default_port == 443 else "http"
        if url.startswith(("http://", "https://")):  # through a proxy: the absolute URL
            full = url
        else:
            netloc = f"[{host}]" if ":" in host else host
            if port != default_port:
                netloc = f"{netloc}:{port}"
            full = f"{scheme}://{netloc}{url}"
        self.attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.full": full,
            "server.address": host,
            "server.port": port,
        }

    def header(self) -> str:
        recorder = self.recorder
        return traceparent(recorder.trace_id, self.span_id, recorder.sampled)

    def finish(self, status: int | None = None, error: BaseException | None = None) -> None:
        recorder = self.recorder
        if not recorder.sampled:
            return
        span = Span(
            recorder.trace_id,
            self.span_id,
            recorder.handler_span_id,
            self.method,
            KIND_CLIENT,
            self.start_ns,
            time.time_ns(),
            self.attributes,
        )
        if status is not None:
            span.attributes["http.response.status_code"] = status
            if status >= 400:
                span.attributes["error.type"] = str(status)
                span.fail(f"HTTP {status}")
        if error is not None:
            span.attributes["error.type"] = type(error).__qualname__
            span.fail(f"{type(error).__qualname__}: {error}")
        recorder.add(span)


def patch(module: ModuleType) -> None:
    """Wrap ``HTTPConnection``'s request methods; idempotent."""
    cls = module.HTTPConnection
    if getattr(cls, "_ort_apm_patched", False):
        return
    putrequest, putheader = cls.putrequest, cls.putheader
    endheaders, getresponse = cls.endheaders, cls.getresponse

    def ort_apm_putrequest(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        self._ort_apm = None
        recorder = current()
        if recorder is not None and method != "CONNECT":
            try:
                self._ort_apm = _Pending(recorder, self, method, url)
            except Exception:
                self._ort_apm = None
        return putrequest(self, method, url, *args, **kwargs)

    def ort_apm_putheader(self: Any, header: Any, *values: Any) -> Any:
        pending = self._ort_apm
        if pending is not None:
            name = header.decode("latin-1") if isinstance(header, bytes) else str(header)
            if name.lower() == "traceparent":
                pending.user_traceparent = True  # the caller's own OpenTelemetry: theirs wins
        return putheader(self, header, *values)

    def ort_apm_endheaders(self: Any, *args: Any, **kwargs: Any) -> Any:
        pending = self._ort_apm
        if pending is not None and not pending.user_traceparent:
            pending.user_traceparent = True  # once
            putheader(self, "traceparent", pending.header())
        try:
            return endheaders(self, *args, **kwargs)
        except BaseException as exc:
            if pending is not None:
                self._ort_apm = None
                pending.finish(error=exc)
            raise

    def ort_apm_getresponse(self: Any, *args: Any, **kwargs: Any) -> Any:
        pending, self._ort_apm = self._ort_apm, None
        try:
            response = getresponse(self, *args, **kwargs)
        except BaseException as exc:
            if pending is not None:
                pending.finish(error=exc)
            raise
        if pending is not None:
            pending.finish(status=response.status)
        return response

    cls._ort_apm = None
    cls.putrequest = ort_apm_putrequest
    cls.putheader = ort_apm_putheader
    cls.endheaders = ort_apm_endheaders
    cls.getresponse = ort_apm_getresponse
    cls._ort_apm_patched = True


class _PatchingLoader:
    """Runs the real loader, then patches the module; anything else goes to the real loader."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        patch(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _ImportHook:
    """A meta path finder that only ever answers for ``http.client``, once."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "http.client":
            return None
        uninstall()
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


_hook = _ImportHook()


def install() -> None:
    """Patch http.client now if it is imported, else when it is."""
    module = sys.modules.get("http.client")
    if module is not None:
        patch(module)
    elif _hook not in sys.meta_path:
        sys.meta_path.insert(0, _hook)


def uninstall() -> None:
    if _hook in sys.meta_path:
        sys.meta_path.remove(_hook)
