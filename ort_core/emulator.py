"""``ort emulate``: a local Lambda, without Docker, for any runtime client.

It serves AWS's runtime interface emulator's invoke endpoint
(``POST /2015-03-31/functions/function/invocations``) and runs the runtime command as a
sandbox with its own Runtime API. Each sandbox gets a fresh Runtime API port, so a runtime
that was killed or crashed can never take an event meant for its successor.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ort_core.config import with_lambda_defaults

INVOKE_PATH = "/2015-03-31/functions/function/invocations"
RUNTIME_PREFIX = "/2018-06-01/runtime"
MAX_PAYLOAD = 6 * 1024 * 1024 + 100  # what AWS's emulator accepts, each way
INIT_TIMEOUT = 10.0  # seconds Lambda gives an on-demand init before the function's timeout
ACCOUNT_ID = "012345678912"


def error_body(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


@dataclass
class Invocation:
    """One event on its way through a sandbox, and how it ended."""

    request_id: str
    body: bytes
    deadline_ms: int = 0
    expires: float = 0.0
    client_context: str | None = None
    trace_id: str | None = None
    delivered: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    answer: bytes = b""
    failed: bool = False
    started: float = field(default_factory=time.monotonic)  # delivered, once it is
    finished: float = 0.0
    memory_kb: int = 0


class Sandbox:
    """One runtime process and the Runtime API it talks to."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str], arn: str) -> None:
        self.arn = arn
        self.served = False
        self.condition = threading.Condition()
        self.pending: Invocation | None = None
        self.in_flight: Invocation | None = None
        self.init_error: bytes | None = None
        self.init_duration_ms: float | None = None
        self.timeout = 0.0
        self.peak_memory_kb = 0
        self.exited = False
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _runtime_api_handler(self))
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            list(command),
            env={**env, "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self.server.server_port}"},
            start_new_session=True,
        )
        threading.Thread(target=self._watch_process, daemon=True).start()

    def _watch_process(self) -> None:
        self.process.wait()
        with self.condition:
            self.exited = True
            self.condition.notify_all()

    # -- the Runtime API side ------------------------------------------------------------

    def next_invocation(self) -> Invocation | None:
        with self.condition:
            if self.init_duration_ms is None:
                self.init_duration_ms = (time.monotonic() - self.started) * 1000
            while self.pending is None and not self.exited:
                self.condition.wait()
            invocation, self.pending = self.pending, None
            if invocation is not None:
                invocation.delivered = True
                invocation.started = time.monotonic()
                invocation.expires = invocation.started + self.timeout
                invocation.deadline_ms = int(time.time() * 1000 + self.timeout * 1000)
                self.in_flight = invocation
                self.condition.notify_all()  # the invoke side now waits for the shorter clock
            return invocation

    def finish(self, request_id: str, answer: bytes, failed: bool) -> bool:
        with self.condition:
            invocation = self.in_flight
            if invocation is None or invocation.request_id != request_id:
                return False
            self.in_flight = None
            invocation.answer, invocation.failed = answer, failed
            invocation.done.set()
            self.condition.notify_all()
            return True

    def fail_init(self, body: bytes) -> None:
        with self.condition:
            self.init_error = body
            self.condition.notify_all()

    # -- the invoke side -----------------------------------------------------------------

    def run(self, invocation: Invocation, timeout: float) -> str:
        """Hand over an event and wait: 'done', 'timeout', 'init_error', 'exited' or 'lost'.

        The clock starts again when the runtime takes the event, as Lambda's does after
        init. 'lost' means the runtime ended before taking it, so it may be retried.
        """
        outcome = self._wait(invocation, timeout)
        invocation.finished = time.monotonic()
        # Measured now, while the runtime is still there (a runtime that died keeps its last).
        self.peak_memory_kb = max(self.peak_memory_kb, _tree_peak_rss_kb(self.process.pid))
        invocation.memory_kb = self.peak_memory_kb
        return outcome

    def _wait(self, invocation: Invocation, timeout: float) -> str:
        with self.condition:
            self.timeout = timeout
            self.pending = invocation
            invocation.expires = time.monotonic() + INIT_TIMEOUT + timeout
            self.condition.notify_all()
            while not invocation.done.is_set():
                if self.init_error is not None and not invocation.delivered:
                    return "init_error"
                if self.exited:
                    return "exited" if invocation.delivered else "lost"
                left = invocation.expires - time.monotonic()
                if left <= 0:
                    return "timeout"
                self.condition.wait(left)
            return "done"

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        with self.condition:
            self.exited = True
            self.condition.notify_all()
        self.server.shutdown()
        self.server.server_close()


