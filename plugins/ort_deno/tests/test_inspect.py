"""``ort emulate --inspect=PORT`` opens the persistent Deno worker's inspector on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ort_core.workers.debug import free_port

HANDLER = "export const handler = async () => ({ runtime: `deno ${Deno.version.deno}` });\n"


def test_emulate_inspect_opens_denos_inspector(tmp_path: Path):
    (tmp_path / "app.ts").write_text(HANDLER)
    inspect_port, invoke_port = free_port(), free_port()
    env = {**os.environ, "ORT_PLUGINS": "ort-deno"}
    env.pop("ORT_INSPECT", None)
    emulator = subprocess.Popen(
        [sys.executable, "-m", "ort_core", "emulate", "--port", str(invoke_port),
         "--handler", "app.handler", f"--inspect={inspect_port}"],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        version = None
        deadline = time.monotonic() + 30
        while version is None and time.monotonic() < deadline:
            try:
                url = f"http://127.0.0.1:{inspect_port}/json/version"
                with urllib.request.urlopen(url, timeout=2) as answer:
                    version = json.loads(answer.read())
            except OSError:
                time.sleep(0.2)
        assert version is not None, "the inspector never answered"
        assert "deno" in version["Browser"].lower()
        request = urllib.request.Request(
            f"http://127.0.0.1:{invoke_port}/2015-03-31/functions/function/invocations",
            data=b"{}",
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert json.loads(answer.read())["runtime"].startswith("deno ")
    finally:
        emulator.terminate()
        emulator.wait(10)
