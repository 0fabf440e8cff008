"""One invocation's walk: decode, observe_event and before_event hooks, the bridge,
after_response hooks, encode.

Every front end (the Lambda loop, ``ort invoke``, later the HTTP gateway) calls
:meth:`Pipeline.invoke`, so plugins see the same lifecycle wherever the function runs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ort_core.deadline import Watchdog
from ort_core.errors import FunctionError
from ort_core.plugins import call_plugin

log = logging.getLogger("ort")

if TYPE_CHECKING:
    from ort_core.bridge import Bridge
    from ort_core.context import Context
    from ort_core.middleware import Middleware
    from ort_core.plugins import Hooks


class EarlyResponse:
    """Returned by a ``before_event`` hook to answer without calling the handler."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class Step(NamedTuple):
    """One step of an invocation, as ``context.steps`` records them: ``bridge:node``,
    ``middleware:auth:before``...; times in epoch nanoseconds; ``error`` is the error type
    when the step failed."""

    name: str
    start_ns: int
    end_ns: int
    error: str | None


class Decoded(NamedTuple):
    """An event a front end already holds as values (the gateway's request): ``invoke``
    takes it instead of JSON bytes, saving an encode and a decode."""

    value: Any


class JSONBytes(bytes):
    """An answer that already is JSON text (from a worker): sent as is, decoded only when an
    ``after_response`` hook needs its value."""


def decode_event(body: bytes) -> Any:
    """The event as Python values; a body that is not JSON is ``Runtime.UnmarshalError``,
    and so is one nested deeper than Python's parser goes (a RecursionError otherwise)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise FunctionError("Runtime.UnmarshalError", f"Unable to unmarshal input: {exc}") from None


def _json_default(value: Any) -> Any:
    from decimal import Decimal  # seldom needed, so not on the cold-start path

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def encode_response(response: Any) -> bytes:
    """JSON bytes for the platform; ``bytes`` pass unchanged, as in AWS's client."""
    if isinstance(response, bytes):
        return response
    try:
        return json.dumps(response, default=_json_default).encode()
    except (TypeError, ValueError) as exc:
        raise FunctionError("Runtime.MarshalError", f"Unable to marshal response: {exc}") from None


