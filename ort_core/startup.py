"""Cold start, shared by every front end: plugins, then the bridge, then ``on_init``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from ort_core.config import SIGNATURES, FunctionConfig
from ort_core.context import Context
from ort_core.errors import FunctionError
from ort_core.middleware import load_middlewares
from ort_core.pipeline import Pipeline
from ort_core.plugins import Hooks, PluginLoadError, load_plugins
from ort_core.workers.prelaunch import stop_unadopted

if TYPE_CHECKING:
    from ort_core.bridge import Bridge
    from ort_core.middleware import Middleware
    from ort_core.plugins import HookObserver


def start_function(
    config: FunctionConfig,
    environ: Mapping[str, str] | None = None,
    extra_plugins: Iterable[object] = (),
    on_expiry: Callable[[FunctionError, Context], None] | None = None,
    observer: HookObserver | None = None,
) -> Pipeline:
    """Load plugins and start the handler's bridge; any failure is a ``FunctionError``.

    The error types are Lambda's init errors (``Runtime.ImportModuleError``,
    ``Runtime.HandlerNotFound``...) or ``Runtime.PluginError`` for a broken plugin.
    ``observer`` receives every hook call (the testing kit records what plugins saw).
    """
    if config.signature not in SIGNATURES:
        raise FunctionError(
            "Runtime.InvalidEntrypoint",
            f"ORT_SIGNATURE={config.signature!r}: use one of {', '.join(SIGNATURES)}",
        )
    try:
        hooks = load_plugins(environ, extra_plugins, observer)
    except PluginLoadError as exc:
        raise FunctionError("Runtime.PluginError", str(exc)) from None
    bridge = launch_bridge(hooks, config)
    middlewares: list[Middleware] = []
    try:
        middlewares = load_middlewares(os.environ if environ is None else environ)
        hooks.on_init(config, bridge)
    except FunctionError:
        bridge.stop()
        for middleware in middlewares:
            middleware.close()
        raise
    return Pipeline(hooks, bridge, on_expiry, config.timeout_margin_ms, middlewares)


def launch_bridge(hooks: Hooks, config: FunctionConfig) -> Bridge:
    if not config.handler:
        raise FunctionError(
            "Runtime.MalformedHandlerName", "No handler: set _HANDLER or pass --handler"
        )
    bridge = hooks.launch_language(config)
    if bridge is None:
        module = config.handler.rpartition(".")[0] or config.handler
        languages = config.language or "any installed language"
        raise FunctionError(
            "Runtime.ImportModuleError",
            f"Unable to import module '{module}': no plugin found handler "
            f"'{config.handler}' for {languages} in {config.task_root} "
            "(set ORT_LANGUAGE, and check `ort plugins`)",
        )
    try:
        bridge.start()
    finally:
        stop_unadopted()  # a worker started early for a bridge that did not come
    return bridge
