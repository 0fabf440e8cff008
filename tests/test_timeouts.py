"""Graceful timeouts in every bridge, through `ort bootstrap` and a Runtime API peer.

For each language: a handler that sleeps past its deadline gets ``Sandbox.Timedout`` before
the deadline, after the ``on_timeout`` hooks ran; the process it ran in is gone; the next
invocation succeeds. Workers are replaced and the runtime goes on; a Python handler running
in ORT's own process cannot be stopped, so that runtime exits after answering and the platform
starts a fresh one, as Lambda does after its own timeouts.
"""

from __future__ import annotations

import re
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from conftest import PYTHON, alive, clean_environ, descendants
from runtime_api_peer import Peer, start_peer

DEADLINE_MS = 2000
MARGIN_MS = "400"  # generous: the test machine may be loaded; bench/ measures what is needed

# Each handler answers {"pid": ...} and sleeps first when the event says {"sleep": ms}.
FUNCTIONS = {
    "python": (
        "app.handler",
        "app.py",
        """
        import os, time

        def handler(event, context):
            time.sleep(event.get("sleep", 0) / 1000)
            return {"pid": os.getpid()}
        """,
        {},
    ),
    "node": (
        "index.handler",
        "index.js",
        """
        exports.handler = async (event) => {
          await new Promise((done) => setTimeout(done, event.sleep || 0));
          return { pid: process.pid };
        };
        """,
        {"ORT_LANGUAGE": "node"},
    ),
    "deno": (
        "handler.handler",
        "handler.ts",
        """
        export const handler = async (event: { sleep?: number }) => {
          await new Promise((done) => setTimeout(done, event.sleep ?? 0));
          return { pid: Deno.pid };
        };
        """,
        {"ORT_LANGUAGE": "deno"},
    ),
    "bash": (
        "handler.sh",
        "handler.sh",
        """
        #!/bin/bash
        event=$(cat)
        case "$event" in *sleep*) sleep 30;; esac
        echo "{\\"pid\\": $$}"
        """,
        {"ORT_LANGUAGE": "bash"},
    ),
}

CASES = {
    "python-in-process": ("python", {}),
    "python-subprocess": ("python", {"ORT_PYTHON_MODE": "subprocess"}),
    "node": ("node", {}),
    "deno-persistent": ("deno", {}),
    "deno-per-invocation": ("deno", {"ORT_DENO_MODE": "per-invocation"}),
    "bash": ("bash", {}),
}

# What runs under ORT between invocations: the persistent worker, if any.
PROCESSES_BETWEEN_EVENTS = {
    "python-in-process": 0,
    "python-subprocess": 1,
    "node": 1,
    "deno-persistent": 1,
    "deno-per-invocation": 0,
    "bash": 0,
}

WITNESS = """
import sys
from ort_core import hookimpl

@hookimpl
def on_timeout(event, context):
    print("on_timeout ran for", context.aws_request_id, "with", event, file=sys.stderr, flush=True)
"""


def start_runtime(peer: Peer, folder: Path, log: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [PYTHON, "-m", "ort_core", "bootstrap"],
        env=clean_environ(
            AWS_LAMBDA_RUNTIME_API=peer.address,
            LAMBDA_TASK_ROOT=str(folder),
            ORT_TIMEOUT_MARGIN_MS=MARGIN_MS,
            ORT_PLUGIN_MODULES="timeout_witness",
            PYTHONPATH=str(folder / "plugins"),
            **env,
        ),
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
    )


@pytest.mark.parametrize("case", CASES)
def test_a_handler_past_its_deadline_times_out_gracefully_and_the_next_invocation_succeeds(
    case: str, tmp_path: Path
) -> None:
    language, mode = CASES[case]
    handler, file_name, source, language_env = FUNCTIONS[language]
    folder = tmp_path / "function"
    (folder / "plugins").mkdir(parents=True)
    (folder / file_name).write_text(textwrap.dedent(source).lstrip())
    (folder / file_name).chmod(0o755)
    (folder / "plugins" / "timeout_witness.py").write_text(WITNESS)
    env = {"_HANDLER": handler, **language_env, **mode}
    log = tmp_path / "runtime.log"
    peer = start_peer(deadline_ms=DEADLINE_MS)
    runtimes = [start_runtime(peer, folder, log, env)]
    try:
        first = peer.invoke({}).json()["pid"]

        result = peer.invoke({"sleep": 30_000})
        error = result.json()
        assert result.kind == "error"
        assert error["errorType"] == "Sandbox.Timedout"
        request_id, _, message = error["errorMessage"].partition(" ")
        assert request_id == error["requestId"]
        assert re.fullmatch(r"Task timed out after (1\.9\d|2\.00) seconds", message), message
        assert result.received_ms < result.deadline_ms, "the error came after the deadline"
        assert f"on_timeout ran for {error['requestId']} with {{'sleep': 30000}}" in (
            log.read_text()
        )

        if case == "python-in-process":
            assert runtimes[0].wait(timeout=10) == 1  # the platform starts a fresh sandbox
            runtimes.append(start_runtime(peer, folder, log, env))
        else:
            assert runtimes[0].poll() is None, "the runtime goes on"
        after = peer.invoke({}).json()["pid"]
        if case != "python-in-process":  # the handler ran in a process of its own
            assert after != first
            deadline = time.monotonic() + 5
            while alive(first) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not alive(first), "the timed-out process is still running"
        assert len(descendants(runtimes[-1].pid)) == PROCESSES_BETWEEN_EVENTS[case]
    finally:
        for runtime in runtimes:
            runtime.kill()
            runtime.wait()
        peer.close()
