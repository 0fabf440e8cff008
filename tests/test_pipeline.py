"""The pipeline's hook semantics, with in-process test plugins around a real Python handler.

Call order, as observed with pluggy: for ``before_event`` the plugins registered last run
first, and ``tryfirst`` implementations run before all the others. ``extra_plugins`` are
registered after the entry-point plugins, in list order, so ``extra_plugins=[a, b]`` calls
``b.before_event`` then ``a.before_event``. ``after_response`` runs in exactly the reverse
order (an onion around the handler).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ort_core import Context, EarlyResponse, FunctionConfig, FunctionError, hookimpl
from ort_core.pipeline import Pipeline
from ort_core.startup import start_function

ENVIRON = {"ORT_PLUGINS": "ort-python"}

HANDLER = """
calls = []

def handler(event, context):
    calls.append(event)
    if isinstance(event, dict) and event.get("raise"):
        raise ValueError(event["raise"])
    if isinstance(event, dict) and event.get("sleep"):
        import time
        time.sleep(event["sleep"])
    return {"handled": event}
"""


class Function:
    """A real Python handler module, unique to the test, started with test plugins."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.module = f"pipeline_{uuid.uuid4().hex[:12]}"
        (root / f"{self.module}.py").write_text(HANDLER)
        self.config = FunctionConfig(
            handler=f"{self.module}.handler", task_root=str(root), timeout_margin_ms=50
        )
        self.pipelines: list[Pipeline] = []

    def start(self, *plugins: object, on_expiry: Any = None) -> Pipeline:
        pipeline = start_function(
            self.config, environ=ENVIRON, extra_plugins=plugins, on_expiry=on_expiry
        )
        self.pipelines.append(pipeline)
        return pipeline

    def context(self, deadline_ms: int = 0, request_id: str = "req-1") -> Context:
        return Context(request_id, deadline_ms, self.config)

    def invoke(self, pipeline: Pipeline, event: Any, context: Context | None = None) -> Any:
        answer = pipeline.invoke(json.dumps(event).encode(), context or self.context())
        return json.loads(answer)

    def invoke_error(
        self, pipeline: Pipeline, event: Any, context: Context | None = None
    ) -> FunctionError:
        with pytest.raises(FunctionError) as raised:
            self.invoke(pipeline, event, context)
        return raised.value

    @property
    def handler_calls(self) -> list[Any]:
        return sys.modules[self.module].calls


@pytest.fixture
def function(tmp_path: Path) -> Iterator[Function]:
    fn = Function(tmp_path)
    yield fn
    for pipeline in fn.pipelines:
        pipeline.bridge.stop()
    while str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))
    sys.modules.pop(fn.module, None)


class Plugin:
    """Pluggy names a registered object by its ``__name__``; ORT's messages use that name."""

    def __init__(self, name: str, trail: list[str] | None = None) -> None:
        self.__name__ = name
        self.trail = trail if trail is not None else []


class Tagger(Plugin):
    """Appends its name to the event and to the response, returning new objects."""

    @hookimpl
    def before_event(self, event: Any) -> Any:
        self.trail.append(f"before:{self.__name__}")
        return {**event, "before": [*event.get("before", []), self.__name__]}

    @hookimpl
    def after_response(self, response: Any) -> Any:
        self.trail.append(f"after:{self.__name__}")
        return {**response, "after": [*response.get("after", []), self.__name__]}


class EarlyTagger(Tagger):
    @hookimpl(tryfirst=True)
    def before_event(self, event: Any) -> Any:
        return super().before_event(event)


class Bystander(Plugin):
    """Returns None from both hooks: keeps the event and the response."""

    @hookimpl
    def before_event(self, event: Any, context: Context) -> None:
        self.trail.append(f"before:{self.__name__}")

    @hookimpl
    def after_response(self, response: Any, event: Any, context: Context) -> None:
        self.trail.append(f"after:{self.__name__}")


# -- before_event and after_response -------------------------------------------------------


def test_before_event_replacements_chain_and_after_response_is_the_onion(
    function: Function,
) -> None:
    trail: list[str] = []
    first, second, third = Tagger("first", trail), Tagger("second", trail), Bystander("idle", trail)
    eager = EarlyTagger("eager", trail)
    pipeline = function.start(first, second, third, eager)

    response = function.invoke(pipeline, {"order": 1})

    # Observed order: tryfirst ("eager") first, then later-registered plugins before
    # earlier ones. Each before_event saw the previous one's replacement, so the handler
    # got every name; after_response ran in the reverse order, each replacing the response.
    assert trail == [
        "before:eager", "before:idle", "before:second", "before:first",
        "after:first", "after:second", "after:idle", "after:eager",
    ]  # fmt: skip
    assert function.handler_calls == [{"order": 1, "before": ["eager", "second", "first"]}]
    assert response == {
        "handled": {"order": 1, "before": ["eager", "second", "first"]},
        "after": ["first", "second", "eager"],
    }


