"""``ort emulate`` end to end: the real CLI in a subprocess, called over HTTP like AWS's RIE.

Each test starts the emulator on a free port with a function folder as its working directory,
invokes ``POST /2015-03-31/functions/function/invocations`` with httpx and checks what a user
sees: status, headers, JSON bodies and the START/END/REPORT lines on the emulator's stdout.
The runtime is ORT's own bootstrap (the default CMD) or AWS's ``awslambdaric``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import clean_environ

INVOKE_PATH = "/2015-03-31/functions/function/invocations"
MAX_PAYLOAD = 6 * 1024 * 1024 + 100
DEFAULT_ARN = "arn:aws:lambda:us-east-1:012345678912:function:function"

APP = """
import os
import time


def handler(event, context):
    action = event.get("action")
    if action == "sleep":
        print("handler sleeping", flush=True)
        time.sleep(event["seconds"])
    if action == "raise":
        raise ValueError("boom")
    if action == "exit":
        os._exit(3)
    if action == "echo":
        return event
    if action == "big":
        return "x" * (7 * 1024 * 1024)
    if action == "context":
        client_context = context.client_context
        return {
            "custom": client_context.custom if client_context else None,
            "app_title": (
                client_context.client.app_title
                if client_context and client_context.client
                else None
            ),
            "trace": os.environ.get("_X_AMZN_TRACE_ID"),
            "request_id": context.aws_request_id,
        }
    return {
        "greeting": "hello " + event.get("name", "nobody"),
        "function_name": context.function_name,
        "arn": context.invoked_function_arn,
        "memory": context.memory_limit_in_mb,
        "request_id": context.aws_request_id,
    }
