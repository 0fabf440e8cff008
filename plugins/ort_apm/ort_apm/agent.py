"""What ort-apm does around each invocation: the spans, the metrics, and the flush.

``observe_event`` opens a *run* (one pass of the pipeline: an invocation, or one record of a
batch) and gives the handler its trace context; ``after_response``, ``on_error`` and
``on_timeout`` close it: they build the invocation's SERVER span, a span for each step the
pipeline recorded (``context.steps``: executable middlewares, the bridge call), the handler
span (timed by its worker, ``context.handler_ns``), the spans the worker sent back
(``context.worker_spans``) or, for a Python handler in ORT's own process, its outgoing HTTP
spans recorded here. The export, within a budget, waits for
``after_answer``: after the answer is delivered and before the next event is taken, which is
when Lambda may freeze the sandbox (``ORT_APM_FLUSH=before_answer`` exports before the answer;
a timeout exports in ``on_timeout``, before the worker is killed).
"""

from __future__ import annotations

import logging
import os
import threading
import time

from ort_apm import __version__, inprocess
from ort_apm.config import Settings
from ort_apm.exporter import Exporter
from ort_apm.metrics import Metrics
from ort_apm.otlp import TracesEncoder, metrics_body
from ort_apm.spans import (
    KIND_INTERNAL,
    KIND_SERVER,
    Parent,
    Span,
    from_worker,
    new_span_id,
    new_trace_id,
    parse_traceparent,
    parse_xray,
    traceparent,
)
from ort_apm.triggers import describe
from ort_core.invocation_env import InvocationVariable

TYPE_CHECKING = False  # typing's own constant would import typing
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

log = logging.getLogger("ort.apm")
SCOPE = {"name": "ort-apm", "version": __version__}
MAX_WORKER_SPANS = 1000  # per invocation
RUN = "_ort_apm_run"  # the attribute of the Context that holds the run in flight
MIB = 1024 * 1024


class _Run:
    """One pass of the pipeline, from ``observe_event`` to the hook that ends it."""

    __slots__ = (
        "coldstart",
        "described",
        "handler_id",
        "parent",
        "recorder",
        "sampled",
        "server_id",
        "start_ns",
        "steps_from",
        "token",
        "trace_id",
    )

    def __init__(self) -> None:
        # The hook that ends the run pops it: list.pop is atomic, so of on_timeout (the
        # watchdog's thread) and the invoking thread, exactly one ends the run, lock-free.
        self.token = [True]
        self.recorder: inprocess.Recorder | None = None

    def end(self) -> bool:
        """True for the first caller only."""
        try:
            return self.token.pop()
        except IndexError:
            return False


class _Ended:
    """A run that has ended, with what its metrics and spans are built from."""

    __slots__ = (
        "context",
        "end_ns",
        "error",
        "handler_ns",
        "recorded",
        "run",
        "steps",
        "timeout",
        "worker_spans",
    )

    def __init__(
        self, run: _Run, context: Any, end_ns: int, error: Any, timeout: bool, recorded: list
    ) -> None:
        self.run = run
        self.context = context
        self.end_ns = end_ns
        self.error = error
        self.timeout = timeout
        self.recorded = recorded
        self.steps = context.steps[run.steps_from :]
        self.handler_ns = context.handler_ns
        self.worker_spans = context.worker_spans  # begin() replaces the list, never clears it


