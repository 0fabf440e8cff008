"""The ort-python plugin's in-process bridge, driven through ORT's public entry point.

Every test starts a function (with ORT's testing kit, ``ort_function``, or
``start_function``) and invokes it through the pipeline, so what is asserted is what a
function's caller sees: response bytes or Lambda's error. In-process imports are cached in
``sys.modules``, so each test uses its own module names.
"""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ort_core import Context, FunctionConfig, FunctionError
from ort_core.pipeline import Pipeline
from ort_core.startup import start_function

ENVIRON = {"ORT_PLUGINS": "ort-python"}
PLUGINS = ["ort-python"]  # for the testing kit: nothing else loads


def unique(prefix: str) -> str:
    """A module name no other test (or installed package) uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


class Function:
    """A task root in tmp_path: write handler files, start them, invoke them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pipelines: list[Pipeline] = []

    def write(self, name: str, source: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
        return path

    def config(self, handler: str, language: str | None = None) -> FunctionConfig:
        return FunctionConfig(
            handler=handler, task_root=str(self.root), language=language, function_name="fn"
        )

    def start(self, handler: str, language: str | None = None) -> Pipeline:
        pipeline = start_function(self.config(handler, language), environ=ENVIRON)
        self.pipelines.append(pipeline)
        return pipeline

    def start_error(self, handler: str, language: str | None = None) -> FunctionError:
        with pytest.raises(FunctionError) as raised:
            self.start(handler, language)
        return raised.value

    @staticmethod
    def invoke(pipeline: Pipeline, event: object, request_id: str = "req-1") -> bytes:
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        return pipeline.invoke(body, Context(request_id, 0, pipeline.bridge.config))

    @staticmethod
    def invoke_error(pipeline: Pipeline, event: object) -> FunctionError:
        with pytest.raises(FunctionError) as raised:
            Function.invoke(pipeline, event)
        return raised.value


def _under(module: object, root: str) -> bool:
    paths = [getattr(module, "__file__", None) or "", *list(getattr(module, "__path__", []) or [])]
    return any(str(path).startswith(root) for path in paths)


@pytest.fixture
def function(tmp_path: Path) -> Iterator[Function]:
    """A fresh task root; undoes what the in-process bridge leaves in the interpreter."""
    root = str(tmp_path)
    fn = Function(tmp_path)
    yield fn
    for pipeline in fn.pipelines:
        pipeline.bridge.stop()
    asyncio.set_event_loop(None)  # the bridge installs its loop as the thread's loop
    while root in sys.path:
        sys.path.remove(root)
    for name, module in list(sys.modules.items()):
        if _under(module, root):
            del sys.modules[name]


def assert_only_user_frames(error: FunctionError, user_file: Path) -> None:
    assert error.stack_trace, "the user's frames are missing from the stack trace"
    trace = "".join(error.stack_trace)
    for frame in error.stack_trace:
        assert str(user_file) in frame, f"a frame that is not the user's: {frame!r}"
    for internal in ("in_process.py", "pipeline.py", "asyncio", "importlib"):
        assert internal not in trace


# -- Handlers that answer ------------------------------------------------------------------


def test_sync_handler_answer_is_json_bytes(ort_function) -> None:
    module = unique("sync")
    source = """
        def handler(event, context):
            return {"echo": event, "request": context.aws_request_id, "fn": context.function_name}
    """
    function = ort_function(
        {f"{module}.py": source},
        handler=f"{module}.handler",
        plugins=PLUGINS,
        env={"AWS_LAMBDA_FUNCTION_NAME": "fn"},
    )

    answer = function.invoke({"a": [1, "two"]}, request_id="req-42")

    assert isinstance(answer.body, bytes)
    assert answer.json() == {"echo": {"a": [1, "two"]}, "request": "req-42", "fn": "fn"}


def test_async_handler_is_awaited(ort_function) -> None:
    module = unique("async")
    source = """
        import asyncio

        async def handler(event, context):
            await asyncio.sleep(0.01)
            return {"awaited": event["n"] * 2}
    """
    function = ort_function({f"{module}.py": source}, handler=f"{module}.handler", plugins=PLUGINS)

    assert function.invoke({"n": 21}).json() == {"awaited": 42}


def test_async_handler_keeps_one_event_loop_across_invocations(function: Function) -> None:
    # The first invocation leaves a future and a task on the loop; the second awaits that
    # future, which only works (and only completes) on the same, still-open loop.
    module = unique("asyncstate")
    function.write(
        f"{module}.py",
        """
        import asyncio

        state = {}

        async def fill(future):
            await asyncio.sleep(0)
            future.set_result("filled by a task from the first invocation")

        async def handler(event, context):
            loop = asyncio.get_running_loop()
            if "future" not in state:
                state["loop"] = loop
                state["future"] = loop.create_future()
                state["task"] = asyncio.ensure_future(fill(state["future"]))
                return {"first": True}
            value = await asyncio.wait_for(state["future"], 1)
            return {"same_loop": state["loop"] is loop, "value": value}
        """,
    )
    pipeline = function.start(f"{module}.handler")

    assert json.loads(function.invoke(pipeline, {})) == {"first": True}
    assert json.loads(function.invoke(pipeline, {})) == {
        "same_loop": True,
        "value": "filled by a task from the first invocation",
    }


def test_handler_in_a_folder_with_slash_form(ort_function) -> None:
    folder, module = unique("dir"), unique("mod")
    function = ort_function(
        {f"{folder}/{module}.py": "def handler(event, context):\n    return {'where': __name__}\n"},
        handler=f"{folder}/{module}.handler",
        plugins=PLUGINS,
    )

    assert function.invoke({}).json() == {"where": f"{folder}.{module}"}


def test_handler_in_a_package_with_dotted_form(function: Function) -> None:
    package, module = unique("pkg"), unique("mod")
    function.write(f"{package}/__init__.py", "")
    function.write(
        f"{package}/{module}.py",
        """
        def handler(event, context):
            return {"where": __name__}
        """,
    )
    pipeline = function.start(f"{package}.{module}.handler")

    assert json.loads(function.invoke(pipeline, {})) == {"where": f"{package}.{module}"}


# -- Handlers that raise -------------------------------------------------------------------


def test_sync_handler_error_has_class_name_message_and_only_user_frames(
    function: Function,
) -> None:
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
    pipeline = function.start(f"{module}.handler")

    error = function.invoke_error(pipeline, {"x": 7})

    assert error.error_type == "ValueError"
    assert error.message == "bad input: 7"
    assert_only_user_frames(error, user_file)
    assert "in handler" in error.stack_trace[0]
    assert "in check" in error.stack_trace[-1]
    assert error.to_dict("req-1") == {
        "errorMessage": "bad input: 7",
        "errorType": "ValueError",
        "requestId": "req-1",
        "stackTrace": error.stack_trace,
    }


def test_async_handler_error_has_only_user_frames(function: Function) -> None:
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
    pipeline = function.start(f"{module}.handler")

    error = function.invoke_error(pipeline, {})

    assert error.error_type == "OrderRejected"
    assert error.message == "out of stock"
    assert_only_user_frames(error, user_file)
    assert "in handler" in error.stack_trace[-1]


def test_handler_error_then_next_invocation_succeeds(ort_function) -> None:
    module = unique("flaky")
    source = """
        def handler(event, context):
            if event.get("fail"):
                raise KeyError("missing")
            return "ok"
    """
    function = ort_function({f"{module}.py": source}, handler=f"{module}.handler", plugins=PLUGINS)

    failed = function.invoke({"fail": True}, request_id="req-flaky")
    assert failed.error_json == {
        "errorMessage": "'missing'",
        "errorType": "KeyError",
        "requestId": "req-flaky",
        "stackTrace": failed.error.stack_trace,
    }
    assert function.invoke({}).body == b'"ok"'


def test_a_cloudevent_and_an_http_request_reach_the_handler(ort_function) -> None:
    module = unique("shapes")
    source = """
        def handler(event, context):
            if hasattr(event, "get_data"):  # the cloudevents SDK's object
                return {"type": event.get_type(), "data": event.get_data()}
            return {"statusCode": 201, "body": event["path"] + " " + event["body"]}
    """
    function = ort_function({f"{module}.py": source}, handler=f"{module}.handler", plugins=PLUGINS)

    event = function.cloudevent({"order": 7}, type="com.example.order")
    response = function.http("POST", "/orders", body="seven")

    assert event.json() == {"type": "com.example.order", "data": {"order": 7}}
    assert (response.status, response.body) == (201, b"/orders seven")


# -- Init errors ---------------------------------------------------------------------------


def test_handler_without_a_dot_is_malformed(function: Function) -> None:
    error = function.start_error("nodot", language="python")

    assert error.error_type == "Runtime.MalformedHandlerName"
    assert "Bad handler 'nodot'" in error.message


def test_missing_module_is_an_import_error(function: Function) -> None:
    module = unique("missing")

    error = function.start_error(f"{module}.handler", language="python")

    assert error.error_type == "Runtime.ImportModuleError"
    assert f"Unable to import module '{module}'" in error.message
    assert f"No module named '{module}'" in error.message


def test_module_importing_a_missing_package_names_that_package(function: Function) -> None:
    module, package = unique("needsdep"), unique("notinstalled")
    function.write(
        f"{module}.py",
        f"""
        import {package}

        def handler(event, context):
            return None
        """,
    )

    error = function.start_error(f"{module}.handler")

    assert error.error_type == "Runtime.ImportModuleError"
    assert f"Unable to import module '{module}'" in error.message
    assert f"No module named '{package}'" in error.message


def test_syntax_error_in_handler_module(function: Function) -> None:
    module = unique("syntax")
    user_file = function.write(
        f"{module}.py",
        """
        def handler(event, context)
            return 1
        """,
    )

    error = function.start_error(f"{module}.handler")

    assert error.error_type == "Runtime.UserCodeSyntaxError"
    assert f"Syntax error in module '{module}'" in error.message
    assert str(user_file) in "".join(error.stack_trace)
    assert "Line 2" in "".join(error.stack_trace)


def test_exception_at_import_is_reported_with_its_class_and_user_frames(
    function: Function,
) -> None:
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

    error = function.start_error(f"{module}.handler")

    assert error.error_type == "RuntimeError"
    assert error.message == "DATABASE_URL is not set"
    assert_only_user_frames(error, user_file)
    assert "in <module>" in error.stack_trace[0]
    assert "in load_settings" in error.stack_trace[-1]


def test_missing_function_is_handler_not_found(function: Function) -> None:
    module = unique("nohandler")
    function.write(f"{module}.py", "def other(event, context):\n    return 1\n")

    error = function.start_error(f"{module}.handler")

    assert error.error_type == "Runtime.HandlerNotFound"
    assert error.message == f"Handler 'handler' missing on module '{module}'"


def test_non_callable_attribute_is_handler_not_found(function: Function) -> None:
    module = unique("notcallable")
    function.write(f"{module}.py", "handler = 42\n")

    error = function.start_error(f"{module}.handler")

    assert error.error_type == "Runtime.HandlerNotFound"
    assert "'handler'" in error.message
    assert "not callable" in error.message


def test_built_in_module_name_conflicts(function: Function) -> None:
    error = function.start_error("sys.handler", language="python")

    assert error.error_type == "Runtime.BuiltInModuleConflict"
    assert "sys" in error.message


def test_without_a_language_a_standard_library_name_is_not_claimed(function: Function) -> None:
    error = function.start_error("json.handler")

    assert error.error_type == "Runtime.ImportModuleError"
    assert "no plugin found handler 'json.handler'" in error.message


# -- Which handlers the plugin claims ------------------------------------------------------


def test_without_a_language_an_absent_handler_file_is_not_claimed(function: Function) -> None:
    module = unique("absent")

    error = function.start_error(f"{module}.handler", language=None)

    assert error.error_type == "Runtime.ImportModuleError"
    assert "no plugin found handler" in error.message
    assert f"'{module}.handler'" in error.message


def test_another_language_is_declined_even_with_a_python_file(function: Function) -> None:
    module = unique("nodejs")
    function.write(f"{module}.py", "def handler(event, context):\n    return 1\n")

    error = function.start_error(f"{module}.handler", language="node")

    assert error.error_type == "Runtime.ImportModuleError"
    assert "no plugin found handler" in error.message
    assert "for node" in error.message


def test_python_language_claims_even_an_absent_handler(function: Function) -> None:
    module = unique("absentpy")

    error = function.start_error(f"{module}.handler", language="python")

    # The plugin claimed it and reported its own import error, not the core's "no plugin".
    assert error.error_type == "Runtime.ImportModuleError"
    assert "no plugin found handler" not in error.message
    assert f"No module named '{module}'" in error.message


def test_python_language_runs_a_present_handler(function: Function) -> None:
    module = unique("claimed")
    function.write(f"{module}.py", "def handler(event, context):\n    return 'claimed'\n")

    pipeline = function.start(f"{module}.handler", language="python")

    assert pipeline.bridge.language == "python"
    assert function.invoke(pipeline, {}) == b'"claimed"'


# -- Encoding and decoding -----------------------------------------------------------------

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
        return {"calls": len(calls)}
    """


@pytest.fixture
def marshal_pipeline(function: Function) -> Pipeline:
    module = unique("marshal")
    function.write(f"{module}.py", MARSHAL_HANDLER)
    return function.start(f"{module}.handler")


def test_unserialisable_response_is_a_marshal_error_then_recovers(
    function: Function, marshal_pipeline: Pipeline
) -> None:
    error = function.invoke_error(marshal_pipeline, {"kind": "set"})

    assert error.error_type == "Runtime.MarshalError"
    assert "Unable to marshal response" in error.message
    assert "set" in error.message
    assert json.loads(function.invoke(marshal_pipeline, {})) == {"calls": 2}


def test_bytes_response_passes_unchanged(function: Function, marshal_pipeline: Pipeline) -> None:
    assert function.invoke(marshal_pipeline, {"kind": "bytes"}) == b"\x00raw, not JSON\xff"


def test_decimals_encode_as_numbers(function: Function, marshal_pipeline: Pipeline) -> None:
    answer = function.invoke(marshal_pipeline, {"kind": "decimal"})

    assert answer == b'{"price": 1.5, "count": 3, "nested": [-2]}'


def test_body_that_is_not_json_is_an_unmarshal_error_then_recovers(
    function: Function, marshal_pipeline: Pipeline
) -> None:
    error = function.invoke_error(marshal_pipeline, b"{not json")

    assert error.error_type == "Runtime.UnmarshalError"
    assert "Unable to unmarshal input" in error.message
    # The handler never saw the broken body: the next call is its first.
    assert json.loads(function.invoke(marshal_pipeline, {})) == {"calls": 1}
