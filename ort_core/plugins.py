"""Plugin discovery at cold start, and the typed facade the rest of the core calls hooks through.

Plugins are modules published in the entry-point group ``ort``. ``ORT_PLUGINS=a,b`` loads
only the named distributions (no scan of every installed package); ``ORT_DISABLE_PLUGINS``
blocks distributions or entry-point names; ``ORT_PLUGIN_MODULES`` registers importable
modules that are not packaged, as ``PYTEST_PLUGINS`` does for pytest.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

from ort_core import hookspecs

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from ort_core.bridge import Bridge
    from ort_core.config import FunctionConfig
    from ort_core.context import Context
    from ort_core.errors import FunctionError

ENTRY_POINT_GROUP = "ort"
hookimpl = pluggy.HookimplMarker("ort")
log = logging.getLogger("ort")


class PluginLoadError(Exception):
    """A plugin could not be found or imported; the message names it."""


@dataclass
class PluginInfo:
    """What ``ort plugins`` shows for one loaded plugin."""

    name: str
    distribution: str | None
    version: str | None
    hooks: list[str] = field(default_factory=list)


def _names(value: str | None) -> list[str]:
    return [name.strip() for name in (value or "").split(",") if name.strip()]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _entry_points(allowed: list[str] | None) -> Iterable[tuple[EntryPoint, str, str]]:
    """Yield (entry point, distribution name, version) for the ``ort`` group."""
    from importlib import metadata

    if allowed is None:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist
            yield ep, dist.name if dist else "?", dist.version if dist else "?"
        return
    for name in allowed:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise PluginLoadError(
                f"ORT_PLUGINS names {name!r}, which is not an installed distribution"
            ) from None
        found = [ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]
        if not found:
            raise PluginLoadError(
                f"ORT_PLUGINS names {name!r}, whose distribution declares no "
                f"'{ENTRY_POINT_GROUP}' entry point"
            )
        for ep in found:
            yield ep, dist.name, dist.version


def load_plugins(environ: Mapping[str, str] | None = None, extra: Iterable[object] = ()) -> Hooks:
    """Load every plugin once; raise PluginLoadError naming the first that fails."""
    env = os.environ if environ is None else environ
    manager = pluggy.PluginManager("ort")
    manager.add_hookspecs(hookspecs)
    allowed = _names(env["ORT_PLUGINS"]) if "ORT_PLUGINS" in env else None
    blocked = {_normalise(name) for name in _names(env.get("ORT_DISABLE_PLUGINS"))}
    infos: dict[str, PluginInfo] = {}

    for ep, dist_name, version in _entry_points(allowed):
        if _normalise(dist_name) in blocked or _normalise(ep.name) in blocked:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginLoadError(
                f"plugin {ep.name!r} ({dist_name} {version}) failed to import "
                f"{ep.value!r}: {type(exc).__name__}: {exc}"
            ) from exc
        _register(manager, plugin, ep.name)
        infos[ep.name] = PluginInfo(ep.name, dist_name, version)

    for module_name in _names(env.get("ORT_PLUGIN_MODULES")):
        try:
            plugin = importlib.import_module(module_name)
        except Exception as exc:
            raise PluginLoadError(
                f"plugin module {module_name!r} (ORT_PLUGIN_MODULES) failed to import: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        _register(manager, plugin, module_name)
        infos[module_name] = PluginInfo(module_name, None, None)

    for plugin in extra:
        name = _register(manager, plugin, None)
        infos[name] = PluginInfo(name, None, None)

    return Hooks(manager, infos)


def _register(manager: pluggy.PluginManager, plugin: object, name: str | None) -> str:
    try:
        registered = manager.register(plugin, name=name)
    except (ValueError, pluggy.PluginValidationError) as exc:
        raise PluginLoadError(f"plugin {name or plugin!r} is invalid: {exc}") from exc
    return registered or str(name)


class Hooks:
    """The hooks, called by name with typed arguments; nothing else spells ``pm.hook``."""

    def __init__(self, manager: pluggy.PluginManager, infos: dict[str, PluginInfo]) -> None:
        self.manager = manager
        self._infos = infos
        self.before_event_chain = self._chain("before_event")
        self.after_response_chain = self._chain("after_response")[::-1]

    def _chain(self, hook_name: str) -> list[tuple[str, Callable[..., Any]]]:
        """(plugin name, implementation) in pluggy's call order, callable with keywords.

        ORT threads each one's result into the next, which pluggy's own calling does not do.
        """
        chain = []
        for impl in reversed(getattr(self.manager.hook, hook_name).get_hookimpls()):
            if impl.hookwrapper or impl.wrapper:
                raise PluginLoadError(
                    f"plugin {impl.plugin_name!r}: {hook_name} cannot be a wrapper"
                )
            chain.append((impl.plugin_name, _keyword_caller(impl.function, impl.argnames)))
        return chain

    def launch_language(self, config: FunctionConfig) -> Bridge | None:
        return self.manager.hook.launch_language(config=config)

    def on_init(self, config: FunctionConfig, bridge: Bridge) -> None:
        self.manager.hook.on_init(config=config, bridge=bridge)

    def on_error(self, error: FunctionError, event: Any, context: Context) -> None:
        self._notify("on_error", error=error, event=event, context=context)

    def on_timeout(self, event: Any, context: Context) -> None:
        self._notify("on_timeout", event=event, context=context)

    def _notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call every implementation; one that raises is logged and does not stop the rest."""
        for impl in reversed(getattr(self.manager.hook, hook_name).get_hookimpls()):
            try:
                _keyword_caller(impl.function, impl.argnames)(**kwargs)
            except Exception:
                log.exception("plugin %r failed in %s", impl.plugin_name, hook_name)

    def describe(self) -> list[PluginInfo]:
        """Loaded plugins with the hooks each implements, for ``ort plugins``."""
        for name, info in self._infos.items():
            plugin = self.manager.get_plugin(name)
            info.hooks = [caller.name for caller in self.manager.get_hookcallers(plugin) or []]
        return list(self._infos.values())


def _keyword_caller(function: Callable[..., Any], argnames: tuple[str, ...]) -> Callable[..., Any]:
    def call(**kwargs: Any) -> Any:
        return function(*[kwargs[name] for name in argnames])

    return call
