"""What the fault matrix shares: a Runtime API that misbehaves on request, the functions of
every bridge, and a runtime under test with its process and descriptor counts.

The faulty Runtime API is written for these tests, independent of ORT's emulator and of
tests/runtime_api_peer.py: each event carries its own deadline and its own misbehaviour of
the platform (drop the connection, answer 500, answer slowly), and responses over Lambda's
6 MB limit get the 413 Lambda's Runtime API answers.
"""

from __future__ import annotations

import json
import os
import queue
import resource
import signal
import socket
import subprocess
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from conftest import PYTHON, alive, clean_environ, descendants

PREFIX = "/2018-06-01/runtime"
ARN = "arn:aws:lambda:eu-west-1:111122223333:function:faults"
MAX_RESPONSE = 6 * 1024 * 1024 + 100  # what Lambda's Runtime API accepts (6291556 bytes)
SIX_MB = 6 * 1024 * 1024
SETTLE = 10.0  # seconds a count may take to settle (a killed process being reaped)

# What the platform does wrong, for one event:
#   next-500      GET /next answers 500 once, before handing the event out
#   next-slow     the event is handed out a few bytes at a time
#   next-drop     the connection closes halfway through the event; it is handed out again
#   idle-drop     the connection closes right after the event, while the function runs
#   post-drop     the connection closes after the answer arrived, without a status
#   post-500      the answer is refused once with 500
#   post-slow     the 202 to the answer comes a few bytes at a time
#   post-413-early  (any oversize answer) refused with 413 before its body is read, then
#                 the connection is closed, as a server that will not read 6 MB does
PLATFORM_FAULTS = (
    "next-500",
    "next-slow",
    "next-drop",
    "idle-drop",
    "post-drop",
    "post-500",
    "post-slow",
)


@dataclass
class Result:
    kind: str  # "response" or "error"
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Pending:
    request_id: str
    payload: bytes
    deadline_ms: int
    fault: str | None


@dataclass
class FaultyAPI:
    """A Lambda Runtime API on 127.0.0.1 that misbehaves when an event asks it to."""

    server: ThreadingHTTPServer | None = None
    events: queue.Queue[Pending] = field(default_factory=queue.Queue)
    results: dict[str, queue.Queue[Result]] = field(default_factory=dict)
    faults_done: set[tuple[str, str]] = field(default_factory=set)
    early_413: bool = False  # refuse oversize answers before reading them, and hang up
    refused: list[tuple[str, int]] = field(default_factory=list)  # (request id, status)

    @property
    def address(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.server_port}"

    def send(self, body: bytes | Any, deadline_ms: int = 60_000, fault: str | None = None) -> str:
        """Queue an event; returns its request id."""
        request_id = str(uuid.uuid4())
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.results[request_id] = queue.Queue()
        self.events.put(Pending(request_id, payload, int(time.time() * 1000) + deadline_ms, fault))
        return request_id

    def result(self, request_id: str, timeout: float = 60) -> Result:
        return self.results[request_id].get(timeout=timeout)

    def invoke(
        self, body: bytes | Any, deadline_ms: int = 60_000, fault: str | None = None
    ) -> Result:
        return self.result(self.send(body, deadline_ms, fault))

    def once(self, request_id: str, fault: str | None, wanted: str) -> bool:
        """True the first time ``wanted`` is asked for this event's fault."""
        if fault != wanted or (request_id, wanted) in self.faults_done:
            return False
        self.faults_done.add((request_id, wanted))
        return True

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def trickle(connection: socket.socket, data: bytes, piece: int = 7, pause: float = 0.01) -> None:
    """Send ``data`` a few bytes at a time: a slow platform, or a slow network."""
    for start in range(0, len(data), piece):
        connection.sendall(data[start : start + piece])
        time.sleep(pause)


