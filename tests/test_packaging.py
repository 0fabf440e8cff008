"""`pip install ./ ./plugins/ort_python` works alone, in a fresh virtualenv, outside the repo."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import clean_environ

ROOT = Path(__file__).resolve().parent.parent


def test_core_and_python_plugin_install_and_run_alone(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            str(ROOT),
            str(ROOT / "plugins" / "ort_python"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    function = shutil.copytree(ROOT / "examples" / "hello", tmp_path / "hello")
    env = clean_environ(PATH=f"{venv / 'bin'}:/usr/bin:/bin", ORT_SIGNATURE="")  # the default

    answer = subprocess.run(
        [str(venv / "bin" / "ort"), "invoke", "--handler", "app.handler", "--event", "event.json"],
        cwd=function,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["message"] == "Hello, ORT!"

    plugins = subprocess.run(
        [str(venv / "bin" / "ort"), "plugins", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    [python] = [info for info in json.loads(plugins.stdout) if info["name"] == "python"]
    assert (python["name"], python["distribution"], python["hooks"]) == (
        "python",
        "ort-python",
        ["launch_language"],
    )
    assert (venv / "bin" / "bootstrap").is_file()
    subpackages = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import ort_core.workers.bridge"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert subpackages.returncode == 0, subpackages.stderr  # every subpackage is in the wheel

    generated = subprocess.run(  # `ort new`'s templates are package data of the wheel
        [str(venv / "bin" / "ort"), "new", "plugin", "packaged", "-o", str(tmp_path / "new")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert generated.returncode == 0, generated.stderr
    assert (tmp_path / "new" / "ort_packaged" / "plugin.py").is_file()
    assert (tmp_path / "new" / "tests" / "test_plugin.py").is_file()
