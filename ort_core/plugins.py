"""Plugin discovery at cold start, and the typed facade the rest of the core calls hooks through.

Plugins are modules published in the entry-point group ``ort``. ``ORT_PLUGINS=a,b`` loads
only the named distributions (no scan of every installed package); ``ORT_DISABLE_PLUGINS``
blocks distributions or entry-point names; ``ORT_PLUGIN_MODULES`` registers importable
modules that are not packaged, as ``PYTEST_PLUGINS`` does for pytest (the function's task
root is importable, so a function can bring its own); ``ORT_PLUGIN_ORDER`` puts the plugins
it names first in every hook, in its order. ``ORT_TRACE_HOOKS=1`` logs every hook call with
its duration (logger ``ort.hooks``); unset, the hooks are called with no wrapper at all.
"""

from __future__ import annotations

import importlib
import logging
import os
import time

from ort_core.entry_points import entry_points, normalise
from ort_core.errors import FunctionError
from ort_core.markers import hookimpl as hookimpl
from ort_core.registry import Implementation, Registry

TYPE_CHECKING = False  # typing's own constant would import typing (3-7 ms)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

    import pluggy

    from ort_core.bridge import Bridge
    from ort_core.config import FunctionConfig
    from ort_core.context import Context

ENTRY_POINT_GROUP = "ort"
# Plugins that ship with ort-core, registered by module name (ORT_DISABLE_PLUGINS can block
# them by the last part of the name). Keep them cheap to import: they are on every cold start.
# pluggy asks the last registered first: with no language set, Scaleway's variables win over
# an executable handler file, and both over installed plugins.
BUILTIN_PLUGINS: tuple[str, ...] = ("ort_core.languages.executable", "ort_core.languages.scaleway")
# Hooks ORT calls implementation by implementation: pluggy wrappers cannot take part.
PLAIN_HOOKS = (
    "on_init",
    "observe_event",
    "before_event",
    "after_response",
    "on_error",
    "on_timeout",
    "after_answer",
    "on_shutdown",
)
log = logging.getLogger("ort")


class PluginLoadError(Exception):
    """A plugin could not be found, imported or registered; the message names it."""


class PluginInfo:
    """What ``ort plugins`` shows for one loaded plugin."""

    def __init__(self, name: str, distribution: str | None, version: str | None) -> None:
        self.name = name
        self.distribution = distribution
        self.version = version
        self.hooks: list[str] = []
        self.import_ms: float | None = None  # what importing it cost, for `ort plugins --verbose`


class HookCall:
    """One call of one hook implementation, as an observer of :class:`Hooks` receives it:
    ORT_TRACE_HOOKS logs it, the testing kit (``ort_core.testing``) records it."""

    __slots__ = ("arguments", "duration_ns", "error", "hook", "plugin", "result")

    def __init__(
        self,
        plugin: str,
        hook: str,
        arguments: dict[str, Any],
        result: Any,
        error: BaseException | None,
        duration_ns: int,
    ) -> None:
        self.plugin = plugin
        self.hook = hook
        self.arguments = arguments
        self.result = result
        self.error = error
        self.duration_ns = duration_ns

    def __repr__(self) -> str:
        outcome = f"raised {type(self.error).__name__}" if self.error else f"-> {self.result!r}"
        return f"HookCall({self.plugin}.{self.hook}({', '.join(self.arguments)}) {outcome})"


if TYPE_CHECKING:
    HookObserver = Callable[[HookCall], None]


def _names(value: str | None) -> list[str]:
    return [name.strip() for name in (value or "").split(",") if name.strip()]


