"""The gateway's ASGI application: one HTTP request, one invocation of ORT's pipeline.

Per request, as Scaleway's core runtime: CORS, the JWT of private functions, the body limit,
the trigger type; then the event goes through the same pipeline as a Lambda invocation
(plugins, middlewares, bridge, deadline) on a pool of pipelines, and the answer becomes the
HTTP response. Errors: 401/403/500 from the token check, 400 unknown trigger, 413 body too
large, 429 pool full, 504 timeout, 502 worker crash or an answer that is no HTTP response,
500 any other function error.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from ort_core.context import Context
from ort_core.errors import FunctionError
from ort_core.gateway.http_event import (
    request_event,
    request_headers,
    response_parts,
    trigger_event,
)
from ort_core.gateway.pool import Busy
from ort_core.pipeline import Decoded

if TYPE_CHECKING:
    from ort_core.config import FunctionConfig
    from ort_core.gateway.auth import TokenVerifier
    from ort_core.gateway.pool import Pool

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

log = logging.getLogger("ort.gateway")
HEALTH_PATH = "/_ort/health"  # alive: the server answers
READY_PATH = "/_ort/ready"  # ready: pipelines are up and the server is not draining
NON_HTTP_TRIGGERS = frozenset({"cron", "sqs", "nats"})
CORS = [(b"access-control-allow-origin", b"*")]
PREFLIGHT = [
    *CORS,
    (b"access-control-allow-methods", b"*"),
    (b"access-control-allow-headers", b"*"),
    (b"access-control-max-age", b"86400"),
]
JSON = [(b"content-type", b"application/json")]
STATUS_OF_ERROR = {"Sandbox.Timedout": 504, "Runtime.ExitError": 502}


class TooLarge(Exception):
    pass


class Gateway:
    """Call it as an ASGI app; ``pool`` is opened before the server starts."""

    def __init__(
        self,
        pool: Pool,
        verifier: TokenVerifier,
        config: FunctionConfig,
        timeout_s: float,
        max_body: int,
    ) -> None:
        self.pool = pool
        self.verifier = verifier
        self.config = config
        self.timeout_ms = int(timeout_s * 1000)
        self.max_body = max_body
        self.draining = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.draining = True  # in-flight requests have been answered by now
                import asyncio

                await asyncio.get_running_loop().run_in_executor(None, self.pool.close)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path == HEALTH_PATH:
            return await respond(send, 200, JSON, b'{"status": "alive"}')
        if path == READY_PATH:
            if self.draining or self.pool.size == 0:
                return await respond(send, 503, JSON, b'{"status": "not ready"}')
            return await respond(send, 200, JSON, b'{"status": "ready"}')
        headers = request_headers(scope["headers"])
        method: str = scope["method"]
        if method == "OPTIONS" and "access-control-request-method" in headers:
            return await respond(send, 204, PREFLIGHT, b"")
        refusal = self.verifier.check(headers)
        if refusal is not None:
            kind = "Unauthorized" if refusal.status == 401 else "Forbidden"
            if refusal.status == 500:
                kind = "Misconfigured"
            return await error_response(send, refusal.status, f"Gateway.{kind}", refusal.reason)
        trigger = headers.get("scw_trigger_type") or headers.get("scw-trigger-type") or "http"
        if trigger != "http" and trigger not in NON_HTTP_TRIGGERS:
            message = f"unknown trigger type {trigger!r}: use http, cron, sqs or nats"
            return await error_response(send, 400, "Gateway.BadTrigger", message)
        try:
            body = await self._read_body(headers, receive)
        except TooLarge:
            message = f"the request body is larger than {self.max_body} bytes"
            return await error_response(send, 413, "Gateway.PayloadTooLarge", message)
        if body is None:
            return  # the client went away
        context = Context(str(uuid.uuid4()), int(time.time() * 1000) + self.timeout_ms, self.config)
        if trigger == "http":
            event = request_event(method, path, scope["query_string"], headers, body)
            if context.signature == "raw" and _carries_cloudevent(headers):
                context.signature = "cloudevent"  # a CloudEvent arrives as that CloudEvent
            payload: bytes | Decoded = Decoded(event)
        else:
            payload = trigger_event(body)
        try:
            answer = await self.pool.invoke(payload, context)
        except Busy:
            message = "every worker is busy and the queue is full: retry later"
            return await error_response(
                send, 429, "Gateway.TooManyRequests", message, [(b"retry-after", b"1")]
            )
        except FunctionError as error:
            log.error("%s: %s", error.error_type, error.message)
            status = STATUS_OF_ERROR.get(error.error_type, 500)
            return await error_response(
                send, status, error.error_type, error.message, request_id=context.aws_request_id
            )
        if trigger != "http":
            return await respond(send, 200, CORS, b"")
        await self._answer(send, answer, context)

    async def _answer(self, send: Send, answer: bytes, context: Context) -> None:
        from ort_core.signatures import http_answer

        try:
            status, headers, body = response_parts(http_answer(json.loads(answer)))
        except (ValueError, TypeError) as exc:
            message = f"the function's answer is not an HTTP response: {exc}"
            log.error("%s", message)
            return await error_response(
                send, 502, "Gateway.BadAnswer", message, request_id=context.aws_request_id
            )
        if not any(name.lower() == CORS[0][0] for name, _ in headers):
            headers.extend(CORS)
        await respond(send, status, headers, body)

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> bytes | None:
        """The whole body, or TooLarge as soon as it is declared or read past the limit."""
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            raise TooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise TooLarge
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


def _carries_cloudevent(headers: dict[str, str]) -> bool:
    return "ce-specversion" in headers or headers.get("content-type", "").startswith(
        "application/cloudevents+json"
    )


async def respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def error_response(
    send: Send,
    status: int,
    error_type: str,
    message: str,
    extra: list[tuple[bytes, bytes]] | None = None,
    request_id: str = "",
) -> None:
    """Lambda's error shape, without the stack trace: callers are not to see the code."""
    body = {"errorType": error_type, "errorMessage": message}
    if request_id:
        body["requestId"] = request_id
    await respond(send, status, [*JSON, *CORS, *(extra or [])], json.dumps(body).encode())
