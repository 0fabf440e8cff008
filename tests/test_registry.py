"""The registry answers as pluggy would, and keeps pluggy off the cold start."""

from __future__ import annotations

import subprocess
import sys
import types

import pluggy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ort_core import hookspecs
from ort_core.markers import hookimpl
from ort_core.registry import Registry

HOOKS = ("launch_language", "before_event", "after_response", "on_error")
ARGUMENTS = {
    "launch_language": "config",
    "before_event": "event, context",
    "after_response": "response",
    "on_error": "error, event, context",
}
pluggys_hookimpl = pluggy.HookimplMarker("ort")


def module_plugin(index: int, hooks: list[tuple[str, str, bool]]) -> types.ModuleType:
    """A module whose functions implement ``hooks``: (hook, placement, pluggy's marker?)."""
    module = types.ModuleType(f"plugin_{index}")
    for number, (hook, placement, with_pluggys_marker) in enumerate(hooks):
        namespace: dict[str, object] = {}
        exec(f"def implementation({ARGUMENTS[hook]}): pass", namespace)
        function = namespace["implementation"]
        options = {"tryfirst": placement == "tryfirst", "trylast": placement == "trylast"}
        marker = pluggys_hookimpl if with_pluggys_marker else hookimpl
        # Two implementations of one hook in one module: the second through specname.
        setattr(module, f"{hook}_{number}", marker(specname=hook, **options)(function))
    return module


def pluggys_order(plugins: list[types.ModuleType], hook: str) -> list[str]:
    manager = pluggy.PluginManager("ort")
    manager.add_hookspecs(hookspecs)
    for plugin in plugins:
        manager.register(plugin, name=plugin.__name__)
    return [
        f"{i.plugin_name}.{i.function.__name__}"
        for i in getattr(manager.hook, hook).get_hookimpls()
    ]


def registrys_order(registry: Registry, hook: str) -> list[str]:
    return [f"{i.plugin_name}.{i.function.__name__}" for i in registry.implementations(hook)]


implementations = st.lists(
    st.tuples(st.sampled_from(HOOKS), st.sampled_from(["", "tryfirst", "trylast"]), st.booleans()),
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(implementations, min_size=1, max_size=6))
def test_the_order_of_implementations_is_pluggys(plugins_hooks):
    plugins = [module_plugin(index, hooks) for index, hooks in enumerate(plugins_hooks)]
    registry = Registry()
    for plugin in plugins:
        registry.register(plugin, plugin.__name__)
    assert registry._manager is None  # answered without pluggy
    for hook in HOOKS:
        assert registrys_order(registry, hook) == pluggys_order(plugins, hook)


class ObjectPlugin:
    @hookimpl(tryfirst=True)
    def before_event(self, event):
        return event


def wrapper_plugin() -> types.ModuleType:
    module = types.ModuleType("wrapping")

    @hookimpl(wrapper=True)
    def launch_language(config):
        return (yield)

    module.launch_language = launch_language
    return module


@pytest.mark.parametrize("unusual", ["object", "wrapper"])
def test_an_unusual_plugin_is_registered_by_pluggy_in_the_same_order(unusual):
    plugins = [module_plugin(0, [("before_event", "", False), ("launch_language", "", False)])]
    plugins.append(ObjectPlugin() if unusual == "object" else wrapper_plugin())
    plugins.append(module_plugin(2, [("before_event", "trylast", False)]))
    registry = Registry()
    manager = pluggy.PluginManager("ort")
    manager.add_hookspecs(hookspecs)
    for index, plugin in enumerate(plugins):
        registry.register(plugin, f"p{index}")
        manager.register(plugin, name=f"p{index}")
    assert registry._manager is not None
    for hook in HOOKS:
        assert [(i.plugin_name, i.function.__name__) for i in registry.implementations(hook)] == [
            (i.plugin_name, i.function.__name__)
            for i in getattr(manager.hook, hook).get_hookimpls()
        ]


def test_an_argument_the_spec_lacks_is_pluggys_validation_error():
    module = types.ModuleType("wrong")
    module.before_event = hookimpl(lambda event, contxt: event)
    registry = Registry()
    with pytest.raises(pluggy.PluginValidationError, match="contxt"):
        registry.register(module, "wrong")


def test_a_name_registered_twice_is_pluggys_error():
    registry = Registry()
    registry.register(module_plugin(0, [("before_event", "", False)]), "same")
    with pytest.raises(ValueError, match="already registered"):
        registry.register(module_plugin(1, [("on_error", "", False)]), "same")


def test_the_cold_start_loads_the_plugins_without_importing_pluggy_or_inspect(tmp_path):
    (tmp_path / "app.py").write_text("def handler(event, context):\n    return 1\n")
    script = (
        "import sys\n"
        "from ort_core.config import FunctionConfig\n"
        "from ort_core.plugins import load_plugins\n"
        "hooks = load_plugins({'ORT_PLUGINS': 'ort-python', 'ORT_PLUGIN_MODULES': 'mine'})\n"
        f"config = FunctionConfig(handler='app.handler', task_root={str(tmp_path)!r},"
        " language='python')\n"
        "bridge = hooks.launch_language(config)\n"
        "bridge.start()\n"
        "print(type(bridge).__name__, [name for name, _ in hooks.before_event_chain],"
        " sorted({'pluggy', 'inspect'} & set(sys.modules)))\n"
    )
    (tmp_path / "mine.py").write_text(
        "from ort_core import hookimpl\n\n@hookimpl\ndef before_event(event):\n    return event\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout == "InProcessBridge ['mine'] []\n", result.stderr
