"""The fault matrix through the other front ends: the gateway (`ort serve`) and the emulator
(`ort emulate`, which restarts a runtime that died, as Lambda does).

For each fault: the HTTP status and error JSON a caller sees, the next request succeeds, and
the server's process tree and descriptors are as they were.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import PYTHON, clean_environ, descendants
from faults.harness import IN_PROCESS, PERSISTENT, SIX_MB, limits, settled, write_function

INVOKE = "/2015-03-31/functions/function/invocations"


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(self, front: str, bridge: str, folder: Path) -> None:
        env = write_function(folder / "function", bridge)
        self.port = free_port()
        self.log = folder / "server.log"
        command = [PYTHON, "-m", "ort_core", front, "--port", str(self.port)]
        command += ["--timeout", "2"]
        if front == "serve":
            command += ["--host", "127.0.0.1", "--concurrency", "1"]
        command += ["--handler", env["_HANDLER"]]
        self.process = subprocess.Popen(
            command,
            cwd=env["LAMBDA_TASK_ROOT"],
            env=clean_environ(SCW_PUBLIC="true", ORT_TIMEOUT_MARGIN_MS="300", **env),
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            preexec_fn=limits(None),
        )
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60)
        self.front = front
        limit = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, self.log.read_text()
            try:
                self.ok()
                break
            except httpx.TransportError:
                assert time.monotonic() < limit, "the server never answered"
                time.sleep(0.05)

    def ok(self) -> dict:
        response = self.call(b"{}")
        assert response.status_code == 200, response.text
        assert "x-amz-function-error" not in response.headers
        return response.json()

    def call(self, body: bytes, do: str | None = None) -> httpx.Response:
        if self.front == "emulate":
            payload = json.dumps({"do": do}).encode() if do else body
            return self.client.post(INVOKE, content=payload)
        return self.client.post("/" + (f"?do={do}" if do else ""), content=body)

    def counts(self) -> tuple[int, int]:
        return len(descendants(self.process.pid)), len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def stop(self) -> None:
        self.client.close()
        self.process.kill()
        self.process.wait()


@pytest.fixture(scope="module")
def server_for(tmp_path_factory) -> Iterator[Callable[[str, str], Server]]:
    servers: dict[tuple[str, str], Server] = {}

    def get(front: str, bridge: str) -> Server:
        if (front, bridge) not in servers:
            servers[front, bridge] = Server(front, bridge, tmp_path_factory.mktemp(bridge))
        return servers[front, bridge]

    yield get
    for server in servers.values():
        server.stop()


GATEWAY_BRIDGES = ["python-in-process", "python-subprocess", "node", "deno-persistent", "bash"]
# fault -> (status, errorType); a script that fails is a crashed runtime (502)
GATEWAY = {
    "raise": (500, None),
    "exit": (502, "Runtime.ExitError"),
    "crash": (502, "Runtime.ExitError"),
    "hang": (504, "Sandbox.Timedout"),
}
RAISED = {"python": "ValueError", "node": "Error", "deno": "Error", "bash": "Runtime.ExitError"}
CASES = [
    (bridge, fault)
    for bridge in GATEWAY_BRIDGES
    for fault in GATEWAY
    if bridge != IN_PROCESS or fault == "raise"  # exiting ends `ort serve` itself
    if not (bridge.startswith("deno") and fault == "crash")
]


@pytest.mark.parametrize(("bridge", "fault"), CASES)
def test_the_gateway_answers_a_failing_handler_with_its_status(server_for, bridge, fault):
    server = server_for("serve", bridge)
    server.ok()
    counts = server.counts()
    response = server.call(b"{}", do=fault)
    status, error_type = GATEWAY[fault]
    error_type = error_type or RAISED[bridge.split("-")[0]]
    if bridge == "bash" and fault == "raise":
        status = 502
    assert response.status_code == status, response.text
    error = response.json()
    assert error["errorType"] == error_type
    assert "stackTrace" not in error  # callers never see the code
    server.ok()
    assert settled(server.counts, counts) == counts


@pytest.mark.parametrize("bridge", GATEWAY_BRIDGES)
def test_the_gateway_refuses_a_body_over_6_mb_and_passes_bytes_that_are_not_utf8(
    server_for, bridge
):
    server = server_for("serve", bridge)
    server.ok()
    counts = server.counts()
    response = server.call(b"x" * (SIX_MB + 1))
    assert response.status_code == 413
    assert response.json()["errorType"] == "Gateway.PayloadTooLarge"
    assert server.call(b"\xff\xfe not utf-8 " + bytes(range(256))).json()["ok"]
    assert server.call(b"[" * 100_000).json()["ok"]  # a body is the handler's to parse
    assert server.call(b"{}", do="flood").json()["ok"]
    server.ok()
    assert settled(server.counts, counts) == counts


@pytest.mark.parametrize("bridge", sorted(PERSISTENT))
def test_the_gateway_replaces_a_worker_killed_from_outside(server_for, bridge):
    server = server_for("serve", bridge)
    server.ok()
    counts = server.counts()
    (worker,) = descendants(server.process.pid)
    os.kill(worker, signal.SIGKILL)
    # the next request finds the worker dead and starts another (or fails with 502 if the
    # kill landed in flight); either way the one after is answered
    assert server.call(b"{}").status_code in (200, 502)
    server.ok()
    assert settled(server.counts, counts) == counts


def test_the_emulator_refuses_an_event_of_6_mb_plus_one_byte(server_for):
    server = server_for("emulate", IN_PROCESS)
    event = b'"' + b"x" * (SIX_MB + 100 - 1) + b'"'
    response = server.call(event)
    assert response.status_code == 413
    assert response.json()["errorType"] == "RequestEntityTooLarge"
    server.ok()


@pytest.mark.parametrize("fault", ["exit", "crash", "hang"])
def test_the_emulator_replaces_an_in_process_runtime_that_died(server_for, fault):
    """Python in ORT's own process: the handler's exit, crash or timeout ends the runtime;
    the caller gets Lambda's error and the next event a fresh runtime, with nothing left."""
    server = server_for("emulate", IN_PROCESS)
    server.ok()
    processes = len(descendants(server.process.pid))
    response = server.call(b"", do=fault)
    assert response.headers["x-amz-function-error"] == "Unhandled"
    error = response.json()
    expected = "Sandbox.Timedout" if fault == "hang" else "Runtime.ExitError"
    assert error["errorType"] == expected
    server.ok()
    assert settled(lambda: len(descendants(server.process.pid)), processes) == processes