def start_api(early_413: bool = False) -> FaultyAPI:
    api = FaultyAPI(early_413=early_413)
    in_flight: dict[str, Pending] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:
            pass

        def _raw(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> bytes:
            head = f"HTTP/1.1 {status} {'OK' if status < 300 else 'Error'}\r\n"
            for name, value in {**(headers or {}), "Content-Length": str(len(body))}.items():
                head += f"{name}: {value}\r\n"
            return (head + "\r\n").encode() + body

        def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.wfile.write(self._raw(status, body, headers))
            self.wfile.flush()

        def _hang_up(self) -> None:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def do_GET(self) -> None:
            assert self.path == f"{PREFIX}/invocation/next", self.path
            pending = api.events.get()
            if api.once(pending.request_id, pending.fault, "next-500"):
                api.events.put(pending)  # handed out on the runtime's next request
                self._answer(500, b'{"errorType":"ServiceException"}')
                return
            in_flight[pending.request_id] = pending
            message = self._raw(
                200,
                pending.payload,
                {
                    "Lambda-Runtime-Aws-Request-Id": pending.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(pending.deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": ARN,
                    "Content-Type": "application/json",
                },
            )
            if api.once(pending.request_id, pending.fault, "next-drop"):
                api.events.put(pending)
                self.wfile.write(message[: len(message) - max(1, len(pending.payload) // 2)])
                self.wfile.flush()
                self._hang_up()
                return
            if api.once(pending.request_id, pending.fault, "next-slow"):
                trickle(self.connection, message)
            else:
                self.wfile.write(message)
                self.wfile.flush()
            if api.once(pending.request_id, pending.fault, "idle-drop"):
                self._hang_up()

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if self.path == f"{PREFIX}/init/error":
                self.rfile.read(length)
                self._answer(202, b"{}")
                return
            _, _, request_id, kind = self.path.removeprefix(PREFIX).split("/")
            fault = in_flight[request_id].fault if request_id in in_flight else None
            if kind == "response" and length > MAX_RESPONSE:
                api.refused.append((request_id, 413))
                body = json.dumps(
                    {
                        "errorMessage": "Exceeded maximum allowed payload size "
                        f"({MAX_RESPONSE} bytes).",
                        "errorType": "RequestEntityTooLarge",
                    }
                ).encode()
                if api.early_413:
                    self._answer(413, body, {"Connection": "close"})
                    self._hang_up()
                    return
                self.rfile.read(length)
                self._answer(413, body)
                return
            body = self.rfile.read(length)
            if api.once(request_id, fault, "post-drop"):
                self._hang_up()  # the answer is lost with the connection: it comes again
                return
            if api.once(request_id, fault, "post-500"):
                api.refused.append((request_id, 500))
                self._answer(500, b'{"errorType":"ServiceException"}')
                return
            result = Result(kind, body, {k.lower(): v for k, v in self.headers.items()})
            api.results[request_id].put(result)
            if api.once(request_id, fault, "post-slow"):
                trickle(self.connection, self._raw(202, b'{"status":"OK"}'))
            else:
                self._answer(202, b'{"status":"OK"}')

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a runtime killed while waiting on /next resets its connection

    api.server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=api.server.serve_forever, daemon=True).start()
    return api


# -- the functions ------------------------------------------------------------------------------

# Every function does what the event's "do" says, and otherwise answers {"ok", "pid", "size"}:
# its process id and the length of the event's "pad". "flood" writes 8 lines of 1 MB on
# stdout and 8 MB without a newline on stderr, then answers.
PYTHON_APP = """
import os, sys, time

def handler(event, context):
    do = None
    if isinstance(event, dict):  # a gateway's event says it in its query
        do = event.get("do") or (event.get("queryStringParameters") or {}).get("do")
    if do == "raise":
        raise ValueError("fault: raised on purpose")
    if do == "exit":
        os._exit(3)
    if do == "crash":
        os.abort()
    if do == "hang":
        print("fault: hanging", flush=True)
        time.sleep(60)
    if do == "oom":
        hog = []
        while True:
            hog.append(bytearray(16 << 20))
    if do == "flood":
        line = "o" * 1_000_000
        for _ in range(8):
            sys.stdout.write(line + "\\n")
            sys.stderr.write("e" * 1_000_000)
        sys.stderr.write("\\n")
        sys.stdout.flush()
        sys.stderr.flush()
    if do == "big":
        return "x" * 7_000_000
    pad = event.get("pad", "") if isinstance(event, dict) else ""
    return {"ok": True, "pid": os.getpid(), "size": len(pad)}
"""

NODE_APP = """
exports.handler = async (event) => {
  const d = event && (event.do || (event.queryStringParameters || {}).do);
  if (d === "raise") throw new Error("fault: raised on purpose");
  if (d === "exit") process.exit(3);
  if (d === "crash") process.abort();
  if (d === "uncaught") {
    setTimeout(() => { throw new Error("fault: uncaught"); }, 0);
    await new Promise((done) => setTimeout(done, 5000));
  }
  if (d === "hang") {
    console.log("fault: hanging");
    await new Promise((done) => setTimeout(done, 60000));
  }
  if (d === "oom") { const hog = []; for (;;) hog.push(new Array(1e6).fill(Math.random())); }
  if (d === "flood") {
    const line = "o".repeat(1e6);
    for (let i = 0; i < 8; i++) {
      process.stdout.write(line + "\\n");
      process.stderr.write("e".repeat(1e6));
    }
    process.stderr.write("\\n");
  }
  if (d === "big") return "x".repeat(7e6);
  return { ok: true, pid: process.pid, size: ((event && event.pad) || "").length };
};
"""

DENO_APP = """
export const handler = async (event: any) => {
  const d = event && (event.do || (event.queryStringParameters || {}).do);
  if (d === "raise") throw new Error("fault: raised on purpose");
  if (d === "exit") Deno.exit(3);
  if (d === "crash" || d === "uncaught") {
    setTimeout(() => { throw new Error("fault: uncaught"); }, 0);
    await new Promise((done) => setTimeout(done, 5000));
  }
  if (d === "hang") {
    console.log("fault: hanging");
    await new Promise((done) => setTimeout(done, 60000));
  }
  if (d === "oom") { const hog = []; for (;;) hog.push(new Array(1e6).fill(Math.random())); }
  if (d === "flood") {
    const out = new TextEncoder().encode("o".repeat(1e6) + "\\n");
    const err = new TextEncoder().encode("e".repeat(1e6));
    for (let i = 0; i < 8; i++) {
      for (let n = 0; n < out.length;) n += Deno.stdout.writeSync(out.subarray(n));
      for (let n = 0; n < err.length;) n += Deno.stderr.writeSync(err.subarray(n));
    }
    Deno.stderr.writeSync(new TextEncoder().encode("\\n"));
  }
  if (d === "big") return "x".repeat(7e6);
  return { ok: true, pid: Deno.pid, size: ((event && event.pad) || "").length };
};
"""

# An executable's stdout is its answer, so it floods stderr only; "raise" is a failed exit
# with a message, the way a script reports an error.
BASH_APP = """
event=$(cat)
case "$event" in
  *'"do": "raise"'*) echo "fault: raised on purpose" >&2; exit 1;;
  *'"do": "exit"'*) exit 3;;
  *'"do": "crash"'*) kill -SEGV $$;;
  *'"do": "hang"'*) echo "fault: hanging" >&2; sleep 60;;
  *'"do": "oom"'*) ulimit -v 200000; hog=$(head -c 400000000 /dev/zero | tr '\\0' x);;
  *'"do": "flood"'*)
    for i in 1 2 3 4 5 6 7 8; do head -c 1000000 /dev/zero | tr '\\0' e >&2; done; echo >&2;;
  *'"do": "big"'*) head -c 7000000 /dev/zero | tr '\\0' x; exit 0;;
esac
echo "{\\"ok\\": true, \\"pid\\": $$, \\"size\\": ${#event}}"
"""

# bridge: (handler, file, source, environment)
BRIDGES: dict[str, tuple[str, str, str, dict[str, str]]] = {
    "python-in-process": ("app.handler", "app.py", PYTHON_APP, {}),
    "python-subprocess": ("app.handler", "app.py", PYTHON_APP, {"ORT_PYTHON_MODE": "subprocess"}),
    "node": (
        "index.handler",
        "index.js",
        NODE_APP,
        {"ORT_LANGUAGE": "node", "NODE_OPTIONS": "--max-old-space-size=64"},
    ),
    "deno-persistent": (
        "handler.handler",
        "handler.ts",
        DENO_APP,
        {"ORT_LANGUAGE": "deno", "DENO_V8_FLAGS": "--max-old-space-size=64"},
    ),
    "deno-per-invocation": (
        "handler.handler",
        "handler.ts",
        DENO_APP,
        {
            "ORT_LANGUAGE": "deno",
            "ORT_DENO_MODE": "per-invocation",
            "DENO_V8_FLAGS": "--max-old-space-size=64",
        },
    ),
    "bash": ("handler.sh", "handler.sh", BASH_APP, {"ORT_LANGUAGE": "bash"}),
}
IN_PROCESS = "python-in-process"
PERSISTENT = {"python-subprocess", "node", "deno-persistent"}
# A Python runtime's address space: enough for ORT and its worker, not for the hog.
PYTHON_MEMORY_LIMIT = 640 << 20


def write_function(folder: Path, bridge: str) -> dict[str, str]:
    """The bridge's function in ``folder``; returns the runtime's environment for it."""
    handler, file_name, source, env = BRIDGES[bridge]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name
    path.write_text(textwrap.dedent(source).lstrip())
    path.chmod(0o755)
    return {"_HANDLER": handler, "LAMBDA_TASK_ROOT": str(folder), **env}


def limits(address_space: int | None) -> Callable[[], None]:
    """For preexec_fn: no core files from crashes; a memory limit where the test sets one."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    return apply


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled(measure: Callable[[], Any], expected: Any, within: float = SETTLE) -> Any:
    """``measure()`` once it equals ``expected``, or its last value after ``within`` seconds
    (a killed worker is reaped, a log thread closes its pipe, a little after the answer)."""
    limit = time.monotonic() + within
    while True:
        value = measure()
        if value == expected or time.monotonic() > limit:
            return value
        time.sleep(0.02)


class Runtime:
    """``ort bootstrap`` for one bridge, against its own faulty Runtime API."""

    def __init__(
        self, bridge: str, folder: Path, log: Path, api: FaultyAPI | None = None, **env: str
    ) -> None:
        self.bridge = bridge
        self.folder = folder
        self.log_path = log
        self.api = api or start_api()
        self.environ = clean_environ(
            AWS_LAMBDA_RUNTIME_API=self.api.address,
            ORT_TIMEOUT_MARGIN_MS="300",
            **write_function(folder, bridge),
            **env,
        )
        memory = PYTHON_MEMORY_LIMIT if bridge.startswith("python") else None
        self.process = subprocess.Popen(
            [PYTHON, "-m", "ort_core", "bootstrap"],
            env=self.environ,
            stdout=open(log, "ab"),
            stderr=subprocess.STDOUT,
            preexec_fn=limits(memory),
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ok(self, event: Any = None, **kwargs: Any) -> dict[str, Any]:
        result = self.api.invoke({} if event is None else event, **kwargs)
        assert result.kind == "response", result.body[:2000]
        answer = result.json()
        assert answer["ok"] is True, answer
        return answer

    def error(self, event: Any, **kwargs: Any) -> dict[str, Any]:
        result = self.api.invoke(event, **kwargs)
        assert result.kind == "error", result.body[:2000]
        assert result.headers.get("lambda-runtime-function-error-type")
        error = result.json()
        assert set(error) == {"errorMessage", "errorType", "requestId", "stackTrace"}, error
        assert result.headers["lambda-runtime-function-error-type"] == error["errorType"]
        return error

    def counts(self) -> tuple[int, int]:
        return len(descendants(self.pid)), descriptors(self.pid)

    def hanging(self, seen: int, within: float = SETTLE) -> None:
        """Wait until the handler says it hangs for the ``seen + 1``-th time."""
        settled(lambda: self.log.count("fault: hanging") > seen, True, within)

    def kill_children(self) -> set[int]:
        """SIGKILL every process under the runtime (the OOM killer, an operator)."""
        killed = descendants(self.pid)
        for pid in killed:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return killed

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        self.api.close()


def wait_for_children(runtime: Runtime, within: float = SETTLE) -> set[int]:
    """The processes under the runtime once there are some (a per-invocation process that
    has started), else the empty set after ``within`` seconds."""
    limit = time.monotonic() + within
    while not (children := descendants(runtime.pid)) and time.monotonic() < limit:
        time.sleep(0.01)
    return children


def none_alive(pids: set[int], within: float = SETTLE) -> bool:
    return settled(lambda: not any(alive(pid) for pid in pids), True, within)
