"""Client of the Lambda Runtime API (2018-06-01) on one kept-alive connection.

It uses the standard library's http.client, which AWS's own Python client imports too:
httpx costs about 70 ms of imports here, more than the rest of the cold start.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
from typing import NamedTuple

from ort_core.errors import FunctionError

PREFIX = "/2018-06-01/runtime"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
log = logging.getLogger("ort")

_CONNECTION_ERRORS = (ConnectionError, http.client.RemoteDisconnected, OSError)


class RuntimeAPIError(Exception):
    """The Runtime API cannot be reached, or answered what a runtime cannot go on from."""


class Invocation(NamedTuple):
    request_id: str
    headers: http.client.HTTPMessage
    body: bytes


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
        self._host, self._port = host, int(port)
        self._attempts = attempts
        self._first_backoff = first_backoff
        self._connection: http.client.HTTPConnection | None = None

    def next_invocation(self) -> Invocation:
        status, headers, body = self._request("GET", f"{PREFIX}/invocation/next")
        if status != 200:
            raise RuntimeAPIError(f"GET /invocation/next answered HTTP {status}: {body[:200]!r}")
        request_id = headers.get("Lambda-Runtime-Aws-Request-Id")
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
            {ERROR_TYPE_HEADER: error.error_type},
        )
        self._check(status, answer, request_id, "error")
        return status

    def post_init_error(self, error: FunctionError) -> int:
        status, _, answer = self._request(
            "POST",
            f"{PREFIX}/init/error",
            json.dumps(error.to_dict()).encode(),
            {ERROR_TYPE_HEADER: error.error_type},
        )
        self._check(status, answer, None, "init error")
        return status

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
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        backoff = self._first_backoff
        for attempt in range(1, self._attempts + 1):
            if self._connection is None:
                self._connection = http.client.HTTPConnection(self._host, self._port)
            try:
                self._connection.request(method, path, body, headers or {})
                response = self._connection.getresponse()
                return response.status, response.headers, response.read()
            except _CONNECTION_ERRORS as exc:
                self._connection.close()
                self._connection = None
                if attempt == self._attempts:
                    raise RuntimeAPIError(
                        f"cannot reach the Lambda Runtime API at {self.address} "
                        f"after {attempt} attempts ({method} {path}): {exc}"
                    ) from exc
                # A kept-alive connection the server closed is retried at once.
                if not isinstance(exc, http.client.RemoteDisconnected):
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 1.0)
        raise AssertionError("unreachable")