def test_early_response_skips_the_handler_and_later_hooks_but_not_after_response(
    function: Function,
) -> None:
    trail: list[str] = []

    class Cache(Plugin):
        @hookimpl
        def before_event(self, event: Any) -> Any:
            self.trail.append("before:cache")
            return EarlyResponse({"cached": event["key"]})

    inner, outer = Tagger("inner", trail), Tagger("outer", trail)
    # Registered last, so called first: outer, then the cache, which answers; inner is skipped.
    pipeline = function.start(inner, Cache("cache", trail), outer)

    response = function.invoke(pipeline, {"key": "k1"})

    assert function.handler_calls == []
    assert trail == ["before:outer", "before:cache", "after:inner", "after:outer"]
    assert response == {"cached": "k1", "after": ["inner", "outer"]}


def test_after_response_sees_the_previous_replacement_and_the_handlers_event(
    function: Function,
) -> None:
    seen: list[Any] = []

    class Watcher(Plugin):
        @hookimpl
        def after_response(self, response: Any, event: Any, context: Context) -> None:
            seen.append((response, event, context.aws_request_id))

    # Registered last: its before_event would run first, so its after_response runs last
    # and sees the tagger's replacement response.
    pipeline = function.start(Tagger("tagger"), Watcher("watcher"))

    function.invoke(pipeline, {"n": 1}, function.context(request_id="req-after"))

    event = {"n": 1, "before": ["tagger"]}
    assert seen == [({"handled": event, "after": ["tagger"]}, event, "req-after")]


def test_plugin_raising_in_before_event_is_a_plugin_error_and_the_next_call_works(
    function: Function,
) -> None:
    class Validator(Plugin):
        @hookimpl
        def before_event(self, event: Any) -> None:
            if "id" not in event:
                raise KeyError("id")

    pipeline = function.start(Validator("validator"))

    error = function.invoke_error(pipeline, {"no": "id"})

    assert error.error_type == "Runtime.PluginError"
    assert "'validator'" in error.message
    assert "before_event" in error.message
    assert "KeyError" in error.message
    assert "'id'" in error.message
    assert function.handler_calls == []
    assert function.invoke(pipeline, {"id": 3}) == {"handled": {"id": 3}}


# -- observe_event ---------------------------------------------------------------------------


class Observer(Plugin):
    """Reads each event; what it returns (a replacement, here) must be ignored."""

    def __init__(self, name: str, trail: list[str] | None = None) -> None:
        super().__init__(name, trail)
        self.seen: list[Any] = []

    @hookimpl
    def observe_event(self, event: Any, context: Context) -> Any:
        self.trail.append(f"observe:{self.__name__}")
        self.seen.append((event, context.aws_request_id))
        return {"replaced": "by an observer"}


def test_observe_event_reads_each_event_before_every_before_event_and_cannot_replace_it(
    function: Function,
) -> None:
    trail: list[str] = []
    observer = Observer("observer", trail)
    pipeline = function.start(EarlyTagger("eager", trail), observer)

    response = function.invoke(pipeline, {"order": 1}, function.context(request_id="req-7"))

    assert trail == ["observe:observer", "before:eager", "after:eager"]
    assert observer.seen == [({"order": 1}, "req-7")]
    assert response == {"handled": {"order": 1, "before": ["eager"]}, "after": ["eager"]}


def test_an_observer_that_raises_is_logged_and_the_invocation_answers(
    function: Function, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Plugin):
        @hookimpl
        def observe_event(self, event: Any) -> None:
            raise RuntimeError("telemetry bug")

    pipeline = function.start(Broken("broken"))

    with caplog.at_level(logging.ERROR, logger="ort"):
        assert function.invoke(pipeline, {"n": 1}) == {"handled": {"n": 1}}
    assert "plugin 'broken' failed in observe_event" in caplog.text
    assert "telemetry bug" in caplog.text
    assert function.invoke(pipeline, {"n": 2}) == {"handled": {"n": 2}}


class BytesBridge:
    """A language bridge that sends the event's own bytes, as ORT's worker bridges do: it
    records what would go to its worker."""

    language = "bytes"
    sends_event_bytes = True

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def start(self) -> None:
        pass

    def invoke(self, event: Any, context: Context) -> Any:
        from ort_core.workers.protocol import event_bytes

        self.sent.append(event_bytes(event, context))
        return {"ok": True}

    def stop(self) -> None:
        pass


class BytesLanguage(Plugin):
    def __init__(self) -> None:
        super().__init__("bytes-language")
        self.bridge = BytesBridge()

    @hookimpl
    def launch_language(self, config: FunctionConfig) -> BytesBridge:
        return self.bridge


