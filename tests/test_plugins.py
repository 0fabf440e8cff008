"""Plugin discovery through real entry points, and the ``ort`` command as a user runs it.

Fake distributions are folders of ``*.dist-info`` metadata on PYTHONPATH, exactly what an
installer leaves in site-packages, so ``importlib.metadata`` finds them as it finds any
installed package.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import PYTHON, clean_environ

DEMO_PLUGIN = """
    from ort_core import hookimpl

    @hookimpl
    def on_init(config, bridge):
        pass

    @hookimpl
    def before_event(event, context):
        return None
"""


def install(
    site: Path, dist: str, entry_name: str, module: str, source: str, version: str = "1.0"
) -> None:
    """Install a one-module distribution declaring ``[ort] entry_name = module``."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"  # as wheels name it
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[ort]\n{entry_name} = {module}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def site(tmp_path: Path) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    return folder


def ort(
    *args: str, site: Path, cwd: Path | None = None, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "ort_core", *args],
        env=clean_environ(PYTHONPATH=str(site), **env),
        cwd=cwd or site,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def plugins_json(site: Path, **env: str) -> dict[str, dict]:
    result = ort("plugins", "--json", site=site, **env)
    assert result.returncode == 0, result.stderr
    return {info["name"]: info for info in json.loads(result.stdout)}


# -- ort plugins ---------------------------------------------------------------------------


def test_installed_python_plugin_is_listed_with_version_and_hook(site: Path) -> None:
    result = ort("plugins", site=site)

    assert result.returncode == 0, result.stderr
    assert "python  ort-python 0.1.0  hooks: launch_language" in result.stdout.splitlines()
    assert plugins_json(site)["python"] == {
        "name": "python",
        "distribution": "ort-python",
        "version": "0.1.0",
        "hooks": ["launch_language"],
    }


def test_fake_distribution_is_discovered_with_its_hooks(site: Path) -> None:
    install(site, "ort-demo", "demo", "ort_demo_plugin", DEMO_PLUGIN)

    result = ort("plugins", site=site)

    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("demo ")]
    assert "ort-demo 1.0" in line
    assert "before_event" in line
    assert "on_init" in line
    demo = plugins_json(site)["demo"]
    assert (demo["distribution"], demo["version"]) == ("ort-demo", "1.0")
    assert sorted(demo["hooks"]) == ["before_event", "on_init"]


def test_ort_plugins_variable_loads_only_the_named_distributions(site: Path) -> None:
    install(site, "ort-demo", "demo", "ort_demo_plugin", DEMO_PLUGIN)

    assert {"python", "demo"} <= set(plugins_json(site))  # with every other installed plugin
    built_in = {"executable", "scaleway"}  # ort-core's own, whatever ORT_PLUGINS says
    assert set(plugins_json(site, ORT_PLUGINS="ort-demo")) == {"demo", *built_in}
    both = set(plugins_json(site, ORT_PLUGINS="ort-demo, ort-python"))
    assert both == {"demo", "python", *built_in}


def test_ort_plugins_naming_an_unknown_distribution_fails(site: Path) -> None:
    result = ort("plugins", site=site, ORT_PLUGINS="does-not-exist")

    assert result.returncode == 1
    assert "'does-not-exist'" in result.stderr
    assert "not an installed distribution" in result.stderr


@pytest.mark.parametrize("blocked", ["ort-python", "ort_python", "python"])
def test_disabled_plugin_is_hidden(site: Path, blocked: str) -> None:
    install(site, "ort-demo", "demo", "ort_demo_plugin", DEMO_PLUGIN)

    loaded = set(plugins_json(site, ORT_DISABLE_PLUGINS=blocked))
    assert "demo" in loaded
    assert "python" not in loaded


def test_plugin_failing_at_import_names_itself_and_its_distribution(site: Path) -> None:
    install(
        site, "ort-broken", "broken", "ort_broken_plugin", "import a_dependency_never_installed\n"
    )

    result = ort("plugins", site=site)

    assert result.returncode == 1
    assert "'broken'" in result.stderr
    assert "ort-broken 1.0" in result.stderr
    assert "a_dependency_never_installed" in result.stderr
    assert result.stdout == ""


def test_unselected_plugins_are_not_imported(site: Path) -> None:
    install(site, "ort-bomb", "bomb", "ort_bomb_plugin", "raise SystemExit('bomb imported')\n")

    # The bomb is installed: a full scan imports it and fails...
    assert ort("plugins", site=site).returncode != 0
    # ...but naming the plugins to load never touches it.
    result = ort("plugins", site=site, ORT_PLUGINS="ort-python")
    assert result.returncode == 0, result.stderr
    assert "bomb" not in result.stdout + result.stderr
    assert result.stdout.startswith("python  ort-python 0.1.0")


def test_plugin_modules_variable_registers_a_plain_module(site: Path) -> None:
    (site / "my_local_hooks.py").write_text(
        "from ort_core import hookimpl\n\n"
        "@hookimpl\n"
        "def after_response(response):\n"
        "    return response\n"
    )

    result = ort("plugins", site=site, ORT_PLUGIN_MODULES="my_local_hooks")

    assert result.returncode == 0, result.stderr
    assert "my_local_hooks  (module)  hooks: after_response" in result.stdout.splitlines()
    local = plugins_json(site, ORT_PLUGIN_MODULES="my_local_hooks")["my_local_hooks"]
    assert local == {
        "name": "my_local_hooks",
        "distribution": None,
        "version": None,
        "hooks": ["after_response"],
    }


