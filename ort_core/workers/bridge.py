"""The bridge every persistent worker shares: start once, invoke over the protocol, restart.

A language plugin gives the command that starts its worker; this class does the rest. A
worker that dies fails only the invocation in flight (``Runtime.ExitError``) and the next
invocation starts a fresh one.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from ort_core.config import FunctionConfig
from ort_core.context import Context
from ort_core.errors import FunctionError
from ort_core.pipeline import JSONBytes
from ort_core.workers.prelaunch import WorkerSpec, adopt, worker_environment
from ort_core.workers.process import Command, Worker, WorkerExited, error_from_body
from ort_core.workers.protocol import event_bytes


def context_header(context: Context) -> dict[str, Any]:
    """The context as the worker protocol carries it (camelCase, as Lambda's Node runtime)."""
    client_context = context.client_context
    return {
        "awsRequestId": context.aws_request_id,
        "deadlineMs": context.deadline_ms,
        "invokedFunctionArn": context.invoked_function_arn,
        "functionName": context.function_name,
        "functionVersion": context.function_version,
        "memoryLimitInMB": context.memory_limit_in_mb,
        "logGroupName": context.log_group_name,
        "logStreamName": context.log_stream_name,
        "traceId": context.trace_id,
        "tenantId": context.tenant_id,
        "identity": {
            "cognitoIdentityId": context.identity.cognito_identity_id,
            "cognitoIdentityPoolId": context.identity.cognito_identity_pool_id,
        },
        "clientContext": client_context.raw if client_context is not None else None,
        "traceparent": context.traceparent,
    }


def handler_epoch_ns(readings: Any, sent: int, received: int) -> tuple[int, int] | None:
    """A worker's ``handler_ns`` (its monotonic clock's start and end of the handler, numbers
    or decimal strings) as epoch nanoseconds; None unless they fall between ORT's own readings
    around the call, as readings of the same clock do."""
    try:
        start, end = int(readings[0]), int(readings[1])
    except (TypeError, ValueError, IndexError, KeyError):
        return None
    if not sent <= start <= end <= received:
        return None
    offset = time.time_ns() - time.monotonic_ns()
    return start + offset, end + offset


class WorkerBridge:
    """Runs a handler in a persistent worker process started by ``command``: an argument list,
    or a function of the worker's socket path that returns one (see ``Worker``).

    If ``ort bootstrap`` started the same worker early (:mod:`ort_core.workers.prelaunch`),
    ``start`` adopts it rather than spawning another.
    """

    def __init__(
        self,
        language: str,
        command: Command,
        config: FunctionConfig,
        env: Mapping[str, str] | None = None,
        ready_timeout: float = 10.0,
    ) -> None:
        self.language = language
        self.spec = WorkerSpec(
            language,
            command if callable(command) else tuple(command),
            tuple(sorted((env or {}).items())),
        )
        self.config = config
        self.ready_timeout = ready_timeout
        self.worker: Worker | None = None
        self._relay: Any = None  # debug.DebugRelay, for the worker it was opened for
        self._relay_worker: Worker | None = None

    # Front ends may hand the event's bytes along (``Context.event_body``): this bridge sends
    # them to the worker as they are.
    sends_event_bytes = True

    @classmethod
    def from_spec(cls, spec: WorkerSpec, config: FunctionConfig) -> WorkerBridge:
        return cls(spec.language, spec.command, config, dict(spec.env))

    def start(self) -> None:
        early = adopt(self.spec, self.config, self.language)
        self.worker = self._start_worker(early if isinstance(early, Worker) else None)

    def _start_worker(self, worker: Worker | None = None) -> Worker:
        if worker is None:
            worker = Worker(
                self.spec.command,
                worker_environment(self.spec, self.config),
                cwd=self.config.task_root,
                log_name=self.language,
            )
        worker.wait_ready(self.ready_timeout)
        return worker

    def invoke(self, event: Any, context: Context) -> Any:
        if self.worker is None or not self.worker.alive:
            self.stop()
            self.worker = self._start_worker()  # its init error is this invocation's error
        header = {
            "type": "invoke",
            "id": context.aws_request_id,
            "signature": context.signature,
            "context": context_header(context),
        }
        body = event_bytes(event, context)
        answered = self._debug(header, context) if context.debug_proxy else None
        traced = context.traceparent is not None
        if traced:  # the worker times the handler, for the handler's span
            header["time_handler"] = True
            sent = time.monotonic_ns()
        try:
            answer, payload = self.worker.invoke(header, body)
        except WorkerExited as exc:
            self.stop()
            raise FunctionError(
                "Runtime.ExitError",
                f"RequestId: {context.aws_request_id} Error: Runtime exited with error: {exc}",
            ) from None
        finally:
            if answered is not None:
                answered.set()
        if answer.get("type") != "result":
            self.stop()
            raise FunctionError(
                "Runtime.ExitError", f"the {self.language} worker answered {answer['type']!r}"
            )
        if traced and "handler_ns" in answer:
            context.handler_ns = handler_epoch_ns(answer["handler_ns"], sent, time.monotonic_ns())
        # what an instrumenting preload recorded in the worker: in a message of their own
        # after the result (read after the answer, receive_spans), or in the result's header
        if answer.get("spans_follow"):
            self.worker.expect_spans(context.worker_spans)
        else:
            spans = answer.get("spans")
            if isinstance(spans, list):
                context.worker_spans = spans
        if answer.get("exiting"):  # the worker cannot go on: the next event gets a fresh one
            self.stop()
        if not answer.get("ok"):
            raise error_from_body(payload)
        return JSONBytes(payload)

    def receive_spans(self) -> None:
        """The spans the worker sends after its last result, into that invocation's
        ``context.worker_spans``: the pipeline asks once the answer is delivered; a plugin
        that needs them sooner may ask itself."""
        worker = self.worker
        if worker is not None:
            worker.receive_spans()

    def _debug(self, header: dict[str, Any], context: Context) -> threading.Event | None:
        """Remote debugging (``_debugProxy``, ORT_ALLOW_DEBUG=1): relay the worker's inspector
        to the developer's relay; the first time, the worker waits for a debugger, at most
        ORT_DEBUG_WAIT seconds. The returned event is set once the worker answered."""
        from ort_core.workers import debug

        proxy = context.debug_proxy
        assert proxy is not None
        if self.language != "node":
            debug.log.warning("_debugProxy ignored: remote debugging is for Node workers")
            return None
        relay = self._relay
        if relay is not None and self._relay_worker is self.worker and relay.proxy == proxy:
            header["debug"] = {"port": relay.local_port}  # open already, the debugger too
            return None
        inspect = os.environ.get("ORT_INSPECT")  # started with --inspect: it is that port
        fresh = relay is None or self._relay_worker is not self.worker
        if fresh:
            port = int(inspect.rpartition(":")[2]) if inspect else debug.free_port()
        else:
            port = relay.local_port  # a new relay for the inspector already open
        self._stop_relay()
        self._relay = relay = debug.DebugRelay(proxy, port)
        self._relay_worker = self.worker
        header["debug"] = {"port": port}
        if not fresh or inspect:
            return None
        answered = threading.Event()
        left = context.get_remaining_time_in_millis() / 1000 - 1
        relay.release_after(max(0.0, min(debug.debug_wait(), left)), answered)
        return answered

    def _stop_relay(self) -> None:
        relay, self._relay = self._relay, None
        if relay is not None:
            relay.stop()

    def cancel(self) -> bool:
        """The invocation reached its deadline: kill the worker; the next event starts one."""
        worker = self.worker
        if worker is not None:
            worker.kill()
        return True

    def stop(self) -> None:
        self._stop_relay()
        worker, self.worker = self.worker, None  # the watchdog may stop it from its thread
        if worker is not None:
            worker.stop()