class Emulator:
    """The invoke endpoint, one invocation at a time, with a sandbox (re)started on demand."""

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 8080,
        log: Any = None,
    ) -> None:
        self.command = list(command)
        self.env = with_lambda_defaults(os.environ if env is None else env)
        self.timeout = float(self.env["AWS_LAMBDA_FUNCTION_TIMEOUT"])
        self.log = log or sys.stdout
        self.arn = (
            f"arn:aws:lambda:{self.env['AWS_REGION']}:{ACCOUNT_ID}:function:"
            f"{self.env['AWS_LAMBDA_FUNCTION_NAME']}"
        )
        self.sandbox: Sandbox | None = None
        self.lock = threading.Lock()
        self.closing = False
        self.server = ThreadingHTTPServer((host, port), _invoke_handler(self))
        self.server.daemon_threads = True

    @property
    def port(self) -> int:
        return self.server.server_port

    def start_sandbox(self) -> Sandbox:
        if self.sandbox is None:
            self.sandbox = Sandbox(self.command, self.env, self.arn)
        return self.sandbox

    def discard_sandbox(self) -> None:
        if self.sandbox is not None:
            self.sandbox.stop()
            self.sandbox = None

    def serve_forever(self) -> None:
        with self.lock:
            self.start_sandbox()
        try:
            self.server.serve_forever()
        finally:
            self.close()

    def close(self) -> None:
        self.closing = True
        self.server.server_close()
        sandbox = self.sandbox
        if sandbox is not None:  # now: an invocation in flight (holding the lock) ends with it
            sandbox.stop()
        with self.lock:
            self.discard_sandbox()

    def invoke(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, dict[str, str], bytes]:
        """Run one event; returns the HTTP status, headers and body for the caller."""
        if len(body) > MAX_PAYLOAD:
            return (
                413,
                {},
                error_body(
                    "RequestEntityTooLarge",
                    f"Request must be smaller than {MAX_PAYLOAD} bytes for the invoke operation",
                ),
            )
        try:
            client_context = _decode_client_context(headers.get("X-Amz-Client-Context"))
        except ValueError as exc:
            return 400, {}, error_body("InvalidRequestContentException", str(exc))
        with self.lock:
            if self.closing:
                return 503, {}, error_body("ServiceUnavailable", "ort emulate is stopping")
            invocation = Invocation(
                request_id=str(uuid.uuid4()),
                body=body,
                client_context=client_context,
                trace_id=headers.get("X-Amzn-Trace-Id") or _new_trace_id(),
            )
            return self._run(invocation)

    def _run(self, invocation: Invocation) -> tuple[int, dict[str, str], bytes]:
        print(
            f"START RequestId: {invocation.request_id} Version: "
            f"{self.env['AWS_LAMBDA_FUNCTION_VERSION']}",
            file=self.log,
            flush=True,
        )
        for _ in range(3):  # a runtime that ended between two events gets a successor
            sandbox = self.start_sandbox()
            cold = not sandbox.served
            outcome = sandbox.run(invocation, self.timeout)
            if outcome != "lost" or self.closing:
                break
            self.discard_sandbox()
        sandbox.served = True
        answer, failed = invocation.answer, invocation.failed
        if outcome == "timeout":
            answer, failed = (
                error_body(
                    "Sandbox.Timedout",
                    f"{invocation.request_id} Task timed out after {self.timeout:.2f} seconds",
                ),
                True,
            )
        elif outcome == "init_error":
            answer, failed = sandbox.init_error or b"", True
        elif outcome in ("exited", "lost"):
            answer, failed = (
                error_body(
                    "Runtime.ExitError",
                    f"RequestId: {invocation.request_id} Error: Runtime exited with error: "
                    f"exit status {sandbox.process.returncode}",
                ),
                True,
            )
        if outcome != "done":
            self.discard_sandbox()
        self._report(invocation, sandbox.init_duration_ms if cold else None)
        headers = {"Content-Type": "application/json"}
        if failed:
            headers["X-Amz-Function-Error"] = "Unhandled"
        return 200, headers, answer

    def _report(self, invocation: Invocation, init_ms: float | None) -> None:
        duration = (invocation.finished - invocation.started) * 1000
        init = f"Init Duration: {init_ms:.2f} ms\t" if init_ms is not None else ""
        print(
            f"END RequestId: {invocation.request_id}\n"
            f"REPORT RequestId: {invocation.request_id}\t{init}Duration: {duration:.2f} ms\t"
            f"Billed Duration: {math.ceil(duration)} ms\t"
            f"Memory Size: {self.env['AWS_LAMBDA_FUNCTION_MEMORY_SIZE']} MB\t"
            f"Max Memory Used: {invocation.memory_kb // 1024} MB",
            file=self.log,
            flush=True,
        )


