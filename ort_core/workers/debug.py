"""Remote debugging on Lambda: a relay between a worker's inspector and a developer's relay.

An event carrying ``"_debugProxy": "host:port"`` (and a function that sets
``ORT_ALLOW_DEBUG=1``) makes the Node worker open its inspector on a local port and wait for a
debugger; this relay connects *out* to ``host:port`` (Lambda accepts no connection in) and
pipes each connection it gets to the inspector. It keeps one spare outbound connection open,
so the debugger can make several (``GET /json/list``, then the WebSocket), as a
``socat TCP-LISTEN:9999,fork TCP-LISTEN:4444`` relay on the other side serves them.

A thread of Python rather than socat: Lambda's images have no socat (the layer would ship a
binary), and the relay must see the debugger's WebSocket upgrade to know it attached. When no
debugger attaches within the bounded wait (``ORT_DEBUG_WAIT``), ORT itself sends the
inspector ``Runtime.runIfWaitingForDebugger``, so the handler runs anyway.

Nothing here runs unless ``ORT_ALLOW_DEBUG=1``: see ``take_debug_proxy``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("ort")

KEY = "_debugProxy"
DEFAULT_WAIT = 30.0  # seconds the first debug event waits for a debugger (ORT_DEBUG_WAIT)
CONNECT_TIMEOUT = 5.0
LOCAL_CONNECT_TIMEOUT = 5.0  # the inspector opens once the worker reads the event


def debug_allowed() -> bool:
    return os.environ.get("ORT_ALLOW_DEBUG") == "1"


def debug_wait() -> float:
    try:
        return max(0.0, float(os.environ.get("ORT_DEBUG_WAIT") or DEFAULT_WAIT))
    except ValueError:
        return DEFAULT_WAIT


def take_debug_proxy(event: Any) -> str | None:
    """Remove ``_debugProxy`` from a JSON object event, always; return its ``host:port`` only
    when the function allows debugging (``ORT_ALLOW_DEBUG=1``) and the value is well formed."""
    if not isinstance(event, dict) or KEY not in event:
        return None
    value = event.pop(KEY)
    if not debug_allowed():
        log.warning("%s ignored: the function does not set ORT_ALLOW_DEBUG=1", KEY)
        return None
    if not isinstance(value, str) or parse_address(value) is None:
        log.warning("%s ignored: %r is not host:port", KEY, value)
        return None
    return value


def parse_address(value: str) -> tuple[str, int] | None:
    host, colon, port = value.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def is_websocket_upgrade(first: bytes) -> bool:
    head = first.split(b"\r\n\r\n", 1)[0].lower()
    return head.startswith(b"get ") and b"upgrade: websocket" in head


class DebugRelay:
    """Pipes connections made out to ``proxy`` to the inspector on ``127.0.0.1:local_port``.

    ``attached`` is set once a connection's first bytes are a WebSocket upgrade: a debugger.
    """

    def __init__(self, proxy: str, local_port: int) -> None:
        address = parse_address(proxy)
        assert address is not None
        self.proxy = proxy
        self.address = address
        self.local_port = local_port
        self.attached = threading.Event()
        self._stopped = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._run, name="ort-debug-relay", daemon=True).start()

    # -- the relay ---------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                remote = socket.create_connection(self.address, timeout=CONNECT_TIMEOUT)
            except OSError as exc:
                log.warning("debug relay: cannot reach %s: %s", self.proxy, exc)
                return
            self._track(remote)
            remote.settimeout(None)
            try:
                first = remote.recv(65536)  # waits for the debugger, as long as it takes
            except OSError:
                first = b""
            if not first:
                self._close(remote)
                if not self._stopped.is_set():
                    time.sleep(0.2)  # the relay closed it: try again, gently
                continue
            threading.Thread(target=self._serve, args=(remote, first), daemon=True).start()

    def _serve(self, remote: socket.socket, first: bytes) -> None:
        local = self._connect_local()
        if local is None:
            log.warning("debug relay: the inspector on port %d did not answer", self.local_port)
            self._close(remote)
            return
        if is_websocket_upgrade(first):
            self.attached.set()
        try:
            local.sendall(first)
        except OSError:
            self._close(remote, local)
            return
        back = threading.Thread(target=self._pump, args=(local, remote), daemon=True)
        back.start()
        self._pump(remote, local)
        back.join()
        self._close(remote, local)

    def _connect_local(self) -> socket.socket | None:
        deadline = time.monotonic() + LOCAL_CONNECT_TIMEOUT
        while not self._stopped.is_set():
            try:
                local = socket.create_connection(("127.0.0.1", self.local_port), timeout=1)
            except OSError:
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.05)
                continue
            local.settimeout(None)
            self._track(local)
            return local
        return None

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        try:
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)
        if self._stopped.is_set():
            self._close(sock)

    def _close(self, *socks: socket.socket) -> None:
        for sock in socks:
            with self._lock:
                self._sockets.discard(sock)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            sockets = list(self._sockets)
        self._close(*sockets)

    # -- the bounded wait ------------------------------------------------------------------

    def release_after(self, seconds: float, done: threading.Event) -> None:
        """After ``seconds`` without a debugger, resume the waiting inspector ourselves;
        ``done`` (the invocation's answer) cancels it."""

        def release() -> None:
            if done.wait(seconds) or self.attached.is_set() or self._stopped.is_set():
                return
            log.warning("debug: no debugger attached within %.0f s: running the handler", seconds)
            try:
                run_if_waiting(self.local_port)
            except (OSError, ValueError) as exc:
                log.warning("debug: cannot resume the inspector: %s", exc)

        threading.Thread(target=release, name="ort-debug-wait", daemon=True).start()


# -- a minimal Chrome DevTools protocol client (HTTP and one WebSocket text frame) -------------


def http_get(sock: socket.socket, path: str, host: str = "127.0.0.1") -> tuple[int, bytes]:
    """``GET path`` on a connected socket: the status and the body (by Content-Length)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ValueError(f"no HTTP answer to GET {path}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, body


def websocket_open(sock: socket.socket, path: str, host: str = "127.0.0.1") -> None:
    """The WebSocket handshake on a connected socket; ValueError unless it is accepted."""
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ValueError("the WebSocket handshake got no answer")
        data += chunk
    status = data.split(b"\r\n", 1)[0]
    if b" 101 " not in status + b" ":
        raise ValueError(f"the WebSocket handshake was refused: {status.decode('latin-1')}")


def websocket_send(sock: socket.socket, message: dict[str, Any]) -> None:
    """One masked text frame (clients must mask theirs)."""
    payload = json.dumps(message).encode()
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x81, 0x80 | size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, size)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    sock.sendall(head + mask + masked)


def websocket_receive(sock: socket.socket) -> dict[str, Any]:
    """The next (unmasked, unfragmented) text frame from the inspector, as JSON."""

    def exact(size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise ValueError("the WebSocket closed")
            data += chunk
        return data

    _, second = exact(2)
    size = second & 0x7F
    if size == 126:
        size = struct.unpack("!H", exact(2))[0]
    elif size == 127:
        size = struct.unpack("!Q", exact(8))[0]
    return json.loads(exact(size))


def debugger_path(sock: socket.socket) -> str:
    """The WebSocket path of the inspector's one target, from ``GET /json/list``."""
    status, body = http_get(sock, "/json/list")
    targets = json.loads(body)
    if status != 200 or not targets:
        raise ValueError(f"no inspector target (HTTP {status})")
    url = targets[0]["webSocketDebuggerUrl"]
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def run_if_waiting(port: int, connect: Callable[[], socket.socket] | None = None) -> None:
    """Send the inspector ``Runtime.runIfWaitingForDebugger``: what a debugger does on attach."""
    opener = connect or (lambda: socket.create_connection(("127.0.0.1", port), timeout=5))
    with opener() as sock:
        path = debugger_path(sock)
    with opener() as sock:
        websocket_open(sock, path)
        websocket_send(sock, {"id": 1, "method": "Runtime.runIfWaitingForDebugger"})
        websocket_receive(sock)
