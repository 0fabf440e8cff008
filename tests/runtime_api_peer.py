"""A minimal Lambda Runtime API written for the tests, independent of ORT's emulator.

It holds a queue of events; ``invoke`` puts one in and waits for the runtime's response or
error, recording every request so tests can assert on paths, headers and bodies.
"""

from __future__ import annotations

import json
import queue
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"
ARN = "arn:aws:lambda:eu-west-1:111122223333:function:peer"


@dataclass
class Result:
    kind: str  # "response" or "error"
    body: bytes
    headers: dict[str, str]
    received_ms: float = 0  # when it arrived (epoch ms), to compare with the deadline
    deadline_ms: int = 0  # the invocation's Lambda-Runtime-Deadline-Ms

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Peer:
    server: ThreadingHTTPServer
    events: queue.Queue = field(default_factory=queue.Queue)
    results: dict[str, queue.Queue] = field(default_factory=dict)
    init_errors: list[Result] = field(default_factory=list)
    deadlines: dict[str, int] = field(default_factory=dict)
    refuse_responses_with: int | None = None  # answer POST .../response with this status
    next_requested_ms: list[float] = field(default_factory=list)  # each GET /next's arrival
    _pending_next: threading.Condition = field(default_factory=threading.Condition)
    _waiting: int = 0  # GET /next requests waiting for an event

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_port}"

    def invoke(
        self, body: bytes | Any, headers: dict[str, str] | None = None, timeout: float = 30
    ) -> Result:
        request_id = str(uuid.uuid4())
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.results[request_id] = queue.Queue()
        self.events.put((request_id, payload, headers or {}))
        return self.results[request_id].get(timeout=timeout)

    def wait_for_next(self, timeout: float = 30) -> None:
        """Return once the runtime is waiting on ``/next``: done with the previous event,
        including what it does after posting the answer."""
        with self._pending_next:
            if not self._pending_next.wait_for(lambda: self._waiting > 0, timeout):
                raise TimeoutError("the runtime did not ask for the next event")

    def next_request_after(self, ms: float, timeout: float = 30) -> float:
        """When the runtime asked for an event at or after ``ms`` (epoch ms)."""
        self.wait_for_next(timeout)
        return min(t for t in self.next_requested_ms if t >= ms)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_peer(deadline_ms: int | None = None) -> Peer:
    """Serve on a free 127.0.0.1 port; each event's deadline is ``deadline_ms`` from now."""
    import time

    peer: Peer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs (~40 ms)

        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            assert self.path == f"{PREFIX}/invocation/next", self.path
            with peer._pending_next:
                peer.next_requested_ms.append(time.time() * 1000)
                peer._waiting += 1
                peer._pending_next.notify_all()
            try:
                request_id, payload, extra = peer.events.get()
            finally:
                with peer._pending_next:
                    peer._waiting -= 1
            deadline = peer.deadlines[request_id] = int(time.time() * 1000) + (
                deadline_ms or 60_000
            )
            headers = {
                "Lambda-Runtime-Aws-Request-Id": request_id,
                "Lambda-Runtime-Deadline-Ms": str(deadline),
                "Lambda-Runtime-Invoked-Function-Arn": ARN,
                "Content-Type": "application/json",
                **extra,
            }
            self._answer(200, payload, headers)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = dict(self.headers.items())
            if self.path == f"{PREFIX}/init/error":
                peer.init_errors.append(Result("init_error", body, headers))
                self._answer(202, b"{}")
                return
            _, _, request_id, kind = self.path.removeprefix(PREFIX).split("/")
            if kind == "response" and peer.refuse_responses_with:
                self._answer(peer.refuse_responses_with, b'{"errorType":"Refused"}')
                return
            received = time.time() * 1000
            deadline = peer.deadlines.get(request_id, 0)
            peer.results[request_id].put(Result(kind, body, headers, received, deadline))
            self._answer(202, b"{}")

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a runtime killed while waiting on /next resets its connection

    server = Server(("127.0.0.1", 0), Handler)
    peer = Peer(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return peer
