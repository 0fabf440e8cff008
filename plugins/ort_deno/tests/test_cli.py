"""The real CLI, `python -m ort_core invoke`, with ORT_LANGUAGE=deno, in both modes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "hello-deno"
MODES = ("persistent", "per-invocation")


def ort_invoke(
    mode: str, task_root: Path, handler: str, event: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "ORT_", "_HANDLER", "LAMBDA_"))
    }
    env.update(ORT_LANGUAGE="deno", ORT_DENO_MODE=mode, ORT_PLUGINS="ort-deno")
    command = [sys.executable, "-m", "ort_core", "invoke", "--handler", handler]
    if event is not None:
        command += ["--event", str(event)]
    return subprocess.run(
        command, cwd=task_root, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("mode", MODES)
def test_cli_invokes_the_example(mode: str) -> None:
    done = ort_invoke(mode, EXAMPLE, "hello.handler", EXAMPLE / "event.json")

    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["message"] == "Hello, ORT!"
    assert answer["runtime"].startswith("deno 2.")
    assert len(answer["requestId"]) == 36


@pytest.mark.parametrize("mode", MODES)
def test_cli_prints_a_function_error_and_the_log(mode: str, tmp_path: Path) -> None:
    (tmp_path / "fail.ts").write_text(
        'export const handler = () => { console.log("about to fail"); '
        'throw new SyntaxError("bad input"); };\n'
    )

    done = ort_invoke(mode, tmp_path, "fail.handler")

    assert done.returncode == 1
    error = json.loads(done.stdout)
    assert (error["errorType"], error["errorMessage"]) == ("SyntaxError", "bad input")
    assert "about to fail" in done.stderr
