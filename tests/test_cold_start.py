"""The cold-start path of `ort bootstrap` imports only what it uses.

The handler reports ``sys.modules`` after the first event, which sees every import
(``python -X importtime`` misses those made through importlib, as plugins and handlers are).
"""

from __future__ import annotations

from conftest import bootstrap_on_its_own_peer, fake_distribution

HANDLER = """
import sys

def handler(event, context):
    return sorted(sys.modules)
"""

NEVER_ON_THE_COLD_PATH = {
    "argparse",  # the CLI's parser: bootstrap skips it
    "ort_core.emulator",
    "ort_core.plugins_manifest",
    "http.server",
    "socketserver",
    "asyncio",  # only for async handlers
    "pluggy",  # ort_core/registry.py registers the usual plugins without it
    "inspect",  # pluggy's, and ort-python's awaitable check before it used collections.abc
    "unittest",
    "ctypes",  # per-invocation variables take it after the first answer (invocation_env.py)
}
NEVER_PACKAGES = {"httpx", "cloudevents", "pytest", "awslambdaric"}


def modules_after_first_event(function_dir, **env: str) -> set[str]:
    with bootstrap_on_its_own_peer(function_dir({"app.py": HANDLER}), **env) as peer:
        return set(peer.invoke({}).json())


def test_bootstrap_imports_nothing_it_does_not_use(function_dir):
    modules = modules_after_first_event(function_dir)
    assert {"ort_python.in_process", "app"} <= modules
    assert modules.isdisjoint(NEVER_ON_THE_COLD_PATH), modules & NEVER_ON_THE_COLD_PATH
    assert not {m for m in modules if m.split(".")[0] in NEVER_PACKAGES}


def test_named_plugins_load_without_importing_the_others(function_dir, tmp_path):
    installed = fake_distribution(
        tmp_path / "site", "ort-other", "ort_other_plugin", "from ort_core import hookimpl\n"
    )
    everything = modules_after_first_event(function_dir, PYTHONPATH=str(installed))
    assert "ort_other_plugin" in everything  # found by scanning the entry points

    named = modules_after_first_event(
        function_dir, PYTHONPATH=str(installed), ORT_PLUGINS="ort-python"
    )
    assert {"ort_python.plugin", "app"} <= named
    assert "ort_other_plugin" not in named
    assert named.isdisjoint(NEVER_ON_THE_COLD_PATH)