RECEIVED = b'{ "n" : 1.50, "text": "caf\\u00e9" }'  # as a client wrote it, not as json.dumps would


@pytest.mark.parametrize(
    ("plugin", "sent"),
    [
        (Observer("observer"), RECEIVED),  # the bytes as they came
        (Bystander("bystander"), b'{"n": 1.5, "text": "caf\\u00e9"}'),  # encoded again
    ],
)
def test_a_worker_gets_the_received_bytes_unless_a_before_event_hook_could_change_the_event(
    function: Function, plugin: Plugin, sent: bytes
) -> None:
    language = BytesLanguage()
    pipeline = function.start(language, plugin)
    context = function.context()
    context.signature = "raw"

    assert json.loads(pipeline.invoke(RECEIVED, context)) == {"ok": True}

    assert language.bridge.sent == [sent]


# -- on_error ------------------------------------------------------------------------------


def test_on_error_gets_the_error_the_event_and_the_context(function: Function) -> None:
    errors: list[tuple[FunctionError, Any, Context]] = []

    class Reporter(Plugin):
        @hookimpl
        def on_error(self, error: FunctionError, event: Any, context: Context) -> None:
            errors.append((error, event, context))

    pipeline = function.start(Reporter("reporter"), Tagger("tagger"))
    context = function.context(request_id="req-err")

    sent = function.invoke_error(pipeline, {"raise": "no such order"}, context)

    assert sent.error_type == "ValueError"
    assert sent.message == "no such order"
    [(error, event, got_context)] = errors
    assert error is sent
    assert event == {"raise": "no such order", "before": ["tagger"]}  # as the handler got it
    assert got_context is context


def test_on_error_is_not_called_for_a_successful_invocation(function: Function) -> None:
    errors: list[FunctionError] = []

    class Reporter(Plugin):
        @hookimpl
        def on_error(self, error: FunctionError) -> None:
            errors.append(error)

    pipeline = function.start(Reporter("reporter"))

    function.invoke(pipeline, {"fine": True})

    assert errors == []


def test_exception_in_on_error_does_not_change_the_error_sent(
    function: Function, caplog: pytest.LogCaptureFixture
) -> None:
    reported: list[str] = []

    class Reporter(Plugin):
        @hookimpl
        def on_error(self, error: FunctionError) -> None:
            reported.append(error.error_type)

    class Broken(Plugin):
        @hookimpl
        def on_error(self, error: FunctionError) -> None:
            raise RuntimeError("telemetry endpoint down")

    # Registered last, so the broken one is called first; the reporter must still run.
    pipeline = function.start(Reporter("reporter"), Broken("broken"))

    with caplog.at_level(logging.ERROR, logger="ort"):
        error = function.invoke_error(pipeline, {"raise": "bad"})

    assert (error.error_type, error.message) == ("ValueError", "bad")
    assert reported == ["ValueError"]
    assert "plugin 'broken' failed in on_error" in caplog.text
    assert "telemetry endpoint down" in caplog.text
    assert function.invoke(pipeline, {"ok": 1}) == {"handled": {"ok": 1}}


def test_on_error_sees_plugin_errors_too(function: Function) -> None:
    errors: list[FunctionError] = []

    class Reporter(Plugin):
        @hookimpl
        def on_error(self, error: FunctionError) -> None:
            errors.append(error)

    class Exploder(Plugin):
        @hookimpl
        def after_response(self) -> None:
            raise ZeroDivisionError("oops")

    pipeline = function.start(Reporter("reporter"), Exploder("exploder"))

    sent = function.invoke_error(pipeline, {})

    assert sent.error_type == "Runtime.PluginError"
    assert "'exploder'" in sent.message
    assert "after_response" in sent.message
    assert errors == [sent]


# -- on_init -------------------------------------------------------------------------------


def test_on_init_is_called_once_with_the_config_and_the_started_bridge(
    function: Function,
) -> None:
    inits: list[tuple[FunctionConfig, Any, Any]] = []

    class Warmer(Plugin):
        @hookimpl
        def on_init(self, config: FunctionConfig, bridge: Any) -> None:
            # The bridge has started: its handler is loaded and callable already.
            inits.append((config, bridge, bridge.handler({"warm": True}, None)))

    pipeline = function.start(Warmer("warmer"))
    function.invoke(pipeline, {"n": 1})
    function.invoke(pipeline, {"n": 2})

    [(config, bridge, warm_answer)] = inits
    assert config is function.config
    assert bridge is pipeline.bridge
    assert bridge.language == "python"
    assert warm_answer == {"handled": {"warm": True}}