def load_plugins(
    environ: Mapping[str, str] | None = None,
    extra: Iterable[object] = (),
    observer: HookObserver | None = None,
) -> Hooks:
    """Load every plugin once; raise PluginLoadError naming the first that fails.

    ``observer`` receives every hook call (the testing kit records them this way).
    """
    env = os.environ if environ is None else environ
    if env.get("ORT_TRACE_HOOKS", "") not in ("", "0"):
        observer = _traced(observer)
    registry = Registry()
    allowed = _names(env["ORT_PLUGINS"]) if "ORT_PLUGINS" in env else None
    blocked = {normalise(name) for name in _names(env.get("ORT_DISABLE_PLUGINS"))}
    infos: dict[str, PluginInfo] = {}

    try:
        found = entry_points(ENTRY_POINT_GROUP, allowed)
    except LookupError as missing:
        raise PluginLoadError(
            f"ORT_PLUGINS names {missing.args[0]!r}, which is not an installed distribution"
        ) from None
    for name in allowed or []:
        if not any(normalise(ep.distribution) == normalise(name) for ep in found):
            raise PluginLoadError(
                f"ORT_PLUGINS names {name!r}, whose distribution declares no "
                f"'{ENTRY_POINT_GROUP}' entry point"
            )
    for ep in found:
        if normalise(ep.distribution) in blocked or normalise(ep.name) in blocked:
            continue
        started = time.perf_counter()
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginLoadError(
                f"plugin {ep.name!r} ({ep.distribution} {ep.version}) failed to import "
                f"{ep.value!r}: {type(exc).__name__}: {exc}"
            ) from exc
        info = PluginInfo(ep.name, ep.distribution, ep.version)
        info.import_ms = (time.perf_counter() - started) * 1000
        infos[_register(registry, plugin, ep.name)] = info

    for module_name in BUILTIN_PLUGINS:
        name = module_name.rpartition(".")[2]
        if normalise(name) not in blocked:
            started = time.perf_counter()
            module = importlib.import_module(module_name)
            info = PluginInfo(name, "ort-core (built in)", None)
            info.import_ms = (time.perf_counter() - started) * 1000
            infos[_register(registry, module, name)] = info

    module_names = _names(env.get("ORT_PLUGIN_MODULES"))
    if module_names:
        import sys

        task_root = env.get("LAMBDA_TASK_ROOT") or os.getcwd()
        if task_root not in sys.path:  # the function's own middlewares, next to its code
            sys.path.insert(0, task_root)
    for module_name in module_names:
        started = time.perf_counter()
        try:
            plugin = importlib.import_module(module_name)
        except Exception as exc:
            raise PluginLoadError(
                f"plugin module {module_name!r} (ORT_PLUGIN_MODULES) failed to import: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        info = PluginInfo(module_name, None, None)
        info.import_ms = (time.perf_counter() - started) * 1000
        infos[_register(registry, plugin, module_name)] = info

    for plugin in extra:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        infos[_register(registry, plugin, name)] = PluginInfo(name, None, None)

    order = _names(env.get("ORT_PLUGIN_ORDER"))
    unknown = [name for name in order if name not in infos]
    if unknown:
        raise PluginLoadError(
            f"ORT_PLUGIN_ORDER names {', '.join(map(repr, unknown))}, which is not loaded "
            f"(loaded: {', '.join(infos)})"
        )
    return Hooks(registry, infos, order, observer)


def _register(registry: Registry, plugin: object, name: str) -> str:
    try:
        registry.register(plugin, name)
    except Exception as exc:  # ValueError or pluggy.PluginValidationError
        raise PluginLoadError(f"plugin {name!r} is invalid: {exc}") from exc
    for hook_name in PLAIN_HOOKS:
        for impl in registry.implementations(hook_name):
            if impl.plugin is plugin and (impl.hookwrapper or impl.wrapper):
                raise PluginLoadError(f"plugin {name!r}: {hook_name} cannot be a wrapper")
    return name


class Hooks:
    """The hooks, called by name with typed arguments; nothing else spells ``pm.hook``."""

    def __init__(
        self,
        registry: Registry,
        infos: dict[str, PluginInfo],
        order: list[str] | None = None,
        observer: HookObserver | None = None,
    ) -> None:
        self.registry = registry
        self._infos = infos
        self._rank = {name: rank for rank, name in enumerate(order or [])}
        self.ranked = list(order or [])  # ORT_PLUGIN_ORDER, for `ort plugins --verbose`
        self._observer = observer
        self.observe_event_chain = self.implementations("observe_event")
        self.before_event_chain = self.implementations("before_event")
        self.after_response_chain = self.implementations("after_response")[::-1]
        self.after_answer_chain = self.implementations("after_answer")
        # A worker's JSON answer is decoded for the chain only if some implementation reads it.
        self.after_response_reads_response = any(
            "response" in impl.argnames for impl in registry.implementations("after_response")
        )

    def implementations(self, hook_name: str) -> list[tuple[str, Callable[..., Any]]]:
        """(plugin name, implementation) in call order, callable with keywords: the plugins
        ``ORT_PLUGIN_ORDER`` lists first, in its order, then the others in pluggy's order.

        ORT threads each one's result into the next, which pluggy's own calling does not do.
        """
        return [
            (impl.plugin_name, self._caller(impl, hook_name)) for impl in self.ordered(hook_name)
        ]

    def _caller(self, impl: Implementation | pluggy.HookImpl, hook_name: str) -> Callable[..., Any]:
        if self._observer is not None:
            return _observed_caller(self._observer, impl, hook_name)
        return _keyword_caller(impl.function, impl.argnames)

    @property
    def manager(self) -> pluggy.PluginManager:
        """pluggy's manager of the same plugins, made on first use (not at cold start)."""
        return self.registry.manager

    def ordered(self, hook_name: str) -> list[Implementation | pluggy.HookImpl]:
        """The hook's implementations in the order ``implementations`` calls them."""
        impls = list(reversed(self.registry.implementations(hook_name)))
        last = len(self._rank)
        impls.sort(key=lambda impl: self._rank.get(impl.plugin_name, last))  # stable
        return impls

    def call_order(self, hook_name: str) -> list[Implementation | pluggy.HookImpl]:
        """The order in which ORT calls the hook's implementations: ``after_response`` in
        reverse, ``launch_language`` in pluggy's own order (its first answer wins)."""
        if hook_name == "launch_language":
            return list(reversed(self.registry.implementations("launch_language")))
        impls = self.ordered(hook_name)
        return impls[::-1] if hook_name == "after_response" else impls

    def launch_language(self, config: FunctionConfig) -> Bridge | None:
        impls = self.call_order("launch_language")
        if any(impl.hookwrapper or impl.wrapper for impl in impls):  # pluggy must run those
            started = time.perf_counter_ns()
            bridge = self.manager.hook.launch_language(config=config)
            if self._observer is not None:
                duration = time.perf_counter_ns() - started
                every = ",".join(impl.plugin_name for impl in impls)
                self._observer(
                    HookCall(every, "launch_language", {"config": config}, bridge, None, duration)
                )
            return bridge
        for impl in impls:  # what pluggy's firstresult does, one call at a time
            bridge = self._caller(impl, "launch_language")(config=config)
            if bridge is not None:
                return bridge
        return None

    def on_init(self, config: FunctionConfig, bridge: Bridge) -> None:
        """Raises PluginError naming the first plugin that fails."""
        for plugin_name, call in self.implementations("on_init"):
            call_plugin(plugin_name, "on_init", call, config=config, bridge=bridge)

    def observe_event(self, event: Any, context: Context) -> None:
        if self.observe_event_chain:
            self._notify("observe_event", self.observe_event_chain, event=event, context=context)

    def on_error(self, error: FunctionError, event: Any, context: Context) -> None:
        self._notify("on_error", error=error, event=event, context=context)

    def on_timeout(self, event: Any, context: Context) -> None:
        self._notify("on_timeout", event=event, context=context)

    def after_answer(self, context: Context) -> None:
        if self.after_answer_chain:
            self._notify("after_answer", self.after_answer_chain, context=context)

    def on_shutdown(self) -> None:
        self._notify("on_shutdown")

    def _notify(
        self,
        hook_name: str,
        chain: list[tuple[str, Callable[..., Any]]] | None = None,
        **kwargs: Any,
    ) -> None:
        """Call every implementation; one that raises is logged and does not stop the rest."""
        for plugin_name, call in self.implementations(hook_name) if chain is None else chain:
            try:
                call(**kwargs)
            except Exception:
                log.exception("plugin %r failed in %s", plugin_name, hook_name)

    def describe(self) -> list[PluginInfo]:
        """Loaded plugins with the hooks each implements, for ``ort plugins``."""
        for name, info in self._infos.items():
            plugin = self.manager.get_plugin(name)
            info.hooks = [caller.name for caller in self.manager.get_hookcallers(plugin) or []]
        return list(self._infos.values())


def call_plugin(plugin_name: str, hook_name: str, call: Callable[..., Any], **kwargs: Any) -> Any:
    """Call one implementation; its failure becomes ``Runtime.PluginError`` naming it."""
    try:
        return call(**kwargs)
    except FunctionError:
        raise
    except Exception as exc:
        described = FunctionError.from_exception(exc, skip_frames=2)  # this frame and the caller
        raise FunctionError(
            "Runtime.PluginError",
            f"plugin {plugin_name!r} failed in {hook_name}: "
            f"{described.error_type}: {described.message}",
            described.stack_trace,
        ) from None


def _observed_caller(
    observer: HookObserver, impl: Implementation | pluggy.HookImpl, hook_name: str
) -> Callable[..., Any]:
    """A keyword caller that reports each call to ``observer``. It calls the implementation
    from its own frame, as ``_keyword_caller`` does, so error stacks skip the same frames."""
    function, argnames, plugin_name = impl.function, impl.argnames, impl.plugin_name

    def call(**kwargs: Any) -> Any:
        arguments = {name: kwargs[name] for name in argnames}
        started = time.perf_counter_ns()
        try:
            result = function(*arguments.values())
        except BaseException as exc:
            duration = time.perf_counter_ns() - started
            observer(HookCall(plugin_name, hook_name, arguments, None, exc, duration))
            raise
        duration = time.perf_counter_ns() - started
        observer(HookCall(plugin_name, hook_name, arguments, result, None, duration))
        return result

    return call


def _traced(observer: HookObserver | None) -> HookObserver:
    """ORT_TRACE_HOOKS: log each call on ``ort.hooks``, shown whatever the log level."""
    trace_log = logging.getLogger("ort.hooks")
    trace_log.setLevel(logging.DEBUG)

    def trace(call: HookCall) -> None:
        ms = call.duration_ns / 1e6
        if call.error is None:
            trace_log.debug("hook %s: plugin %s took %.3f ms", call.hook, call.plugin, ms)
        else:
            trace_log.debug(
                "hook %s: plugin %s raised %s after %.3f ms",
                call.hook,
                call.plugin,
                type(call.error).__name__,
                ms,
            )
        if observer is not None:
            observer(call)

    return trace


def _keyword_caller(function: Callable[..., Any], argnames: tuple[str, ...]) -> Callable[..., Any]:
    def call(**kwargs: Any) -> Any:
        return function(*[kwargs[name] for name in argnames])

    return call
