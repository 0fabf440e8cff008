"""``ort new``: each template, generated as a user does, installed, passes its own tests.

The plugin is installed with pip (``--target``, no dependencies: ort-core and ort-python are
this environment's) and its tests run in a pytest of their own with the target on
PYTHONPATH, so the kit finds the plugin by its entry point, as after ``pip install``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from conftest import PYTHON, clean_environ


def ort_new(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "ort_core", "new", *args],
        cwd=cwd,
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def pytest_run(*paths: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--import-mode=importlib"]
        + [str(path) for path in paths],
        cwd=cwd,
        env=clean_environ(**env),
        capture_output=True,
        text=True,
        timeout=240,
    )


def passed(result: subprocess.CompletedProcess[str]) -> int:
    found = re.search(r"(\d+) passed", result.stdout)
    return int(found.group(1)) if found else 0


def test_the_plugin_template_installs_and_passes_its_tests(tmp_path: Path) -> None:
    created = ort_new("plugin", "auth-gate", cwd=tmp_path)

    assert created.returncode == 0, created.stderr
    project = tmp_path / "ort-auth-gate"
    assert sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()) == [
        "README.md",
        "ort_auth_gate/__init__.py",
        "ort_auth_gate/plugin.py",
        "pyproject.toml",
        "tests/test_plugin.py",
    ]
    pyproject = (project / "pyproject.toml").read_text()
    assert '[project.entry-points.ort]\nauth_gate = "ort_auth_gate.plugin"' in pyproject
    source = (project / "ort_auth_gate" / "plugin.py").read_text()
    assert "from ort_core.plugin import" in source  # the public API only

    target = tmp_path / "site"
    install = subprocess.run(
        [PYTHON, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(project)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    assert (target / "ort_auth_gate" / "plugin.py").is_file()

    result = pytest_run(project / "tests", cwd=project, PYTHONPATH=str(target))

    assert result.returncode == 0, result.stdout + result.stderr
    assert passed(result) == 4, result.stdout


def test_the_function_templates_pass_their_tests(tmp_path: Path) -> None:
    for language in ("python", "node", "deno"):
        created = ort_new("function", "--language", language, cwd=tmp_path)
        assert created.returncode == 0, created.stderr
        assert f"hello-{language}/event.json" in created.stdout
    handlers = {"python": "handler.py", "node": "index.mjs", "deno": "handler.ts"}
    for language, handler in handlers.items():
        assert (tmp_path / f"hello-{language}" / handler).is_file()

    result = pytest_run(*(tmp_path / f"hello-{lang}" / "tests" for lang in handlers), cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert passed(result) == 3, result.stdout


def test_new_refuses_a_directory_in_use_and_an_unknown_language(tmp_path: Path) -> None:
    (tmp_path / "ort-taken").mkdir()
    (tmp_path / "ort-taken" / "keep.txt").write_text("mine")

    taken = ort_new("plugin", "taken", cwd=tmp_path)
    unknown = ort_new("function", "--language", "cobol", cwd=tmp_path)

    assert taken.returncode == 1
    assert "ort-taken exists and is not an empty directory" in taken.stderr
    assert (tmp_path / "ort-taken" / "keep.txt").read_text() == "mine"
    assert unknown.returncode == 1
    assert "no function template for 'cobol': use python, node, deno" in unknown.stderr
