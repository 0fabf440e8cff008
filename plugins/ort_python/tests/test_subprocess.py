"""The ort-python plugin's subprocess mode (``ORT_PYTHON_MODE=subprocess``), with real workers.

The tests that run in both modes show they behave the same: same answers, same error types,
messages and stacks. The others are the subprocess mode's own: another process, another
interpreter, a persistent worker that restarts after it dies, big payloads, a log that
cannot be mistaken for the channel, and no worker left behind.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from ort_python.in_process import InProcessBridge

from ort_core import Context, FunctionConfig, FunctionError
from ort_core.context import ClientContext, CognitoIdentity
from ort_core.pipeline import Pipeline
from ort_core.startup import start_function
from ort_core.workers.bridge import WorkerBridge

ROOT = Path(__file__).resolve().parents[3]
ENVIRON = {"ORT_PLUGINS": "ort-python"}
MODES = ("in-process", "subprocess")


def unique(prefix: str) -> str:
    """A module name no other test (or installed package) uses: in-process imports stay."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


class Function:
    """A task root in tmp_path: write handler files, start them in a mode, invoke them."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.monkeypatch = monkeypatch
        self.pipelines: list[Pipeline] = []
        self.signature = "raw"  # Lambda's own events, unless a test asks for CloudEvents

    def write(self, name: str, source: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
        return path

    def config(self, handler: str, language: str | None = None) -> FunctionConfig:
        return FunctionConfig(
            handler=handler,
            task_root=str(self.root),
            language=language,
            function_name="fn",
            function_version="$LATEST",
            memory_limit_in_mb="128",
            log_group_name="/aws/lambda/fn",
            log_stream_name="2026/01/01/[$LATEST]abc",
            signature=self.signature,
        )

    def start(self, handler: str, mode: str | None, language: str | None = None) -> Pipeline:
        """Start in ``mode`` (``ORT_PYTHON_MODE``; None: unset)."""
        if mode is None:
            self.monkeypatch.delenv("ORT_PYTHON_MODE", raising=False)
        else:
            self.monkeypatch.setenv("ORT_PYTHON_MODE", mode)
        pipeline = start_function(self.config(handler, language), environ=ENVIRON)
        self.pipelines.append(pipeline)
        return pipeline

    def start_error(self, handler: str, mode: str, language: str | None = None) -> FunctionError:
        with pytest.raises(FunctionError) as raised:
            self.start(handler, mode, language)
        return raised.value

    @staticmethod
    def invoke(
        pipeline: Pipeline, event: object, request_id: str = "req-1", **context: object
    ) -> bytes:
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        return pipeline.invoke(body, Context(request_id, 0, pipeline.bridge.config, **context))

    @staticmethod
    def invoke_error(pipeline: Pipeline, event: object) -> FunctionError:
        with pytest.raises(FunctionError) as raised:
            Function.invoke(pipeline, event)
        return raised.value


def _under(module: object, root: str) -> bool:
    paths = [getattr(module, "__file__", None) or "", *list(getattr(module, "__path__", []) or [])]
    return any(str(path).startswith(root) for path in paths)


@pytest.fixture
def function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Function]:
    """A fresh task root; stops every worker and undoes what in-process leaves behind."""
    monkeypatch.delenv("ORT_PYTHON_BINARY", raising=False)
    root = str(tmp_path)
    fn = Function(tmp_path, monkeypatch)
    yield fn
    for pipeline in fn.pipelines:
        pipeline.close()
    asyncio.set_event_loop(None)
    while root in sys.path:
        sys.path.remove(root)
    for name, module in list(sys.modules.items()):
        if _under(module, root):
            del sys.modules[name]


def in_both_modes(function: Function, handler: str, event: object) -> dict[str, bytes]:
    """The answer to one event from a fresh start in each mode."""
    return {mode: function.invoke(function.start(handler, mode), event) for mode in MODES}


def errors_in_both_modes(function: Function, handler: str, event: object) -> list[FunctionError]:
    return [function.invoke_error(function.start(handler, mode), event) for mode in MODES]


def init_errors_in_both_modes(
    function: Function, handler: str, language: str | None = None
) -> list[FunctionError]:
    return [function.start_error(handler, mode, language) for mode in MODES]


def assert_same(errors: list[FunctionError]) -> FunctionError:
    """Both modes' errors have the same type, message and stack; returns one of them."""
    first, second = errors
    assert (first.error_type, first.message, first.stack_trace) == (
        second.error_type,
        second.message,
        second.stack_trace,
    )
    return first


