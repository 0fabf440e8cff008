"""Plugin diagnostics: ``ort plugins --verbose`` (hook implementations, their order, import
times) and ``ORT_TRACE_HOOKS=1`` (every hook call logged with its duration)."""

from __future__ import annotations

import json
import logging
import re
import types
from pathlib import Path

import pytest
from test_plugins import install, ort

from ort_core.plugin import hookimpl
from ort_core.plugins import load_plugins

FIRST = """
    from ort_core import hookimpl

    @hookimpl(tryfirst=True)
    def before_event(event):
        return {**event, "trail": [*event.get("trail", []), "first"]}

    @hookimpl
    def after_response(response):
        return response
"""
SECOND = """
    from ort_core import hookimpl

    @hookimpl
    def before_event(event):
        if event.get("explode"):
            raise ValueError("second exploded")
        return {**event, "trail": [*event.get("trail", []), "second"]}

    @hookimpl
    def after_response(response):
        return response
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    install(folder, "ort-first", "first", "ort_first_plugin", FIRST)
    install(folder, "ort-second", "second", "ort_second_plugin", SECOND)
    (folder / "app.py").write_text(
        "def handler(event, context):\n    return {'trail': event.get('trail')}\n"
    )
    return folder


SELECTED = {"ORT_PLUGINS": "ort-python,ort-first,ort-second"}


def test_verbose_lists_each_hook_with_its_plugins_in_call_order(site: Path) -> None:
    result = ort("plugins", "--verbose", site=site, **SELECTED)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    first = next(line for line in lines if line.startswith("first  "))
    assert re.fullmatch(
        r"first  ort-first 1\.0  hooks: (after_response, before_event|before_event, "
        r"after_response)  import \d+\.\d\d ms",
        first,
    )
    section = result.stdout.split("hook implementations, in call order:\n")[1]
    assert "  before_event\n    1. first  (tryfirst)\n    2. second\n" in section
    # after_response reverses its own order: tryfirst on before_event does not carry over
    assert "  after_response\n    1. first\n    2. second\n" in section
    assert "  on_error  -\n" in section
    assert "    1. scaleway\n    2. executable\n" in section  # launch_language: pluggy's order


def test_verbose_shows_plugin_order_and_json_gives_positions_and_import_times(
    site: Path,
) -> None:
    text = ort("plugins", "-v", site=site, ORT_PLUGIN_ORDER="second", **SELECTED)
    listed = ort("plugins", "--verbose", "--json", site=site, **SELECTED)

    assert "  before_event\n    1. second  (ORT_PLUGIN_ORDER)\n    2. first  (tryfirst)\n" in (
        text.stdout
    )
    assert listed.returncode == 0, listed.stderr
    plugins = {info["name"]: info for info in json.loads(listed.stdout)}
    assert plugins["first"]["order"] == {"before_event": 1, "after_response": 1}
    assert plugins["second"]["order"] == {"before_event": 2, "after_response": 2}
    assert all(info["import_ms"] >= 0 for info in plugins.values())
    plain = json.loads(ort("plugins", "--json", site=site, **SELECTED).stdout)
    assert all(set(info) == {"name", "distribution", "version", "hooks"} for info in plain)


def test_trace_hooks_logs_every_hook_call_with_its_duration(site: Path) -> None:
    args = ("invoke", "--handler", "app.handler", "--language", "python")

    traced = ort(*args, site=site, ORT_TRACE_HOOKS="1", **SELECTED)
    failed = ort(
        *args, "--event", "-", site=site, stdin='{"explode": 1}', ORT_TRACE_HOOKS="1", **SELECTED
    )
    quiet = ort(*args, site=site, **SELECTED)

    assert traced.returncode == 0, traced.stderr
    assert json.loads(traced.stdout) == {"trail": ["first", "second"]}
    calls = re.findall(r"hook (\w+): plugin (\w+) took \d+\.\d{3} ms", traced.stderr)
    assert calls == [
        ("launch_language", "scaleway"),
        ("launch_language", "executable"),
        ("launch_language", "python"),
        ("before_event", "first"),
        ("before_event", "second"),
        ("after_response", "first"),
        ("after_response", "second"),
    ]  # the order `ort plugins --verbose` shows
    assert "[DEBUG]" in traced.stderr  # at DEBUG, shown whatever AWS_LAMBDA_LOG_LEVEL says
    assert failed.returncode == 1
    assert re.search(r"hook before_event: plugin second raised ValueError after \d", failed.stderr)
    assert quiet.returncode == 0
    assert "hook " not in quiet.stderr


def test_without_the_variable_hooks_are_not_wrapped_and_nothing_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plugin = types.ModuleType("plain")
    plugin.before_event = hookimpl(lambda event: event)  # type: ignore[attr-defined]
    caplog.set_level(logging.DEBUG, logger="ort.hooks")

    plain = load_plugins({"ORT_PLUGINS": ""}, [plugin])
    traced = load_plugins({"ORT_PLUGINS": "", "ORT_TRACE_HOOKS": "1"}, [plugin])
    for hooks in (plain, traced):
        [(_, call)] = hooks.before_event_chain
        assert call(event={"n": 1}, context=None) == {"n": 1}

    assert [record.getMessage().split(" took ")[0] for record in caplog.records] == [
        "hook before_event: plugin plain"
    ]