class Agent:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.settings = Settings(environ)
        for problem in self.settings.problems:
            log.warning("ort-apm: %s", problem)
        self.start_ns = process_start_ns()
        self.metrics = Metrics(self.start_ns)
        self.middlewares = _names(environ.get("ORT_MIDDLEWARES") or environ.get("SLSMIDDLEWARES"))
        self.resource: dict[str, Any] = {}
        self.exporter: Exporter | None = None
        self.language: str | None = None
        self.handler = environ.get("_HANDLER") or "handler"
        self.margin_ms = 100
        self.in_process_python = False
        self.traceparent_variable: InvocationVariable | None = None  # in-process handlers'
        self.receive_worker_spans: Callable[[], None] | None = None  # the bridge's, if any
        self._coldstart = True
        self._coldstart_lock = threading.Lock()
        self._configured = False
        self._constant_attributes: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._ended: list[_Ended] = []  # their spans are built after the answer
        self._ended_lock = threading.Lock()

    # -- cold start -----------------------------------------------------------------------------

    def on_init(self, config: Any, bridge: Any) -> None:
        self._configure(config)
        self.language = getattr(bridge, "language", None)
        self.receive_worker_spans = getattr(bridge, "receive_spans", None)
        self.handler = config.handler or self.handler
        # A Python handler in ORT's own process: no worker preload, so ORT records its spans.
        self.in_process_python = self.language == "python" and not hasattr(bridge, "spec")
        if self.in_process_python:
            inprocess.install()
            self.traceparent_variable = InvocationVariable("TRACEPARENT")
        self.metrics.record("faas.init_duration", (time.time_ns() - self.start_ns) / 1e6)

    def _configure(self, config: Any = None) -> None:
        if self._configured:
            return
        self._configured = True
        settings = self.settings
        resource: dict[str, Any] = {
            "service.name": settings.service_name
            or getattr(config, "function_name", None)
            or "unknown_service",
            "service.instance.id": new_trace_id(),  # one series per sandbox, for cumulative sums
            "telemetry.sdk.name": "ort-apm",
            "telemetry.sdk.language": "python",
            "telemetry.sdk.version": __version__,
            "cloud.provider": "aws",
            "cloud.platform": "aws_lambda",
        }
        if config is not None:
            self.margin_ms = config.timeout_margin_ms
            optional = {
                "cloud.region": config.region,
                "faas.name": config.function_name,
                "faas.version": config.function_version,
                "faas.instance": config.log_stream_name,
                "faas.max_memory": _memory_bytes(config.memory_limit_in_mb),
            }
            resource.update({k: v for k, v in optional.items() if v is not None})
        for key, value in settings.resource_attributes.items():
            if key != "service.name" or not settings.service_name:
                resource[key] = value
        self.resource = resource
        try:
            self.exporter = Exporter(
                settings.traces_endpoint,
                settings.metrics_endpoint,
                settings.traces_headers,
                settings.metrics_headers,
                TracesEncoder(resource, SCOPE),
                lambda: metrics_body(self.resource, SCOPE, self.metrics.otlp(time.time_ns())),
                wait=settings.wait_for_ack,
                gzip=settings.gzip,
                max_queue=settings.max_queue,
                max_batch=settings.max_batch,
                metrics_interval_s=settings.metrics_interval_ms / 1000,
                first_backoff_s=settings.retry_ms / 1000,
            )
        except ValueError as exc:
            log.warning("ort-apm: cannot export (%s): recording nothing", exc)

    # -- an invocation --------------------------------------------------------------------------

    def begin(self, event: Any, context: Any) -> _Run:
        self._configure()
        run = _Run()
        run.start_ns = time.time_ns()
        described = run.described = describe(event, getattr(context, "signature", None))
        parent: Parent | None = None
        for candidate in described.traceparents:
            parent = parse_traceparent(candidate)
            if parent is not None:
                break
        if parent is None:
            parent = parse_xray(context.trace_id)
        run.parent = parent
        run.trace_id = parent.trace_id if parent is not None else new_trace_id()
        run.sampled = self.settings.sampler.sample(run.trace_id, parent)
        run.server_id = new_span_id()
        run.handler_id = new_span_id()  # the handler span's, which the worker reports
        run.steps_from = len(context.steps)
        run.coldstart = False
        if self._coldstart:
            with self._coldstart_lock:
                run.coldstart, self._coldstart = self._coldstart, False
        context.traceparent = traceparent(run.trace_id, run.handler_id, run.sampled)
        context.worker_spans = []  # a batch's previous record left its own
        context.handler_ns = None
        if self.in_process_python:
            run.recorder = inprocess.Recorder(run.trace_id, run.handler_id, run.sampled)
            self.traceparent_variable.set(context.traceparent)  # type: ignore[union-attr]
        setattr(context, RUN, run)
        return run

    def finish(
        self, context: Any, error: Any = None, timeout: bool = False, event: Any = None
    ) -> None:
        """End the run in flight on ``context``. Its metrics and spans are recorded and
        exported after the answer (``answered``), or now, within a budget, on a timeout or
        with ``ORT_APM_FLUSH=before_answer``."""
        run: _Run | None = getattr(context, RUN, None)
        if run is None:  # failed before observe_event (an event that is not JSON)
            run = self.begin(event, context)
        if not run.end():  # ended already
            if error is not None:  # after after_response: the answer did not marshal
                self.metrics.add("faas.errors")
            return
        end_ns = time.time_ns()
        recorded = []
        if run.recorder is not None:
            recorded = run.recorder.end()
            self.traceparent_variable.set(None)  # type: ignore[union-attr]
        # what the spans need, taken now: a batch's next record adds steps to the context
        ended = _Ended(run, context, end_ns, error, timeout, recorded)
        exporter = self.exporter
        if timeout or self.settings.flush_before_answer or exporter is None:
            if self.settings.flush_before_answer and not timeout and self.receive_worker_spans:
                self.receive_worker_spans()  # they follow the result: not read yet
            self._record(ended)
            if exporter is not None and not exporter.idle():
                exporter.flush(self._budget_s(context, timeout))
        else:  # recorded and exported after the answer: none of it on the answer's latency
            with self._ended_lock:
                self._ended.append(ended)

    def answered(self) -> None:
        """After the answer is delivered, before the next event (when Lambda may freeze the
        sandbox): the spans are built and exported, off the answer's latency."""
        exporter = self.exporter
        if exporter is not None:
            self._record_ended()
            if not exporter.idle():
                exporter.flush(self.settings.export_timeout_ms / 1000)
        if self.traceparent_variable is not None:
            self.traceparent_variable.own()  # once, after the first answer

    def _record_ended(self) -> None:
        with self._ended_lock:
            ended, self._ended = self._ended, []
        for each in ended:
            self._record(each)

    def _record(self, ended: _Ended) -> None:
        """The run's metrics and, sampled, its spans."""
        run = ended.run
        self.metrics.invocation(
            (ended.end_ns - run.start_ns) / 1e6,
            run.described.trigger,
            run.coldstart,
            ended.error is not None,
            ended.timeout,
        )
        if run.sampled and self.exporter is not None:
            try:
                self.exporter.add(self._spans(ended))
            except Exception:  # a bug here must not fail the invocation
                log.exception("ort-apm: could not record the invocation's spans")

    def shut_down(self) -> None:
        """The sandbox ends: what is left, the last metrics included, within one budget."""
        exporter = self.exporter
        if exporter is not None:
            self._record_ended()
            exporter.flush(self.settings.export_timeout_ms / 1000, force_metrics=True)

    def _budget_s(self, context: Any, timeout: bool) -> float:
        """The export timeout, but never into the watchdog's margin (after_response, on_error
        with ``ORT_APM_FLUSH=before_answer``) nor more than half what is left (on_timeout,
        within that margin)."""
        budget = float(self.settings.export_timeout_ms)
        if getattr(context, "deadline_ms", 0):
            left = context.get_remaining_time_in_millis()
            budget = min(budget, left / 2 if timeout else left - self.margin_ms - 5)
        return max(0.0, budget) / 1000

    def _spans(self, ended: _Ended) -> list[Span]:
        run, context, end_ns, error, timeout = (
            ended.run,
            ended.context,
            ended.end_ns,
            ended.error,
            ended.timeout,
        )
        trace_id = run.trace_id
        server = Span(
            trace_id,
            run.server_id,
            run.parent.span_id if run.parent is not None else None,
            context.function_name or "function",
            KIND_SERVER,
            run.start_ns,
            end_ns,
            self._server_attributes(run, context),
        )
        spans = [server]
        bridge: Span | None = None
        steps = ended.steps
        for step in steps:
            span = Span(
                trace_id,
                new_span_id(),
                run.server_id,
                step.name,
                KIND_INTERNAL,
                step.start_ns,
                step.end_ns,
                _step_attributes(step.name),
            )
            if step.error:
                span.attributes["error.type"] = step.error
                span.fail(step.error)
            if step.name.startswith("bridge:"):
                bridge = span
            spans.append(span)
        handler_running = False
        if timeout:
            name = self._step_in_flight(len(steps))
            if name is not None:
                start = steps[-1].end_ns if steps else run.start_ns
                span = Span(
                    trace_id,
                    new_span_id(),
                    run.server_id,
                    name,
                    KIND_INTERNAL,
                    start,
                    end_ns,
                    _step_attributes(name),
                )
                span.attributes["error.type"] = "Sandbox.Timedout"
                span.fail("timed out")
                spans.append(span)
                if name.startswith("bridge:"):
                    bridge = span
                    handler_running = True
        handler_parent = bridge.span_id if bridge is not None else run.server_id
        timed = ended.handler_ns if not timeout else None
        if bridge is not None and (timed or self.in_process_python or handler_running):
            # the handler's span: timed by its worker, else (in ORT's process, or cut at the
            # deadline, the worker gone) as long as the bridge call
            start, end = timed or (bridge.start_ns, bridge.end_ns)
            handler = Span(
                trace_id,
                run.handler_id,
                handler_parent,
                self.handler,
                KIND_INTERNAL,
                start,
                end,
                {"code.function.name": self.handler},
            )
            if handler_running:
                handler.attributes["error.type"] = "Sandbox.Timedout"
                handler.fail("timed out")
            elif bridge.status_code and error is not None:
                handler.attributes["error.type"] = error.error_type
                handler.fail(f"{error.error_type}: {error.message}")
            spans.append(handler)
            spans.extend(ended.recorded)
        worker_spans = ended.worker_spans[:MAX_WORKER_SPANS] if not timeout else []
        if worker_spans:
            offset = time.time_ns() - time.monotonic_ns()
            for raw in worker_spans:
                span = from_worker(raw, trace_id, offset)
                if span is None or (timed and span.span_id == run.handler_id):
                    continue
                if span.span_id == run.handler_id or span.parent_id is None:
                    span.parent_id = handler_parent
                spans.append(span)
        if timeout:
            server.attributes["error.type"] = "Sandbox.Timedout"
            server.fail(f"timed out after {(end_ns - run.start_ns) / 1e9:.2f} seconds")
        elif error is not None:
            server.attributes["error.type"] = error.error_type
            server.fail(f"{error.error_type}: {error.message}")
            server.events.append(
                (
                    "exception",
                    end_ns,
                    {
                        "exception.type": error.error_type,
                        "exception.message": error.message,
                        "exception.stacktrace": "".join(error.stack_trace or ()),
                    },
                )
            )
        return spans

    def _step_in_flight(self, completed: int) -> str | None:
        """The step the watchdog cut: the pipeline's walk is the middlewares' ``before`` in
        order, the bridge, their ``after`` in reverse."""
        if self.language is None:
            return None
        walk = [f"middleware:{name}:before" for name in self.middlewares]
        walk.append(f"bridge:{self.language}")
        walk += [f"middleware:{name}:after" for name in reversed(self.middlewares)]
        return walk[completed] if completed < len(walk) else None

    def _server_attributes(self, run: _Run, context: Any) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "faas.invocation_id": context.aws_request_id,
            "faas.trigger": run.described.trigger,
            "faas.coldstart": run.coldstart,
        }
        key = (context.invoked_function_arn, context.function_name, context.function_version)
        constant = self._constant_attributes.get(key)
        if constant is None:
            constant = self._constant_attributes[key] = self._function_attributes(context)
        attributes.update(constant)
        attributes.update(run.described.attributes)
        return attributes

    def _function_attributes(self, context: Any) -> dict[str, Any]:
        """What the invocation span says of the function, the same for every invocation of
        one ARN (an alias or version qualifies it)."""
        attributes: dict[str, Any] = {"cloud.provider": "aws"}
        if context.function_name:
            attributes["faas.name"] = context.function_name
        if context.function_version:
            attributes["faas.version"] = context.function_version
        memory = _memory_bytes(context.memory_limit_in_mb)
        if memory is not None:
            attributes["faas.max_memory"] = memory
        arn = context.invoked_function_arn
        parts = arn.split(":") if isinstance(arn, str) else []
        region = parts[3] if len(parts) > 4 and parts[3] else self.resource.get("cloud.region")
        if region:
            attributes["cloud.region"] = region
        if len(parts) > 4 and parts[4]:
            attributes["cloud.account.id"] = parts[4]
        if arn:
            attributes["cloud.resource_id"] = arn
        if len(self._constant_attributes) > 64:  # not a function's ARNs: something odd
            self._constant_attributes.clear()
        return attributes