def assert_only_user_frames(error: FunctionError, user_file: Path) -> None:
    assert error.stack_trace, "the user's frames are missing from the stack trace"
    trace = "".join(error.stack_trace)
    for frame in error.stack_trace:
        assert str(user_file) in frame, f"a frame that is not the user's: {frame!r}"
    for internal in ("worker.py", "loading.py", "in_process.py", "pipeline.py", "asyncio"):
        assert internal not in trace
    assert "importlib" not in trace


# -- Choosing the mode -----------------------------------------------------------------------


def test_in_process_is_the_default_and_subprocess_a_worker(function: Function) -> None:
    module = unique("which")
    function.write(f"{module}.py", "def handler(event, context):\n    return 1\n")
    assert isinstance(function.start(f"{module}.handler", None).bridge, InProcessBridge)
    assert isinstance(function.start(f"{module}.handler", "").bridge, InProcessBridge)
    assert isinstance(function.start(f"{module}.handler", "in-process").bridge, InProcessBridge)
    bridge = function.start(f"{module}.handler", "subprocess").bridge
    assert isinstance(bridge, WorkerBridge)
    assert bridge.language == "python"


def test_an_unknown_mode_is_an_init_error_naming_the_modes(function: Function) -> None:
    module = unique("badmode")
    function.write(f"{module}.py", "def handler(event, context):\n    return 1\n")

    error = function.start_error(f"{module}.handler", "threads")

    assert error.error_type == "Runtime.InvalidEntrypoint"
    assert "ORT_PYTHON_MODE='threads'" in error.message
    assert "'in-process'" in error.message
    assert "'subprocess'" in error.message


# -- Both modes answer the same --------------------------------------------------------------


def test_hello_example_answers_the_same(function: Function) -> None:
    function.signature = "cloudevent"  # the example takes ORT's default signature
    module = unique("hello")
    function.write(f"{module}.py", (ROOT / "examples" / "hello" / "app.py").read_text())

    answers = in_both_modes(function, f"{module}.handler", {"name": "ORT"})

    assert answers["in-process"] == answers["subprocess"]
    assert json.loads(answers["subprocess"]) == {
        "message": "Hello, ORT!",
        "requestId": "req-1",
        "function": "fn",
    }


@pytest.mark.parametrize("mode", MODES)
def test_async_handler_is_awaited_on_one_loop_kept_across_invocations(
    function: Function, mode: str
) -> None:
    module = unique("asyncstate")
    function.write(
        f"{module}.py",
        """
        import asyncio

        state = {}

        async def fill(future):
            await asyncio.sleep(0.01)
            future.set_result("filled by a task from the first invocation")

        async def handler(event, context):
            loop = asyncio.get_running_loop()
            if "future" not in state:
                state["loop"] = loop
                state["future"] = loop.create_future()
                state["task"] = asyncio.ensure_future(fill(state["future"]))
                return {"first": event["n"] * 2}
            value = await asyncio.wait_for(state["future"], 1)
            return {"same_loop": state["loop"] is loop, "value": value}
        """,
    )
    pipeline = function.start(f"{module}.handler", mode)

    assert json.loads(function.invoke(pipeline, {"n": 21})) == {"first": 42}
    assert json.loads(function.invoke(pipeline, {})) == {
        "same_loop": True,
        "value": "filled by a task from the first invocation",
    }


