"""Which plugin implements which hook, in pluggy's order, with pluggy imported only when needed.

pluggy costs about 19 ms of every cold start here, and ORT calls each hook implementation
itself (``ort_core.plugins.Hooks``): at cold start it needs only pluggy's registration, its
validation and its order. For the plugins nearly everyone has (modules whose hooks are plain
functions marked ``ort_impl``, no wrappers) the registry does those itself, as pluggy
documents them. Anything else (an object or class as plugin, a wrapper, a decorated or nested
function, a hook with no spec, an argument the spec lacks, a name registered twice) is handed
to a real ``pluggy.PluginManager``, which then registers every plugin and answers from then
on, so unusual plugins get pluggy's own behaviour and error messages. ``manager`` builds that
manager on demand too (``ort plugins``). tests/test_registry.py checks the order against
pluggy's.
"""

from __future__ import annotations

from types import FunctionType, MethodType, ModuleType

from ort_core import hookspecs

TYPE_CHECKING = False  # typing's own constant would import typing (3-7 ms)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    import pluggy


class Implementation:
    """One hook implementation: the attributes of pluggy's ``HookImpl`` that ORT reads."""

    __slots__ = (
        "argnames",
        "function",
        "hookwrapper",
        "plugin",
        "plugin_name",
        "tryfirst",
        "trylast",
        "wrapper",
    )

    def __init__(
        self,
        plugin: object,
        plugin_name: str,
        function: Callable[..., Any],
        argnames: tuple[str, ...],
        options: dict[str, Any],
    ) -> None:
        self.plugin = plugin
        self.plugin_name = plugin_name
        self.function = function
        self.argnames = argnames
        self.tryfirst = bool(options.get("tryfirst"))
        self.trylast = bool(options.get("trylast"))
        self.wrapper = self.hookwrapper = False  # wrappers are pluggy's to run

    def __repr__(self) -> str:
        return f"<Implementation {self.plugin_name}.{self.function.__name__}>"


def _positional_names(function: FunctionType) -> tuple[str, ...]:
    """The arguments pluggy passes: positional ones without a default."""
    code = function.__code__
    names = code.co_varnames[: code.co_argcount]
    return names[: len(names) - len(function.__defaults__ or ())]


SPECS: dict[str, tuple[str, ...]] = {
    name: _positional_names(value)
    for name, value in vars(hookspecs).items()
    if type(value) is FunctionType and "ort_spec" in value.__dict__
}


class Registry:
    """Plugins registered in order; ``implementations(hook)`` is what pluggy's
    ``manager.hook.<hook>.get_hookimpls()`` returns for them."""

    def __init__(self) -> None:
        self._plugins: list[tuple[object, str]] = []
        self._by_hook: dict[str, list[Implementation]] = {name: [] for name in SPECS}
        self._manager: pluggy.PluginManager | None = None

    def register(self, plugin: object, name: str) -> None:
        """Raises ``ValueError`` or ``pluggy.PluginValidationError`` as pluggy's does."""
        found = None if self._manager is not None else self._implementations_of(plugin, name)
        if found is None:
            self.manager.register(plugin, name=name)
        else:
            for hook_name, implementation in found:
                _insert(self._by_hook[hook_name], implementation)
        self._plugins.append((plugin, name))

    def implementations(self, hook_name: str) -> list[Any]:
        if self._manager is not None:
            return getattr(self._manager.hook, hook_name).get_hookimpls()
        return list(self._by_hook[hook_name])

    @property
    def manager(self) -> pluggy.PluginManager:
        """pluggy's manager, with the same plugins registered in the same order."""
        if self._manager is None:
            import pluggy

            manager = pluggy.PluginManager("ort")
            manager.add_hookspecs(hookspecs)
            for plugin, name in self._plugins:
                manager.register(plugin, name=name)
            self._manager = manager
        return self._manager

    def _implementations_of(
        self, plugin: object, name: str
    ) -> list[tuple[str, Implementation]] | None:
        """The hooks of a module plugin, in pluggy's ``dir()`` order; None when pluggy must
        judge the plugin."""
        if type(plugin) is not ModuleType or "__dir__" in vars(plugin):
            return None
        if any(seen is plugin or seen_name == name for seen, seen_name in self._plugins):
            return None
        namespace = vars(plugin)
        found = []
        for attribute in sorted(namespace):
            value = namespace[attribute]
            if type(value) is not FunctionType:
                if isinstance(value, (MethodType, classmethod, staticmethod)) and _marked(value):
                    return None
                continue
            options = value.__dict__.get("ort_impl")
            if options is None:
                continue
            if type(options) is not dict:
                return None
            hook_name = options.get("specname") or attribute
            if (
                hook_name not in SPECS
                or options.get("wrapper")
                or options.get("hookwrapper")
                or "__wrapped__" in value.__dict__
                or "." in value.__qualname__
            ):
                return None
            argnames = _positional_names(value)
            if not set(argnames) <= set(SPECS[hook_name]):
                return None
            found.append((hook_name, Implementation(plugin, name, value, argnames, options)))
        return found


def _marked(value: object) -> bool:
    holder = getattr(value, "__func__", value)
    return getattr(value, "ort_impl", None) is not None or hasattr(holder, "ort_impl")


def _insert(implementations: list[Implementation], new: Implementation) -> None:
    """Where pluggy puts an implementation that is not a wrapper: ``trylast`` ones first,
    ``tryfirst`` ones last, the others before the ``tryfirst`` ones (pluggy calls from the
    end of this list)."""
    if new.trylast:
        implementations.insert(0, new)
    elif new.tryfirst:
        implementations.append(new)
    else:
        index = len(implementations)
        while index > 0 and implementations[index - 1].tryfirst:
            index -= 1
        implementations.insert(index, new)