"""


@dataclass
class RunningEmulator:
    process: subprocess.Popen
    port: int
    stdout_path: Path
    stderr_path: Path
    client: httpx.Client
    files: list[Any] = field(default_factory=list)

    def invoke(
        self,
        event: Any = None,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        path: str = INVOKE_PATH,
    ) -> httpx.Response:
        body = content if content is not None else json.dumps(event or {}).encode()
        return self.client.post(
            f"http://127.0.0.1:{self.port}{path}", content=body, headers=headers or {}
        )

    def log(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def diagnostics(self) -> str:
        return (
            f"--- emulator stdout ---\n{self.log()}\n"
            f"--- emulator stderr ---\n{self.stderr_path.read_text(errors='replace')}"
        )

    def report_line(self, request_id: str) -> str:
        lines = [
            line
            for line in self.log().splitlines()
            if line.startswith(f"REPORT RequestId: {request_id}\t")
        ]
        assert len(lines) == 1, f"no single REPORT line for {request_id}\n{self.diagnostics()}"
        return lines[0]

    def report_lines(self) -> list[str]:
        return [line for line in self.log().splitlines() if line.startswith("REPORT RequestId: ")]


def wait_for_log(emulator: RunningEmulator, text: str, limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while text not in emulator.log():
        if time.monotonic() > deadline:
            pytest.fail(f"{text!r} never appeared\n{emulator.diagnostics()}")
        time.sleep(0.05)


def _swallow(call: Callable[..., Any], *args: Any) -> None:
    """Call, ignoring a connection the emulator drops as it stops."""
    try:
        call(*args)
    except httpx.TransportError:
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(emulator: RunningEmulator, limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if emulator.process.poll() is not None:
            pytest.fail(
                f"ort emulate exited with {emulator.process.returncode}\n{emulator.diagnostics()}"
            )
        try:
            with socket.create_connection(("127.0.0.1", emulator.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(
        f"ort emulate did not listen on {emulator.port} in {limit}s\n{emulator.diagnostics()}"
    )


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


def stop(emulator: RunningEmulator) -> None:
    """SIGTERM, wait, then SIGKILL the emulator; then end the runtimes it had started.

    Each runtime leads its own session, so one left behind (say, by an emulator that died
    before it could stop it) is ended by its process group, known from before the signal.
    """
    emulator.client.close()
    process = emulator.process
    runtimes = _children(process.pid)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for pid in runtimes:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for handle in emulator.files:
        handle.close()


@pytest.fixture
def emulate(function_dir, tmp_path: Path) -> Iterator[Callable[..., RunningEmulator]]:
    """Start ``ort emulate`` on a free port: ``emulate(handler=..., runtime=[...], env={})``."""
    started: list[RunningEmulator] = []

    def start(
        *options: str,
        handler: str | None = "app.handler",
        runtime: list[str] | None = None,
        files: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
    ) -> RunningEmulator:
        folder = function_dir(files if files is not None else {"app.py": APP})
        logs = tmp_path.parent / f"{tmp_path.name}-logs-{len(started)}"
        logs.mkdir()
        port = free_port()
        command = [sys.executable, "-m", "ort_core", "emulate", "--port", str(port)]
        if handler is not None:
            command += ["--handler", handler]
        command += list(options)
        if runtime:
            command += ["--", *runtime]
        environ = clean_environ(LAMBDA_TASK_ROOT=str(folder), PYTHONPATH=str(folder), **(env or {}))
        stdout = open(logs / "stdout.log", "wb")  # closed in stop()
        stderr = open(logs / "stderr.log", "wb")  # closed in stop()
        process = subprocess.Popen(
            command,
            cwd=folder,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
        emulator = RunningEmulator(
            process=process,
            port=port,
            stdout_path=logs / "stdout.log",
            stderr_path=logs / "stderr.log",
            client=httpx.Client(timeout=30),
            files=[stdout, stderr],
        )
        started.append(emulator)
        wait_for_port(emulator)
        return emulator

    yield start
    for emulator in started:
        stop(emulator)


def client_context_header(value: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def assert_unhandled(response: httpx.Response, error_type: str) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert response.headers.get("X-Amz-Function-Error") == "Unhandled", response.headers
    body = response.json()
    assert body["errorType"] == error_type, body
    return body


# -- ORT's own runtime (the default CMD) ------------------------------------------------------


def test_hello_returns_exactly_the_handlers_json(emulate):
    emulator = emulate()
    response = emulator.invoke({"name": "ort"})

    assert response.status_code == 200, response.text
    assert "X-Amz-Function-Error" not in response.headers
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["request_id"]
    assert body == {
        "greeting": "hello ort",
        "function_name": "function",
        "arn": DEFAULT_ARN,
        "memory": "128",
        "request_id": body["request_id"],
    }
    assert body["arn"].endswith(":function:function")


def test_function_name_comes_from_aws_lambda_function_name(emulate):
    emulator = emulate(env={"AWS_LAMBDA_FUNCTION_NAME": "my-func"})
    body = emulator.invoke({"name": "x"}).json()

    assert body["function_name"] == "my-func"
    assert body["arn"].endswith(":function:my-func")


def test_client_context_and_trace_id_reach_the_handler(emulate):
    emulator = emulate()
    trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    response = emulator.invoke(
        {"action": "context"},
        headers={
            "X-Amz-Client-Context": client_context_header(
                {"custom": {"k": "v"}, "client": {"app_title": "t"}}
            ),
            "X-Amzn-Trace-Id": trace,
        },
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["custom"] == {"k": "v"}
    assert body["app_title"] == "t"
    assert body["trace"] == trace

    # Without the headers, the next invocation has no client context and a fresh trace id.
    plain = emulator.invoke({"action": "context"}).json()
    assert plain["custom"] is None
    assert plain["app_title"] is None
    assert plain["trace"] and plain["trace"] != trace


def test_bad_client_context_is_http_400(emulate):
    emulator = emulate()
    response = emulator.invoke(
        {"action": "context"}, headers={"X-Amz-Client-Context": "%%% not base64 %%%"}
    )

    assert response.status_code == 400, response.text
    assert "START RequestId" not in emulator.log()
    assert emulator.invoke({"name": "after"}).json()["greeting"] == "hello after"


def test_handler_exception_is_an_unhandled_error_then_next_invocation_works(emulate):
    emulator = emulate()
    body = assert_unhandled(emulator.invoke({"action": "raise"}), "ValueError")

    assert body["errorMessage"] == "boom"
    assert isinstance(body["requestId"], str) and body["requestId"]
    assert isinstance(body["stackTrace"], list) and body["stackTrace"]
    assert "app.py" in "".join(body["stackTrace"])

    after = emulator.invoke({"name": "again"})
    assert after.status_code == 200
    assert "X-Amz-Function-Error" not in after.headers
    assert after.json()["greeting"] == "hello again"


def test_timeout_answers_sandbox_timedout_and_a_new_sandbox_serves_the_next(emulate):
    emulator = emulate("--timeout", "1")
    started = time.monotonic()
    response = emulator.invoke({"action": "sleep", "seconds": 5})
    elapsed = time.monotonic() - started

    body = assert_unhandled(response, "Sandbox.Timedout")
    assert "Task timed out after" in body["errorMessage"]
    assert elapsed < 4, f"the timeout took {elapsed:.1f}s to answer"

    after = emulator.invoke({"name": "later"})
    assert after.status_code == 200, after.text
    assert "X-Amz-Function-Error" not in after.headers
    assert after.json()["greeting"] == "hello later"

    reports = emulator.report_lines()
    assert len(reports) == 2, emulator.diagnostics()
    timed_out_id = body["errorMessage"].split()[0]
    assert reports[0].startswith(f"REPORT RequestId: {timed_out_id}\t"), reports
    assert reports[1].startswith(f"REPORT RequestId: {after.json()['request_id']}\t"), reports
    assert "Init Duration:" in reports[1], "the sandbox after a timeout must be a cold one"


def test_runtime_exit_is_runtime_exiterror_then_next_invocation_works(emulate):
    emulator = emulate()
    body = assert_unhandled(emulator.invoke({"action": "exit"}), "Runtime.ExitError")

    assert "exit status 3" in body["errorMessage"]

    after = emulator.invoke({"name": "back"})
    assert after.status_code == 200, after.text
    assert after.json()["greeting"] == "hello back"


def test_missing_module_is_runtime_importmoduleerror(emulate):
    emulator = emulate(handler="missing.handler")

    for _ in range(2):  # every invocation meets the same init error, no hang in between
        body = assert_unhandled(emulator.invoke({"name": "x"}), "Runtime.ImportModuleError")
        assert "missing" in body["errorMessage"]


def test_missing_function_is_runtime_handlernotfound(emulate):
    emulator = emulate(handler="app.nothere")
    body = assert_unhandled(emulator.invoke({"name": "x"}), "Runtime.HandlerNotFound")

    assert "nothere" in body["errorMessage"]


def test_start_end_report_lines_carry_the_handlers_request_id(emulate):
    emulator = emulate()
    first = emulator.invoke({"name": "one"}).json()["request_id"]
    second = emulator.invoke({"name": "two"}).json()["request_id"]
    assert first and second and first != second
    log = emulator.log()

    for request_id in (first, second):
        assert f"START RequestId: {request_id} Version: $LATEST" in log, log
        assert f"END RequestId: {request_id}" in log, log
        assert (
            log.index(f"START RequestId: {request_id}")
            < log.index(f"END RequestId: {request_id}")
            < log.index(f"REPORT RequestId: {request_id}")
        )
        report = emulator.report_line(request_id)
        assert re.search(r"\tDuration: \d+\.\d+ ms", report), report
        assert re.search(r"\tBilled Duration: \d+ ms", report), report
        assert "\tMemory Size: 128 MB" in report, report
        used = re.search(r"\tMax Memory Used: (\d+) MB", report)
        assert used and int(used.group(1)) > 0, report

    assert re.search(r"\tInit Duration: \d+\.\d+ ms", emulator.report_line(first))
    assert "Init Duration" not in emulator.report_line(second), "a warm start has no init"


def test_payload_over_the_limit_is_http_413(emulate):
    emulator = emulate()
    response = emulator.invoke(content=b"x" * (MAX_PAYLOAD + 1))

    assert response.status_code == 413, response.text[:200]
    assert emulator.invoke({"name": "fine"}).json()["greeting"] == "hello fine"


def test_five_megabyte_event_round_trips_byte_exact(emulate):
    emulator = emulate()
    payload = json.dumps({"action": "echo", "data": "0123456789" * 500_000}).encode()
    response = emulator.invoke(content=payload)

    assert response.status_code == 200, response.text[:200]
    assert "X-Amz-Function-Error" not in response.headers
    assert len(response.content) == len(payload)
    assert response.content == payload


def test_response_over_the_limit_is_an_unhandled_error(emulate):
    emulator = emulate()
    body = assert_unhandled(emulator.invoke({"action": "big"}), "Function.ResponseSizeTooLarge")

    assert "exceeded maximum allowed payload size" in body["errorMessage"]
    assert emulator.invoke({"name": "small"}).json()["greeting"] == "hello small"


def test_wrong_path_is_404(emulate):
    emulator = emulate()
    response = emulator.invoke({"name": "x"}, path="/2015-03-31/functions/other/invocations")

    assert response.status_code == 404
    assert "START RequestId" not in emulator.log()


def test_sigterm_stops_the_emulator_and_its_runtime(emulate):
    emulator = emulate()
    assert emulator.invoke({"name": "x"}).status_code == 200
    runtimes = _children(emulator.process.pid)
    assert runtimes, "the emulator should have a runtime process"

    emulator.process.send_signal(signal.SIGTERM)
    assert emulator.process.wait(timeout=10) == 0
    for pid in runtimes:
        deadline = time.monotonic() + 5
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{pid}").exists(), f"runtime {pid} outlived the emulator"


def test_sigterm_during_an_invocation_stops_the_emulator_promptly(emulate):
    emulator = emulate()
    caller = threading.Thread(
        target=lambda: _swallow(emulator.invoke, {"action": "sleep", "seconds": 30}),
        daemon=True,
    )
    caller.start()
    wait_for_log(emulator, "handler sleeping")
    runtimes = _children(emulator.process.pid)
    assert runtimes, "the emulator should have a runtime process"

    started = time.monotonic()
    emulator.process.send_signal(signal.SIGTERM)
    try:
        emulator.process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("ort emulate ignored SIGTERM while an invocation was running")
    assert time.monotonic() - started < 5
    for pid in runtimes:
        deadline = time.monotonic() + 5
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{pid}").exists(), f"runtime {pid} outlived the emulator"
    caller.join(timeout=10)
    assert not caller.is_alive()


# -- AWS's runtime interface client as the runtime ------------------------------------------


AWSLAMBDARIC = [sys.executable, "-m", "awslambdaric"]


def test_awslambdaric_hello_client_context_and_errors(emulate):
    emulator = emulate(handler=None, runtime=[*AWSLAMBDARIC, "app.handler"])

    hello = emulator.invoke({"name": "ric"})
    assert hello.status_code == 200, hello.text
    assert "X-Amz-Function-Error" not in hello.headers
    body = hello.json()
    assert body["request_id"]
    assert body == {
        "greeting": "hello ric",
        "function_name": "function",
        "arn": DEFAULT_ARN,
        "memory": "128",
        "request_id": body["request_id"],
    }

    context = emulator.invoke(
        {"action": "context"},
        headers={"X-Amz-Client-Context": client_context_header({"custom": {"k": "v"}})},
    )
    assert context.status_code == 200, context.text
    assert context.json()["custom"] == {"k": "v"}

    error = assert_unhandled(emulator.invoke({"action": "raise"}), "ValueError")
    assert error["errorMessage"] == "boom"

    after = emulator.invoke({"name": "still"})
    assert after.status_code == 200, after.text
    assert "X-Amz-Function-Error" not in after.headers
    assert after.json()["greeting"] == "hello still"


def test_awslambdaric_missing_module_is_runtime_importmoduleerror(emulate):
    emulator = emulate(handler=None, runtime=[*AWSLAMBDARIC, "missing.handler"])
    body = assert_unhandled(emulator.invoke({"name": "x"}), "Runtime.ImportModuleError")

    assert "missing" in body["errorMessage"]


def test_awslambdaric_timeout_is_enforced_by_the_emulator(emulate):
    """awslambdaric has no watchdog: the emulator's own clock ends the invocation."""
    emulator = emulate("--timeout", "1", handler=None, runtime=[*AWSLAMBDARIC, "app.handler"])
    started = time.monotonic()
    response = emulator.invoke({"action": "sleep", "seconds": 5})
    elapsed = time.monotonic() - started

    body = assert_unhandled(response, "Sandbox.Timedout")
    assert "Task timed out after 1.00 seconds" in body["errorMessage"]
    assert elapsed < 4, f"the timeout took {elapsed:.1f}s to answer"

    after = emulator.invoke({"name": "later"})
    assert after.status_code == 200, after.text
    assert after.json()["greeting"] == "hello later"
    reports = emulator.report_lines()
    assert len(reports) == 2, emulator.diagnostics()
    assert "Init Duration:" in reports[1], "the sandbox after a timeout must be a cold one"