@pytest.mark.parametrize("mode", MODES)
def test_module_state_survives_between_invocations(function: Function, mode: str) -> None:
    module = unique("counter")
    function.write(
        f"{module}.py",
        """
        import os

        calls = []

        def handler(event, context):
            calls.append(event)
            return {"calls": len(calls), "pid": os.getpid()}
        """,
    )
    pipeline = function.start(f"{module}.handler", mode)

    answers = [json.loads(function.invoke(pipeline, {"n": n})) for n in range(3)]

    assert [answer["calls"] for answer in answers] == [1, 2, 3]
    assert len({answer["pid"] for answer in answers}) == 1  # one persistent worker


def test_context_has_the_same_attributes_and_types(function: Function) -> None:
    module = unique("context")
    function.write(
        f"{module}.py",
        """
        NAMES = (
            "aws_request_id", "deadline_ms", "invoked_function_arn", "trace_id", "tenant_id",
            "function_name", "function_version", "memory_limit_in_mb", "log_group_name",
            "log_stream_name",
        )
        CLIENT = (
            "app_package_name", "app_title", "app_version_code", "app_version_name",
            "installation_id",
        )

        def describe(value):
            return [type(value).__name__, value]

        def handler(event, context):
            client_context = context.client_context
            return {
                "fields": {name: describe(getattr(context, name)) for name in NAMES},
                "identity": [
                    describe(context.identity.cognito_identity_id),
                    describe(context.identity.cognito_identity_pool_id),
                ],
                "custom": client_context.custom,
                "env": client_context.env,
                "client": {name: getattr(client_context.client, name) for name in CLIENT},
                "remaining": describe(context.get_remaining_time_in_millis()),
            }
        """,
    )
    deadline_ms = int(time.time() * 1000) + 60_000
    raw_client_context = {
        "client": {"installation_id": "inst-1", "app_title": "Shop", "app_version_code": "7"},
        "custom": {"cart": [1, 2]},
        "env": {"locale": "fr_FR"},
    }
    answers = []
    for mode in MODES:
        pipeline = function.start(f"{module}.handler", mode)
        context = Context(
            "req-ctx",
            deadline_ms,
            pipeline.bridge.config,
            invoked_function_arn="arn:aws:lambda:us-east-1:012345678912:function:fn",
            trace_id="Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
            client_context=ClientContext(raw_client_context),
            identity=CognitoIdentity({"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "p"}),
            tenant_id="tenant-9",
        )
        answers.append(json.loads(pipeline.invoke(b"{}", context)))

    for answer in answers:
        kind, remaining = answer.pop("remaining")
        assert kind == "int"
        assert 50_000 < remaining <= 60_000
    in_process, worker = answers
    assert in_process == worker
    assert worker["fields"]["deadline_ms"] == ["int", deadline_ms]
    assert worker["fields"]["memory_limit_in_mb"] == ["str", "128"]
    assert worker["fields"]["tenant_id"] == ["str", "tenant-9"]
    assert worker["identity"] == [["str", "id-1"], ["str", "p"]]
    assert worker["client"]["app_title"] == "Shop"
    assert worker["client"]["app_package_name"] is None
    assert worker["custom"] == {"cart": [1, 2]}


@pytest.mark.parametrize("mode", MODES)
def test_a_handler_module_may_share_a_name_with_the_plugins_modules(
    function: Function, mode: str
) -> None:
    # The worker starts with its own folder on sys.path: it must leave no trace there.
    function.write(
        "loading.py",
        """
        import importlib.util

        def handler(event, context):
            found = [importlib.util.find_spec(name) for name in ("worker", "in_process")]
            return {"module": "user loading", "found": [spec is not None for spec in found]}
        """,
    )
    function.write("plugin.py", "def handler(event, context):\n    return 'user plugin'\n")

    answer = json.loads(function.invoke(function.start("loading.handler", mode), {}))
    assert answer == {"module": "user loading", "found": [False, False]}
    assert function.invoke(function.start("plugin.handler", mode), {}) == b'"user plugin"'
    for name in ("loading", "plugin"):  # in-process imported them as top-level modules
        sys.modules.pop(name, None)


# -- Both modes fail the same ----------------------------------------------------------------


def test_handler_error_is_the_same_with_only_user_frames(function: Function) -> None:
    module = unique("raising")
    user_file = function.write(
        f"{module}.py",
        """
        def check(event):
            raise ValueError(f"bad input: {event['x']}")

        def handler(event, context):
            check(event)
        """,
    )

    error = assert_same(errors_in_both_modes(function, f"{module}.handler", {"x": 7}))

    assert error.error_type == "ValueError"
    assert error.message == "bad input: 7"
    assert_only_user_frames(error, user_file)
    assert "in handler" in error.stack_trace[0]
    assert "in check" in error.stack_trace[-1]


def test_async_handler_error_is_the_same_with_only_user_frames(function: Function) -> None:
    module = unique("asyncraising")
    user_file = function.write(
        f"{module}.py",
        """
        import asyncio

        class OrderRejected(Exception):
            pass

        async def handler(event, context):
            await asyncio.sleep(0)
            raise OrderRejected("out of stock")
        """,
    )

    error = assert_same(errors_in_both_modes(function, f"{module}.handler", {}))

    assert error.error_type == "OrderRejected"
    assert error.message == "out of stock"
    assert_only_user_frames(error, user_file)


@pytest.mark.parametrize("mode", MODES)
def test_handler_error_then_next_invocation_succeeds(function: Function, mode: str) -> None:
    module = unique("flaky")
    function.write(
        f"{module}.py",
        """
        def handler(event, context):
            if event.get("fail"):
                raise KeyError("missing")
            return "ok"
        """,
    )
    pipeline = function.start(f"{module}.handler", mode)

    assert function.invoke_error(pipeline, {"fail": True}).error_type == "KeyError"
    assert function.invoke(pipeline, {}) == b'"ok"'


def test_malformed_handler_name(function: Function) -> None:
    error = assert_same(init_errors_in_both_modes(function, "nodot", language="python"))

    assert error.error_type == "Runtime.MalformedHandlerName"
    assert "Bad handler 'nodot'" in error.message


def test_built_in_module_conflict(function: Function) -> None:
    error = assert_same(init_errors_in_both_modes(function, "sys.handler", language="python"))

    assert error.error_type == "Runtime.BuiltInModuleConflict"
    assert error.message == "Cannot use built-in module sys as a handler module"


def test_missing_module_is_an_import_error(function: Function) -> None:
    module = unique("missing")

    error = assert_same(init_errors_in_both_modes(function, f"{module}.h", language="python"))

    assert error.error_type == "Runtime.ImportModuleError"
    assert error.message == f"Unable to import module '{module}': No module named '{module}'"


def test_missing_dependency_is_an_import_error_naming_it(function: Function) -> None:
    module, package = unique("needsdep"), unique("notinstalled")
    function.write(f"{module}.py", f"import {package}\n\ndef handler(event, context):\n    pass\n")

    error = assert_same(init_errors_in_both_modes(function, f"{module}.handler"))

    assert error.error_type == "Runtime.ImportModuleError"
    assert error.message == f"Unable to import module '{module}': No module named '{package}'"


def test_syntax_error_in_handler_module(function: Function) -> None:
    module = unique("syntax")
    user_file = function.write(f"{module}.py", "def handler(event, context)\n    return 1\n")

    error = assert_same(init_errors_in_both_modes(function, f"{module}.handler"))

    assert error.error_type == "Runtime.UserCodeSyntaxError"
    assert error.message.startswith(f"Syntax error in module '{module}': ")
    assert f'File "{user_file}" Line 1' in "".join(error.stack_trace)


def test_exception_at_import_has_its_class_and_user_frames(function: Function) -> None:
    module = unique("importboom")
    user_file = function.write(
        f"{module}.py",
        """
        def load_settings():
            raise RuntimeError("DATABASE_URL is not set")

        SETTINGS = load_settings()

        def handler(event, context):
            return SETTINGS
        """,
    )

    error = assert_same(init_errors_in_both_modes(function, f"{module}.handler"))

    assert error.error_type == "RuntimeError"
    assert error.message == "DATABASE_URL is not set"
    assert_only_user_frames(error, user_file)
    assert "in <module>" in error.stack_trace[0]
    assert "in load_settings" in error.stack_trace[-1]


def test_missing_function_is_handler_not_found(function: Function) -> None:
    module = unique("nohandler")
    function.write(f"{module}.py", "def other(event, context):\n    return 1\n")

    error = assert_same(init_errors_in_both_modes(function, f"{module}.handler"))

    assert error.error_type == "Runtime.HandlerNotFound"
    assert error.message == f"Handler 'handler' missing on module '{module}'"


def test_non_callable_attribute_is_handler_not_found(function: Function) -> None:
    module = unique("notcallable")
    function.write(f"{module}.py", "handler = 42\n")

    error = assert_same(init_errors_in_both_modes(function, f"{module}.handler"))

    assert error.error_type == "Runtime.HandlerNotFound"
    assert error.message == f"Handler 'handler' on module '{module}' is not callable"


# -- Encoding the answer the same ------------------------------------------------------------

MARSHAL_HANDLER = """
    from decimal import Decimal

    calls = []

    def handler(event, context):
        calls.append(event)
        kind = event.get("kind")
        if kind == "set":
            return {1, 2}
        if kind == "bytes":
            return b"\\x00raw, not JSON\\xff"
        if kind == "decimal":
            return {"price": Decimal("1.50"), "count": Decimal("3"), "nested": [Decimal("-2")]}
        if kind == "none":
            return None
        return {"calls": len(calls)}
    """


@pytest.fixture(params=MODES)
def marshal_pipeline(request: pytest.FixtureRequest, function: Function) -> Pipeline:
    module = unique("marshal")
    function.write(f"{module}.py", MARSHAL_HANDLER)
    return function.start(f"{module}.handler", request.param)


def test_unserialisable_answer_is_a_marshal_error_then_recovers(
    marshal_pipeline: Pipeline,
) -> None:
    error = Function.invoke_error(marshal_pipeline, {"kind": "set"})

    assert error.error_type == "Runtime.MarshalError"
    assert (
        error.message == "Unable to marshal response: Object of type set is not JSON serializable"
    )
    assert json.loads(Function.invoke(marshal_pipeline, {})) == {"calls": 2}


def test_decimals_encode_as_numbers(marshal_pipeline: Pipeline) -> None:
    answer = Function.invoke(marshal_pipeline, {"kind": "decimal"})

    assert answer == b'{"price": 1.5, "count": 3, "nested": [-2]}'


def test_bytes_answer_passes_unchanged(marshal_pipeline: Pipeline) -> None:
    assert Function.invoke(marshal_pipeline, {"kind": "bytes"}) == b"\x00raw, not JSON\xff"


def test_none_answer_is_null(marshal_pipeline: Pipeline) -> None:
    assert Function.invoke(marshal_pipeline, {"kind": "none"}) == b"null"


def test_body_that_is_not_json_is_an_unmarshal_error(marshal_pipeline: Pipeline) -> None:
    error = Function.invoke_error(marshal_pipeline, b"{not json")

    assert error.error_type == "Runtime.UnmarshalError"
    assert json.loads(Function.invoke(marshal_pipeline, {})) == {"calls": 1}


@pytest.mark.parametrize("mode", MODES)
def test_five_megabyte_event_and_answer_pass_byte_exact(function: Function, mode: str) -> None:
    module = unique("big")
    function.write(
        f"{module}.py",
        """
        import hashlib

        def handler(event, context):
            data = event["data"]
            return {
                "sha256": hashlib.sha256(data.encode()).hexdigest(),
                "answer": data[::-1],
            }
        """,
    )
    # Quotes, backslashes, control and non-ASCII characters: JSON escapes them all.
    piece = 'abc"\\\n\t\x01é€😀' + "x" * 90
    data = (piece * (5 * 1024 * 1024 // len(piece) + 1))[: 5 * 1024 * 1024]
    pipeline = function.start(f"{module}.handler", mode)

    answer = function.invoke(pipeline, {"data": data})

    import hashlib

    expected = {"sha256": hashlib.sha256(data.encode()).hexdigest(), "answer": data[::-1]}
    assert answer == json.dumps(expected).encode()
    assert len(answer) > 5 * 1024 * 1024


# -- The subprocess mode's own ---------------------------------------------------------------


PID_HANDLER = """
import os
import sys

calls = []

def handler(event, context):
    calls.append(1)
    if event.get("exit") is not None:
        os._exit(event["exit"])
    return {
        "pid": os.getpid(),
        "calls": len(calls),
        "executable": sys.executable,
        "prefix": sys.prefix,
        "ort_core_file": getattr(sys.modules.get("ort_core"), "__file__", None),
    }
"""


@pytest.fixture
def worker_pipeline(function: Function) -> Pipeline:
    function.write("app.py", PID_HANDLER)
    return function.start("app.handler", "subprocess")


def test_handler_runs_in_another_process(function: Function, worker_pipeline: Pipeline) -> None:
    answer = json.loads(function.invoke(worker_pipeline, {}))

    assert answer["pid"] != os.getpid()
    assert answer["pid"] == worker_pipeline.bridge.worker.process.pid
    assert answer["executable"] == sys.executable
    assert answer["ort_core_file"] is None  # the worker never imports ORT


def test_worker_that_exits_fails_the_invocation_and_the_next_gets_a_fresh_worker(
    function: Function, worker_pipeline: Pipeline
) -> None:
    first = json.loads(function.invoke(worker_pipeline, {}))

    error = function.invoke_error(worker_pipeline, {"exit": 3})

    assert error.error_type == "Runtime.ExitError"
    assert "exit status 3" in error.message
    assert not os.path.exists(f"/proc/{first['pid']}")
    after = json.loads(function.invoke(worker_pipeline, {}))
    assert after["pid"] != first["pid"]
    assert after["calls"] == 1  # a fresh interpreter: the module was imported again


def test_worker_is_gone_after_close(function: Function, worker_pipeline: Pipeline) -> None:
    pid = json.loads(function.invoke(worker_pipeline, {}))["pid"]
    process = worker_pipeline.bridge.worker.process
    assert os.path.exists(f"/proc/{pid}")

    worker_pipeline.close()

    assert process.poll() is not None  # exited and reaped
    assert not os.path.exists(f"/proc/{pid}")
    assert worker_pipeline.bridge.worker is None


def test_another_interpreter_without_ort_runs_the_worker(
    function: Function, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    function.write("app.py", PID_HANDLER)
    # A bare venv: the standard library only, neither ort_core nor pluggy; and no PYTHONPATH
    # that could lead the worker to them.
    monkeypatch.delenv("PYTHONPATH", raising=False)
    venv = tmp_path / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    probe = "import importlib.util as u; print(u.find_spec('ort_core'), u.find_spec('pluggy'))"
    check = subprocess.run(
        [str(python), "-c", probe],
        cwd=venv,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        check=True,
    )
    assert check.stdout.split() == ["None", "None"]
    monkeypatch.setenv("ORT_PYTHON_BINARY", str(python))
    pipeline = function.start("app.handler", "subprocess")

    answer = json.loads(function.invoke(pipeline, {}))

    assert answer["executable"] == str(python)
    assert answer["prefix"] == str(venv)


def test_a_missing_interpreter_is_an_init_error(
    function: Function, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    function.write("app.py", PID_HANDLER)
    monkeypatch.setenv("ORT_PYTHON_BINARY", str(tmp_path / "no-such-python"))

    error = function.start_error("app.handler", "subprocess")

    assert error.error_type == "Runtime.InvalidEntrypoint"
    assert "no-such-python" in error.message


def test_prints_that_look_like_frames_and_a_megabyte_of_log_leave_the_answer_exact(
    function: Function,
) -> None:
    function.write(
        "noisy.py",
        """
        import json
        import sys

        def frame(header, body=b""):
            head = json.dumps(header).encode()
            return len(head).to_bytes(4, "big") + head + len(body).to_bytes(4, "big") + body

        def handler(event, context):
            fake = frame({"type": "result", "id": context.aws_request_id, "ok": True}, b'"fake"')
            sys.stdout.buffer.write(fake)
            sys.stdout.flush()
            sys.stderr.buffer.write(frame({"type": "ready"}) + fake)
            sys.stderr.flush()
            for n in range(1024):
                print(f"{n:04d} " + "x" * 1019)  # 1 KiB a line, 1 MiB in all
            print(json.dumps({"type": "result", "ok": False}))
            return {"real": "answer", "n": event["n"]}
        """,
    )
    pipeline = function.start("noisy.handler", "subprocess")

    for n in range(2):
        assert function.invoke(pipeline, {"n": n}) == b'{"real": "answer", "n": ' + b"%d}" % n


def test_prints_reach_the_log_while_the_handler_runs(
    function: Function,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The handler prints, then waits until the test has seen that line in ORT's log: only a
    # line-buffered worker stdout lets the invocation finish. PYTHONUNBUFFERED would hide it.
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
    release = tmp_path / "release"
    function.write(
        "waits.py",
        f"""
        import os
        import time

        def handler(event, context):
            print("started " + context.aws_request_id)
            deadline = time.monotonic() + 10
            while not os.path.exists({str(release)!r}):
                if time.monotonic() > deadline:
                    return "the log line never arrived"
                time.sleep(0.01)
            return "released"
        """,
    )
    pipeline = function.start("waits.handler", "subprocess")
    answers: list[bytes] = []
    thread = threading.Thread(target=lambda: answers.append(function.invoke(pipeline, {})))

    with caplog.at_level(logging.INFO, logger="python"):
        thread.start()
        deadline = time.monotonic() + 5
        while "started req-1" not in caplog.messages and time.monotonic() < deadline:
            time.sleep(0.01)
        seen_while_running = "started req-1" in caplog.messages
        release.touch()
        thread.join(timeout=15)

    assert seen_while_running
    assert answers == [b'"released"']


def test_ort_invoke_cli_runs_the_hello_example_in_a_worker(tmp_path: Path) -> None:
    hello = tmp_path / "hello"
    hello.mkdir()
    (hello / "app.py").write_text((ROOT / "examples" / "hello" / "app.py").read_text())
    # A wrapper interpreter that leaves a mark: proof the handler ran in a worker.
    mark = tmp_path / "worker-started"
    wrapper = tmp_path / "python-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$@" > {mark}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "ORT_", "_HANDLER", "LAMBDA_", "_X_AMZN"))
    }
    env.update(
        ORT_PLUGINS="ort-python", ORT_PYTHON_MODE="subprocess", ORT_PYTHON_BINARY=str(wrapper)
    )

    result = subprocess.run(
        [sys.executable, "-m", "ort_core", "invoke", "--handler", "app.handler", "--event", "-"],
        input=b'{"name": "ORT"}',
        cwd=hello,
        env=env,
        capture_output=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr.decode()
    answer = json.loads(result.stdout)
    assert answer["message"] == "Hello, ORT!"
    assert answer["function"] == "function"
    assert mark.read_text().strip().endswith(os.path.join("ort_python", "worker.py"))
