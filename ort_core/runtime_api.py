"""Client of the Lambda Runtime API (2018-06-01) on one kept-alive connection.

The Runtime API is one known peer on the loopback speaking plain HTTP/1.1, and this client
is on every cold start and every invocation, so it talks over a socket directly:
http.client costs about 23 ms of imports here (its email parser and ssl), httpx about
70 ms, against 39 ms for AWS's whole Python runtime client to reach its first ``/next``.
Responses framed by Content-Length, chunked encoding or connection close are all read.
"""

from __future__ import annotations

import _socket
import json
import logging
import time
from collections import namedtuple

from ort_core.errors import FunctionError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO, NamedTuple

PREFIX = "/2018-06-01/runtime"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
log = logging.getLogger("ort")


class RuntimeAPIError(Exception):
    """The Runtime API cannot be reached, or answered what a runtime cannot go on from."""


class _Disconnected(Exception):
    """The server closed the connection before answering (a kept-alive one timing out)."""


if TYPE_CHECKING:

    class Invocation(NamedTuple):
        request_id: str
        headers: dict[str, str]  # lower-case names
        body: bytes

else:
    Invocation = namedtuple("Invocation", "request_id headers body")


class RuntimeAPI:
    """GET ``/invocation/next``, POST responses and errors, POST ``/init/error``.

    Connection failures are retried ``attempts`` times with doubling backoff, which covers a
    Runtime API that is still starting; past that, :class:`RuntimeAPIError`.
    """

    def __init__(self, address: str, attempts: int = 10, first_backoff: float = 0.01) -> None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise RuntimeAPIError(f"AWS_LAMBDA_RUNTIME_API must be host:port, not {address!r}")
        self.address = address
        self._host, self._port = host.strip("[]"), int(port)
        self._attempts = attempts
        self._first_backoff = first_backoff
        self._socket: _socket.socket | None = None
        self._reader: BinaryIO | None = None

    def next_invocation(self) -> Invocation:
        status, headers, body = self._request("GET", f"{PREFIX}/invocation/next")
        if status != 200:
            raise RuntimeAPIError(f"GET /invocation/next answered HTTP {status}: {body[:200]!r}")
        request_id = headers.get("lambda-runtime-aws-request-id")
        if not request_id:
            raise RuntimeAPIError("GET /invocation/next answered without a request id")
        return Invocation(request_id, headers, body)

    def post_response(self, request_id: str, body: bytes) -> int:
        """Send the answer; returns the HTTP status (202 when accepted)."""
        status, _, answer = self._request(
            "POST", f"{PREFIX}/invocation/{request_id}/response", body
        )
        self._check(status, answer, request_id, "response")
        return status

    def post_error(self, request_id: str, error: FunctionError) -> int:
        status, _, answer = self._request(
            "POST",
            f"{PREFIX}/invocation/{request_id}/error",
            json.dumps(error.to_dict(request_id)).encode(),
            error.error_type,
        )
        self._check(status, answer, request_id, "error")
        return status

    def post_init_error(self, error: FunctionError) -> int:
        status, _, answer = self._request(
            "POST", f"{PREFIX}/init/error", json.dumps(error.to_dict()).encode(), error.error_type
        )
        self._check(status, answer, None, "init error")
        return status

    def close(self) -> None:
        if self._socket is not None:
            if self._reader is not None:
                self._reader.close()  # not the descriptor: the socket's own
            self._socket.close()
            self._socket = self._reader = None

    def _check(self, status: int, answer: bytes, request_id: str | None, what: str) -> None:
        if status != 202:
            log.error(
                "Runtime API refused the %s of request %s: HTTP %s %s",
                what,
                request_id or "(init)",
                status,
                answer[:500].decode(errors="replace"),
            )

    def _request(
        self, method: str, path: str, body: bytes = b"", error_type: str | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.address}\r\n"
        if method == "POST":
            head += f"Content-Length: {len(body)}\r\nContent-Type: application/json\r\n"
        if error_type:
            head += f"{ERROR_TYPE_HEADER}: {error_type}\r\n"
        head_bytes = (head + "\r\n").encode()
        # A large body is sent after its head rather than copied behind it (1 MB: 50 us).
        message = head_bytes + body if len(body) < 65536 else b""
        backoff = self._first_backoff
        for attempt in range(1, self._attempts + 1):
            try:
                if self._socket is None or self._reader is None:
                    self._socket, self._reader = self._connect()
                try:
                    if message:
                        self._socket.sendall(message)
                    else:
                        self._socket.sendall(head_bytes)
                        self._socket.sendall(body)
                except OSError:
                    answer = self._early_answer(self._reader)
                    if answer is None:
                        raise
                    return answer
                return self._read_response(self._reader)
            except (OSError, _Disconnected) as exc:
                self.close()
                if attempt == self._attempts:
                    raise RuntimeAPIError(
                        f"cannot reach the Lambda Runtime API at {self.address} "
                        f"after {attempt} attempts ({method} {path}): {exc or 'disconnected'}"
                    ) from exc
                if not isinstance(exc, _Disconnected):  # a closed keep-alive: retry at once
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 1.0)
        raise AssertionError("unreachable")

    def _early_answer(self, reader: BinaryIO) -> tuple[int, dict[str, str], bytes] | None:
        """The answer a server sent before it hung up on a body it would not read (Lambda's
        413 to a response over 6 MB), or None: that is a refusal, and sending it again would
        only be refused again."""
        try:
            answer = self._read_response(reader)
        except (OSError, ValueError, IndexError, _Disconnected):
            return None
        self.close()  # the server has closed its end
        return answer

    def _connect(self) -> tuple[_socket.socket, BinaryIO]:
        """What ``socket.create_connection`` and ``makefile`` do, on ``_socket``: the socket
        module's enums and selectors cost 3 to 5 ms of imports on every cold start."""
        # A bytes host skips the idna codec, which a str host imports (3 ms).
        addresses = _socket.getaddrinfo(self._host.encode(), self._port, 0, _socket.SOCK_STREAM)
        failure: OSError = OSError(f"no address for {self._host}")
        for family, kind, protocol, _, address in addresses:
            connection = _socket.socket(family, kind, protocol)
            try:
                connection.connect(address)
            except OSError as exc:
                connection.close()
                failure = exc
                continue
            connection.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            return connection, open(connection.fileno(), "rb", closefd=False)
        raise failure

    def _read_response(self, reader: BinaryIO) -> tuple[int, dict[str, str], bytes]:
        status_line = reader.readline()
        if not status_line:
            raise _Disconnected()
        status = int(status_line.split(None, 2)[1])
        headers: dict[str, str] = {}
        while (line := reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            length = int(headers["content-length"])
            body = reader.read(length)
            if len(body) < length:
                raise _Disconnected()
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = _read_chunked(reader)
        else:
            body = reader.read()
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, body


def _read_chunked(reader: BinaryIO) -> bytes:
    chunks = []
    while size := int(reader.readline().split(b";")[0], 16):
        chunks.append(reader.read(size))
        reader.readline()
    while reader.readline() not in (b"\r\n", b"\n", b""):
        pass  # trailers
    return b"".join(chunks)