def test_plugin_raising_in_on_init_fails_start(function: Function) -> None:
    class License(Plugin):
        @hookimpl
        def on_init(self) -> None:
            raise PermissionError("license expired")

    with pytest.raises(FunctionError) as raised:
        function.start(License("license"))

    assert raised.value.error_type == "Runtime.PluginError"
    assert "on_init" in raised.value.message
    assert "PermissionError: license expired" in raised.value.message


@pytest.mark.parametrize("marker", [{"wrapper": True}, {"hookwrapper": True}])
def test_wrapper_before_event_is_rejected_at_load(
    function: Function, marker: dict[str, bool]
) -> None:
    class Wrapping(Plugin):
        @hookimpl(**marker)
        def before_event(self, event: Any) -> Any:
            return (yield)

    with pytest.raises(FunctionError) as raised:
        function.start(Wrapping("wrapping"))

    assert raised.value.error_type == "Runtime.PluginError"
    assert "'wrapping'" in raised.value.message
    assert "before_event cannot be a wrapper" in raised.value.message


# -- on_timeout ----------------------------------------------------------------------------


def test_on_timeout_runs_before_on_expiry_and_invoke_raises_the_timeout(
    function: Function,
) -> None:
    lock = threading.Lock()
    happened: list[tuple[Any, ...]] = []
    started = time.monotonic()

    class LastWords(Plugin):
        @hookimpl
        def on_timeout(self, event: Any, context: Context) -> None:
            with lock:
                happened.append(
                    ("on_timeout", event, context, threading.current_thread(), time.monotonic())
                )

    def on_expiry(error: FunctionError, context: Context) -> None:
        with lock:
            happened.append(("on_expiry", error, context))

    pipeline = function.start(LastWords("last-words"), on_expiry=on_expiry)
    context = function.context(int(time.time() * 1000) + 300, request_id="req-slow")

    with pytest.raises(FunctionError) as raised:
        pipeline.invoke(json.dumps({"sleep": 1}).encode(), context)
    finished = time.monotonic()

    assert [entry[0] for entry in happened] == ["on_timeout", "on_expiry"]
    _, event, hook_context, thread, fired_at = happened[0]
    assert event == {"sleep": 1}
    assert hook_context is context
    assert thread is not threading.main_thread()
    assert fired_at - started < 0.8 < finished - started  # while the handler still slept
    _, expiry_error, expiry_context = happened[1]
    assert expiry_context is context
    assert expiry_error.error_type == "Sandbox.Timedout"
    assert "req-slow Task timed out after" in expiry_error.message
    assert raised.value.error_type == "Sandbox.Timedout"
    assert "Task timed out after" in raised.value.message


def test_fast_invocation_with_a_deadline_does_not_time_out(function: Function) -> None:
    timeouts: list[Any] = []

    class LastWords(Plugin):
        @hookimpl
        def on_timeout(self, event: Any) -> None:
            timeouts.append(event)

    expired: list[FunctionError] = []
    pipeline = function.start(LastWords("last-words"), on_expiry=lambda e, c: expired.append(e))
    context = function.context(int(time.time() * 1000) + 300)

    assert function.invoke(pipeline, {"quick": True}, context) == {"handled": {"quick": True}}
    time.sleep(0.5)  # well past the deadline: a watchdog left armed would have fired

    assert timeouts == []
    assert expired == []


# -- telemetry seams -------------------------------------------------------------------------


def test_context_steps_record_the_bridge_call_for_telemetry_plugins(function: Function) -> None:
    seen: dict[str, Any] = {}

    class Telemetry(Plugin):
        @hookimpl
        def after_response(self, context: Context) -> None:
            seen["ok"] = list(context.steps)

        @hookimpl
        def on_error(self, context: Context) -> None:
            seen["failed"] = list(context.steps)

    pipeline = function.start(Telemetry("telemetry"))
    before = time.time_ns()
    function.invoke(pipeline, {"x": 1})
    [step] = seen["ok"]
    assert step.name == "bridge:python"
    assert before <= step.start_ns <= step.end_ns <= time.time_ns()
    assert step.error is None

    function.invoke_error(pipeline, {"raise": "boom"})
    [failed] = seen["failed"]
    assert (failed.name, failed.error) == ("bridge:python", "ValueError")


def test_the_watchdog_wakes_for_a_deadline_earlier_than_the_one_it_sleeps_until() -> None:
    from ort_core.deadline import Watchdog

    watchdog = Watchdog()
    fired = threading.Event()
    watchdog.arm(300, lambda: None)
    time.sleep(0.05)  # its thread now sleeps until 300 s from now
    assert watchdog.disarm()
    watchdog.arm(0.05, fired.set)
    assert fired.wait(5), "the earlier deadline was missed"
    assert not watchdog.disarm()