_STEP_ATTRIBUTES: dict[str, dict[str, Any]] = {}


def _step_attributes(name: str) -> dict[str, Any]:
    """A step span's attributes (a fresh dict: spans may add to theirs)."""
    found = _STEP_ATTRIBUTES.get(name)
    if found is None:
        found = _STEP_ATTRIBUTES[name] = _describe_step(name)
    return dict(found)


def _describe_step(name: str) -> dict[str, Any]:
    kind, _, rest = name.partition(":")
    if kind == "middleware":
        middleware, _, hook = rest.rpartition(":")
        return {"ort.step": name, "ort.middleware.name": middleware, "ort.middleware.hook": hook}
    if kind == "bridge":
        return {"ort.step": name, "ort.language": rest}
    return {"ort.step": name}


def _memory_bytes(megabytes: object) -> int | None:
    try:
        return int(str(megabytes)) * MIB
    except ValueError:
        return None


def _names(value: str | None) -> list[str]:
    return [name.strip() for name in (value or "").split(",") if name.strip()]


def process_start_ns() -> int:
    """When this process started (epoch ns), from /proc: Lambda's init duration begins there,
    before Python itself. Falls back to now where /proc is not Linux's."""
    now = time.time_ns()
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
        ticks = int(fields[19])  # field 22, starttime, in clock ticks since boot
        age_ns = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - ticks * 10**9 // os.sysconf(
            "SC_CLK_TCK"
        )
    except (OSError, ValueError, IndexError, AttributeError):
        return now
    return now - age_ns if 0 <= age_ns < 3600 * 10**9 else now