class Pipeline:
    """Runs events through the plugins and the bridge; raises FunctionError on failure.

    Executable middlewares sit between the in-process hooks and the bridge: ``before_event``
    hooks, middlewares' ``before`` in order, the handler, their ``after`` in reverse, then
    ``after_response`` hooks. An early answer from a ``before_event`` hook skips the
    middlewares both ways, since they never saw the event.

    A watchdog acts ``timeout_margin_ms`` before the deadline: it runs the ``on_timeout``
    hooks, then cuts the step in flight (the bridge's or the middleware's ``cancel``), and
    ``invoke`` raises the timeout error. When the step cannot be cut (a handler running in
    ORT's own process), ``on_expiry`` is the front end's way to send the error while the
    handler is still busy, and to end the sandbox.
    """

    def __init__(
        self,
        hooks: Hooks,
        bridge: Bridge,
        on_expiry: Callable[[FunctionError, Context], None] | None = None,
        timeout_margin_ms: int = 100,
        middlewares: Sequence[Middleware] = (),
    ) -> None:
        self.hooks = hooks
        self.bridge = bridge
        self.on_expiry = on_expiry
        self.timeout_margin_ms = timeout_margin_ms
        self.middlewares = list(middlewares)
        self._cancel_bridge: Callable[[], bool] | None = getattr(bridge, "cancel", None)
        self._receive_spans: Callable[[], None] | None = getattr(bridge, "receive_spans", None)
        self._bridge_step = f"bridge:{bridge.language}"
        self._event_in_flight: Any = None
        self._cancel_in_flight: Callable[[], bool] | None = None
        self._expired = False
        self._closed = False
        self._watchdog = Watchdog()
        # A bridge that sends the event's own bytes gets them when nothing before it can
        # change the event: no ``before_event`` hook (``observe_event`` ones only read it), no
        # middleware (``Context.event_body``).
        self._passes_event_bytes = (
            getattr(bridge, "sends_event_bytes", False)
            and not self.middlewares
            and not hooks.before_event_chain
        )

    def invoke(self, body: bytes | Decoded, context: Context) -> bytes:
        event = self._event_in_flight = None
        armed = self._expired = False
        started_ms = time.time() * 1000
        try:
            if isinstance(body, Decoded):
                event = body.value
            else:
                event = decode_event(body)
                if self._passes_event_bytes and context.signature == "raw":
                    context.event_body = (event, body)  # sent as they came, not encoded again
            if isinstance(event, dict) and "_debugProxy" in event:  # remote debugging
                from ort_core.workers.debug import take_debug_proxy

                context.event_body = None  # the key is removed: the bytes no longer say it
                context.debug_proxy = take_debug_proxy(event)  # removed, used if allowed
            armed = self._arm_watchdog(event, context, started_ms)
            if context.signature == "raw":
                result = encode_response(self._run(event, context))
            else:
                result = encode_response(self._run_adapted(event, context))
            error = None
        except Exception as exc:
            error = FunctionError.from_exception(exc)
        if armed and not self._watchdog.disarm():
            raise timeout_error(context, started_ms, error)
        if error is not None:
            self.hooks.on_error(error, self._event_in_flight, context)
            raise error
        return result

    def _run(self, event: Any, context: Context) -> Any:
        self._event_in_flight = event
        self.hooks.observe_event(event, context)
        event, early = self._before(event, context)
        if early is not None:
            return self._after(early.value, event, context)
        for middleware in self.middlewares:
            event = self._stage(
                middleware.step_names[0], middleware.cancel, middleware.before, event, context
            )
        self._event_in_flight = event  # as the handler receives it, for on_error
        response = self._stage(
            self._bridge_step, self._cancel_bridge, self.bridge.invoke, event, context
        )
        for middleware in reversed(self.middlewares):
            response = self._stage(
                middleware.step_names[1], middleware.cancel, middleware.after, response, context
            )
        return self._after(response, event, context)

    def _stage(
        self,
        name: str,
        cancel: Callable[[], bool] | None,
        call: Callable[[Any, Context], Any],
        payload: Any,
        context: Context,
    ) -> Any:
        """Run a step the watchdog may cut with ``cancel`` (None: it cannot be cut), and
        record it in ``context.steps`` for telemetry plugins."""
        self._cancel_in_flight = cancel
        started = time.time_ns()
        failed = None
        try:
            return call(payload, context)
        except BaseException as exc:
            failed = getattr(exc, "error_type", None) or type(exc).__name__
            raise
        finally:
            self._cancel_in_flight = None
            context.steps.append(Step(name, started, time.time_ns(), failed))

    def _run_adapted(self, event: Any, context: Context) -> Any:
        """The event in the function's signature: one run per record, answers combined."""
        from ort_core.signatures import adapt  # only functions that ask for it pay for it

        adapted = adapt(
            event,
            context.signature,
            context.aws_request_id,
            context.trace_id,
            context.invoked_function_arn,
        )
        if adapted.record_ids is None:
            return adapted.answer([self._run(item, context) for item in adapted.inputs])
        failed = []
        for record_id, item in zip(adapted.record_ids, adapted.inputs, strict=True):
            try:
                self._run(item, context)
            except Exception as exc:
                if self._expired:
                    raise  # cut at the deadline: the whole batch times out
                error = FunctionError.from_exception(exc)
                log.error("record %s failed: %s: %s", record_id, error.error_type, error.message)
                self.hooks.on_error(error, self._event_in_flight, context)
                failed.append(record_id)
        return adapted.answer(failed)

    def answered(self, context: Context) -> None:
        """The front end has delivered the answer: ``after_answer`` hooks run now, before it
        takes the next event (when Lambda may freeze the sandbox), off the answer's latency.
        The worker's spans that follow its result are read first, for these hooks."""
        if self._receive_spans is not None:
            self._receive_spans()
        self.hooks.after_answer(context)

    def close(self) -> None:
        """Plugins' ``on_shutdown``, then stop the bridge (and its worker) and the
        middlewares: the sandbox is ending. Once: later calls do nothing."""
        if self._closed:
            return
        self._closed = True
        self.hooks.on_shutdown()
        self.bridge.stop()
        for middleware in self.middlewares:
            middleware.close()

    def _arm_watchdog(self, event: Any, context: Context, started_ms: float) -> bool:
        if not context.deadline_ms:
            return False

        def expire() -> None:
            """On the watchdog thread: last words, then cut the step in flight so the
            invoking thread raises the timeout; what cannot be cut is the front end's."""
            self._expired = True
            self.hooks.on_timeout(event, context)
            cancel = self._cancel_in_flight
            if cancel is not None and cancel():
                return
            if self.on_expiry is not None:
                self.on_expiry(timeout_error(context, started_ms), context)

        left_ms = context.deadline_ms - started_ms - self.timeout_margin_ms
        self._watchdog.arm(max(0.0, left_ms / 1000), expire)
        return True

    def _before(self, event: Any, context: Context) -> tuple[Any, EarlyResponse | None]:
        for plugin_name, call in self.hooks.before_event_chain:
            result = call_plugin(plugin_name, "before_event", call, event=event, context=context)
            if isinstance(result, EarlyResponse):
                return event, result
            if result is not None:
                event = result
        return event, None

    def _after(self, response: Any, event: Any, context: Context) -> Any:
        if self.hooks.after_response_reads_response and isinstance(response, JSONBytes):
            response = json.loads(response)
        for plugin_name, call in self.hooks.after_response_chain:
            result = call_plugin(
                plugin_name,
                "after_response",
                call,
                response=response,
                event=event,
                context=context,
            )
            if result is not None:
                response = result
        return response


def timeout_error(
    context: Context, started_ms: float, cut: FunctionError | None = None
) -> FunctionError:
    """Lambda's timeout error; when a middleware was cut, its failure says which and where."""
    seconds = max(0.0, (context.deadline_ms - started_ms) / 1000)
    detail = f": {cut.message}" if cut and cut.error_type == "Runtime.MiddlewareError" else ""
    return FunctionError(
        "Sandbox.Timedout",
        f"{context.aws_request_id} Task timed out after {seconds:.2f} seconds{detail}",
    )
