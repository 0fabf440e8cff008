"""The Runtime API client against raw HTTP/1.1 servers framing their answers in every legal way."""

from __future__ import annotations

import socket
import threading

import pytest

from ort_core.errors import FunctionError
from ort_core.runtime_api import RuntimeAPI, RuntimeAPIError

NEXT_HEADERS = b"Lambda-Runtime-Aws-Request-Id: req-1\r\nLambda-Runtime-Deadline-Ms: 1\r\n"


def serve(answers: list[bytes], close_after_each: bool = False):
    """A server that answers successive requests with ``answers``, recording each request."""
    listener = socket.create_server(("127.0.0.1", 0))
    requests: list[bytes] = []

    def run() -> None:
        pending = list(answers)
        while pending:
            connection, _ = listener.accept()
            with connection, connection.makefile("rb") as reader:
                while pending:
                    head = b""
                    while (line := reader.readline()) not in (b"\r\n", b""):
                        head += line
                    if not head:
                        break
                    length = next(
                        (
                            int(h.split(b":")[1])
                            for h in head.split(b"\r\n")
                            if h.lower().startswith(b"content-length")
                        ),
                        0,
                    )
                    requests.append(head + b"\r\n" + reader.read(length))
                    connection.sendall(pending.pop(0))
                    if close_after_each:
                        break
        listener.close()

    threading.Thread(target=run, daemon=True).start()
    return f"127.0.0.1:{listener.getsockname()[1]}", requests


def test_content_length_and_kept_alive_connection():
    address, requests = serve(
        [
            b"HTTP/1.1 200 OK\r\n" + NEXT_HEADERS + b"Content-Length: 2\r\n\r\n{}",
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n",
        ]
    )
    api = RuntimeAPI(address)
    invocation = api.next_invocation()
    assert (invocation.request_id, invocation.body) == ("req-1", b"{}")
    assert invocation.headers["lambda-runtime-deadline-ms"] == "1"
    assert api.post_response("req-1", b'{"ok": true}') == 202
    assert requests[1].startswith(b"POST /2018-06-01/runtime/invocation/req-1/response HTTP/1.1")
    assert requests[1].endswith(b'\r\n\r\n{"ok": true}')


def test_chunked_answers():
    body = b'{"big": "' + b"x" * 5000 + b'"}'
    chunked = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 1000]), body[i : i + 1000])
        for i in range(0, len(body), 1000)
    )
    address, _ = serve(
        [
            b"HTTP/1.1 200 OK\r\n"
            + NEXT_HEADERS
            + b"Transfer-Encoding: chunked\r\n\r\n"
            + chunked
            + b"0\r\n\r\n",
        ]
    )
    assert RuntimeAPI(address).next_invocation().body == body


def test_a_server_that_closes_each_connection():
    address, requests = serve(
        [
            b"HTTP/1.1 200 OK\r\n" + NEXT_HEADERS + b"Connection: close\r\n\r\n[1, 2]",
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n",
        ],
        close_after_each=True,
    )
    api = RuntimeAPI(address)
    assert api.next_invocation().body == b"[1, 2]"  # framed by the connection's end
    assert api.post_error("req-1", FunctionError("ValueError", "boom")) == 202
    assert b"Lambda-Runtime-Function-Error-Type: ValueError" in requests[1]
    assert b'"errorMessage": "boom"' in requests[1]


def test_a_kept_alive_connection_closed_by_the_server_is_reopened():
    # The server closes after the first answer without saying so, as an idle timeout does.
    address, requests = serve(
        [
            b"HTTP/1.1 200 OK\r\n" + NEXT_HEADERS + b"Content-Length: 2\r\n\r\n{}",
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n",
        ],
        close_after_each=True,
    )
    api = RuntimeAPI(address)
    api.next_invocation()
    assert api.post_response("req-1", b"{}") == 202
    assert len(requests) == 2


def test_an_address_that_is_not_host_port_is_refused_clearly():
    with pytest.raises(RuntimeAPIError, match="must be host:port"):
        RuntimeAPI("localhost")


def test_next_without_a_request_id_is_an_error():
    address, _ = serve([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"])
    with pytest.raises(RuntimeAPIError, match="without a request id"):
        RuntimeAPI(address).next_invocation()
