"""Deno behind the real Lambda loop, `python -m ort_core bootstrap`, and a Runtime API peer."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runtime_api_peer import start_peer

HANDLER = """
Deno.writeTextFileSync(Deno.env.get("LOADS")!, `${Deno.pid}\\n`, { append: true });
export const handler = async (event: { sleep?: number }) => {
  if (event.sleep) await new Promise((resolve) => setTimeout(resolve, event.sleep));
  return { pid: Deno.pid };
};
"""


def start_bootstrap(
    address: str, task_root: Path, log: Path, **extra: str
) -> subprocess.Popen[bytes]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "ORT_", "_HANDLER", "LAMBDA_"))
    }
    env.update(
        AWS_LAMBDA_RUNTIME_API=address,
        _HANDLER="app.handler",
        LAMBDA_TASK_ROOT=str(task_root),
        ORT_PLUGINS="ort-deno",
        ORT_SIGNATURE="raw",  # Lambda's own events: the handlers read fields of the event
        **extra,
    )
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "ort_core", "bootstrap"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}"):
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def task_root(tmp_path: Path) -> Path:
    root = tmp_path / "task"
    root.mkdir()
    (root / "app.ts").write_text(HANDLER)
    return root


def loads_env(tmp_path: Path, mode: str) -> dict[str, str]:
    loads = tmp_path / "loads.txt"
    loads.touch()
    return {
        "ORT_DENO_MODE": mode,
        "ORT_DENO_PERMISSIONS": f"--allow-env=LOADS --allow-write={loads}",
        "LOADS": str(loads),
    }


def test_bootstrap_starts_the_persistent_worker_early_and_adopts_it(
    task_root: Path, tmp_path: Path
) -> None:
    """Without ORT_LANGUAGE, the worker spawned before ORT's imports is the one that serves."""
    peer = start_peer()
    env = loads_env(tmp_path, "persistent")
    runtime = start_bootstrap(peer.address, task_root, tmp_path / "runtime.log", **env)
    try:
        first = peer.invoke({}).json()["pid"]
        second = peer.invoke({}).json()["pid"]
        assert first == second
        assert (tmp_path / "loads.txt").read_text().split() == [str(first)]
    finally:
        runtime.kill()
        runtime.wait()
        peer.close()
    assert gone(first)


def test_bootstrap_runs_a_process_per_event_in_per_invocation_mode(
    task_root: Path, tmp_path: Path
) -> None:
    peer = start_peer()
    env = loads_env(tmp_path, "per-invocation")
    runtime = start_bootstrap(
        peer.address, task_root, tmp_path / "runtime.log", ORT_LANGUAGE="deno", **env
    )
    try:
        pids = [peer.invoke({}).json()["pid"] for _ in range(2)]
        assert pids[0] != pids[1]
        loads = (tmp_path / "loads.txt").read_text().split()
        assert len(loads) == 3 and loads[1:] == [str(pid) for pid in pids]  # init's check too
    finally:
        runtime.kill()
        runtime.wait()
        peer.close()