def test_plugin_module_that_cannot_be_imported_fails(site: Path) -> None:
    result = ort("plugins", site=site, ORT_PLUGIN_MODULES="no_such_hooks_module")

    assert result.returncode == 1
    assert "'no_such_hooks_module'" in result.stderr
    assert "ORT_PLUGIN_MODULES" in result.stderr


# -- ort --help and ort invoke -------------------------------------------------------------


def test_help_lists_the_commands(site: Path) -> None:
    result = ort("--help", site=site)

    assert result.returncode == 0
    for command in ("bootstrap", "emulate", "invoke", "plugins"):
        assert command in result.stdout


APP = """
    def handler(event, context):
        print("hello from the handler")
        if event.get("fail"):
            raise LookupError("order " + str(event["fail"]) + " not found")
        return {"got": event, "request": context.aws_request_id != ""}
"""


@pytest.fixture
def app(tmp_path: Path) -> Path:
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "app.py").write_text(textwrap.dedent(APP))
    return folder


def test_invoke_prints_the_response_and_sends_prints_to_stderr(
    site: Path, app: Path, tmp_path: Path
) -> None:
    event = tmp_path / "event.json"
    event.write_text('{"x": 1}')

    result = ort("invoke", "--handler", "app.handler", "--event", str(event), site=site, cwd=app)

    assert result.returncode == 0, result.stderr
    assert result.stdout == '{"got": {"x": 1}, "request": true}\n'
    assert "hello from the handler" in result.stderr


def test_invoke_reads_the_event_from_stdin(site: Path, app: Path) -> None:
    args = ("invoke", "--handler", "app.handler", "--event", "-")

    result = ort(*args, site=site, cwd=app, stdin='{"from": "stdin"}')

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"got": {"from": "stdin"}, "request": True}


def test_invoke_without_an_event_sends_an_empty_object(site: Path, app: Path) -> None:
    result = ort("invoke", "--handler", "app.handler", site=site, cwd=app)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"got": {}, "request": True}


def test_invoke_of_a_raising_handler_exits_1_with_the_error_json(site: Path, app: Path) -> None:
    args = ("invoke", "--handler", "app.handler", "--event", "-")

    result = ort(*args, site=site, cwd=app, stdin='{"fail": 7}')

    assert result.returncode == 1
    error = json.loads(result.stdout)
    assert error["errorType"] == "LookupError"
    assert error["errorMessage"] == "order 7 not found"
    assert error["requestId"]
    assert any("app.py" in frame for frame in error["stackTrace"])
    assert "hello from the handler" in result.stderr


# -- in-process middlewares from the function's own code, and their order --------------------

GATE = """
    from ort_core import EarlyResponse, hookimpl

    @hookimpl
    def before_event(event):
        if event.get("token") != "let-me-in":
            return EarlyResponse({"statusCode": 401, "body": "missing or wrong token"})
        return {**event, "checked_by": "auth_gate"}
"""


def test_a_function_brings_its_own_middleware_from_its_task_root(
    site: Path, app: Path, tmp_path: Path
) -> None:
    (app / "auth_gate.py").write_text(textwrap.dedent(GATE))

    def invoke(event: str) -> subprocess.CompletedProcess[str]:
        return ort(
            *("invoke", "--handler", "app.handler", "--event", "-"),
            site=site,
            cwd=tmp_path,  # not the task root: only LAMBDA_TASK_ROOT makes the module importable
            stdin=event,
            LAMBDA_TASK_ROOT=str(app),
            ORT_PLUGIN_MODULES="auth_gate",
        )

    refused = invoke('{"token": "guess"}')
    assert refused.returncode == 0, refused.stderr
    assert json.loads(refused.stdout) == {"statusCode": 401, "body": "missing or wrong token"}
    assert "hello from the handler" not in refused.stderr

    allowed = invoke('{"token": "let-me-in"}')
    assert json.loads(allowed.stdout)["got"] == {"token": "let-me-in", "checked_by": "auth_gate"}


TAGGER = """
    from ort_core import hookimpl

    @hookimpl
    def before_event(event):
        return {{**event, "trail": [*event.get("trail", []), "{name}:before"]}}

    @hookimpl
    def after_response(response):
        return {{**response, "trail": [*response.get("trail", []), "{name}:after"]}}
"""


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ("", ["second:before", "first:before", "first:after", "second:after"]),
        ("first", ["first:before", "second:before", "second:after", "first:after"]),
        ("second,first", ["second:before", "first:before", "first:after", "second:after"]),
    ],
)
def test_plugin_order_puts_the_named_plugins_first_and_after_response_in_reverse(
    site: Path, app: Path, order: str, expected: list[str]
) -> None:
    (app / "echo.py").write_text(
        "def handler(event, context):\n    return {'trail': event['trail']}\n"
    )
    for name in ("first", "second"):
        (site / f"{name}.py").write_text(textwrap.dedent(TAGGER.format(name=name)))

    result = ort(
        *("invoke", "--handler", "echo.handler"),
        site=site,
        cwd=app,
        ORT_PLUGIN_MODULES="first,second",
        ORT_PLUGIN_ORDER=order,
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["trail"] == expected


def test_plugin_order_naming_a_plugin_that_is_not_loaded_fails(site: Path) -> None:
    result = ort("plugins", site=site, ORT_PLUGIN_ORDER="nonesuch")

    assert result.returncode == 1
    assert "ORT_PLUGIN_ORDER names 'nonesuch', which is not loaded" in result.stderr