def _decode_client_context(value: str | None) -> str | None:
    if not value:
        return None
    try:
        decoded = base64.b64decode(value, validate=True).decode()
        json.loads(decoded)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"X-Amz-Client-Context must be base64-encoded JSON: {exc}") from None
    return decoded


def _new_trace_id() -> str:
    return (
        f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};"
        f"Parent={secrets.token_hex(8)};Sampled=0"
    )


def _tree_peak_rss_kb(pid: int) -> int:
    """Peak resident memory of a process and its descendants (Linux /proc), in KiB."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
            with open(f"/proc/{current}/task/{current}/children") as children:
                stack.extend(int(child) for child in children.read().split())
        except (OSError, ValueError):
            continue
    return total


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def reply(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {"Content-Type": "application/json"}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the emulator prints Lambda's START/END/REPORT lines instead."""


def _invoke_handler(emulator: Emulator) -> type[BaseHTTPRequestHandler]:
    class InvokeHandler(_Handler):
        def do_POST(self) -> None:
            body = _read_body(self)
            if self.path.split("?")[0] != INVOKE_PATH:
                self.reply(404, error_body("NotFound", f"POST {INVOKE_PATH} to invoke"))
                return
            status, headers, answer = emulator.invoke(body, self.headers)
            self.reply(status, answer, headers)

    return InvokeHandler


def _runtime_api_handler(sandbox: Sandbox) -> type[BaseHTTPRequestHandler]:
    class RuntimeAPIHandler(_Handler):
        def do_GET(self) -> None:
            if self.path != f"{RUNTIME_PREFIX}/invocation/next":
                self.reply(404, error_body("NotFound", self.path))
                return
            invocation = sandbox.next_invocation()
            if invocation is None:  # the sandbox is going away
                self.close_connection = True
                return
            headers = {
                "Content-Type": "application/json",
                "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": sandbox.arn,
                "Lambda-Runtime-Trace-Id": invocation.trace_id or "",
            }
            if invocation.client_context:
                headers["Lambda-Runtime-Client-Context"] = invocation.client_context
            self.reply(200, invocation.body, headers)

        def do_POST(self) -> None:
            body = _read_body(self)
            parts = self.path.removeprefix(RUNTIME_PREFIX).strip("/").split("/")
            if parts == ["init", "error"]:
                sandbox.fail_init(body)
                self.reply(202, b'{"status":"OK"}')
                return
            if len(parts) != 3 or parts[0] != "invocation" or parts[2] not in ("response", "error"):
                self.reply(404, error_body("NotFound", self.path))
                return
            if len(body) > MAX_PAYLOAD:
                self.reply(
                    413,
                    error_body(
                        "RequestEntityTooLarge",
                        f"Exceeded maximum allowed payload size ({MAX_PAYLOAD} bytes).",
                    ),
                )
                return
            if not sandbox.finish(parts[1], body, failed=parts[2] == "error"):
                self.reply(
                    400,
                    error_body(
                        "InvalidRequestID", f"Request {parts[1]} is not the invocation in flight"
                    ),
                )
                return
            self.reply(202, b'{"status":"OK"}')

    return RuntimeAPIHandler
