"""Scaleway sub-runtimes (ort_core.languages.scaleway): real Node servers on a free port each.

The sub-runtime is examples/hello-scaleway/server.js, written from Scaleway's contract only,
or a few lines of Node that misbehave on purpose. Every test checks that no process is left.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import PYTHON, clean_environ
from test_emulator import free_port
from test_executable import children, running, wait_until

from ort_core import Context, FunctionConfig, FunctionError
from ort_core.languages import scaleway
from ort_core.languages.scaleway import ScalewayBridge
from ort_core.pipeline import Pipeline
from ort_core.startup import start_function

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "hello-scaleway"
SERVER = EXAMPLE / "server.js"


def node_binary() -> str:
    """node on PATH, else the one ort-node's PyPI wheel brings (as in `make test`)."""
    found = shutil.which("node")
    if found:
        return found
    from ort_node.launch import node_binary as wheel_node

    return wheel_node()


NODE = node_binary()

HANDLER = """
exports.main = async (event, context) => {
  switch (event.action) {
    case 'http':
      return {statusCode: 404, headers: {'X-Kind': 'missing'}, body: 'no such page',
              isBase64Encoded: false};
    case 'text': return 'plain text';
    case 'nothing': return undefined;
    case 'context': return {event, context, pid: process.pid};
    case 'fail': throw new Error('the handler failed on purpose');
    case 'exit': console.error('about to exit'); process.exit(3);
    case 'sleep': await new Promise((resolve) => setTimeout(resolve, 30000)); return 'late';
    default: return {pid: process.pid};
  }
};
"""
# A sub-runtime that shows what ORT sends: the request line, headers and body, as JSON.
ECHO_SERVER = """
require('node:http').createServer((request, response) => {
  const chunks = [];
  request.on('data', (chunk) => chunks.push(chunk));
  request.on('end', () => response.end(JSON.stringify({
    method: request.method, url: request.url, contentType: request.headers['content-type'],
    body: JSON.parse(Buffer.concat(chunks).toString()),
  })));
}).listen(Number(process.env.SCW_UPSTREAM_PORT), '127.0.0.1');
"""


@pytest.fixture(autouse=True)
def no_process_left() -> Iterator[None]:
    before = children(os.getpid())
    yield
    assert wait_until(lambda: children(os.getpid()) <= before), children(os.getpid()) - before


@pytest.fixture
def port(monkeypatch) -> int:
    """A free port for the sub-runtime, and no Scaleway variable but the ones a test sets."""
    for name in list(os.environ):
        if name.startswith("SCW_"):
            monkeypatch.delenv(name)
    chosen = free_port()
    monkeypatch.setenv("SCW_UPSTREAM_PORT", str(chosen))
    return chosen


@pytest.fixture
def node_runtime(port, monkeypatch) -> Callable[[Path], None]:
    """Select ``node <bridge>`` as the sub-runtime (the example server by default)."""

    def select(bridge: Path = SERVER) -> None:
        monkeypatch.setenv("SCW_RUNTIME_BINARY", NODE)
        monkeypatch.setenv("SCW_RUNTIME_BRIDGE", str(bridge))

    select()
    return select


class Function:
    def __init__(self, config: FunctionConfig, pipeline: Pipeline) -> None:
        self.config = config
        self.pipeline = pipeline

    @property
    def bridge(self) -> ScalewayBridge:
        return self.pipeline.bridge  # type: ignore[return-value]

    def invoke(self, event: object, timeout_ms: int = 10_000, request_id: str = "req-1") -> bytes:
        context = Context(request_id, int(time.time() * 1000) + timeout_ms, self.config)
        return self.pipeline.invoke(json.dumps(event).encode(), context)

    def fail(self, event: object, **options) -> FunctionError:
        with pytest.raises(FunctionError) as raised:
            self.invoke(event, **options)
        return raised.value


@pytest.fixture
def function() -> Iterator[Callable[..., Function]]:
    started: list[Function] = []

    def start(folder: Path, handler: str, language: str | None = None, **config) -> Function:
        function_config = FunctionConfig(
            handler=handler, task_root=str(folder), language=language, **config
        )
        started.append(Function(function_config, start_function(function_config, {})))
        return started[-1]

    yield start
    for started_function in started:
        started_function.pipeline.close()


@pytest.fixture
def handler_dir(tmp_path: Path) -> Path:
    (tmp_path / "handler.js").write_text(HANDLER)
    return tmp_path


# -- the example ------------------------------------------------------------------------------


def test_the_example_answers_through_the_pipeline_from_one_process(function, node_runtime):
    hello = function(EXAMPLE, "handler.handle")
    assert hello.bridge.language == "scaleway"
    first = hello.invoke({"name": "ORT"})
    assert first.startswith(b'{"statusCode":200,')  # the sub-runtime's bytes, as they came
    assert json.loads(first) == {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"message": "Hello, ORT!", "memoryLimitInMb": 128}, separators=",:"),
    }
    pid = hello.bridge.process.pid
    assert json.loads(json.loads(hello.invoke({}))["body"])["message"] == "Hello, world!"
    assert hello.bridge.process.pid == pid  # once per sandbox, not per event


def test_the_example_answers_through_ort_invoke(port, tmp_path):
    event = tmp_path / "event.json"
    event.write_text('{"name": "CLI"}')
    result = subprocess.run(
        [PYTHON, "-m", "ort_core", "invoke", "--handler", "handler.handle", "--event", event],
        cwd=ROOT,
        env=clean_environ(
            LAMBDA_TASK_ROOT="examples/hello-scaleway",
            SCW_RUNTIME_BINARY=NODE,
            SCW_RUNTIME_BRIDGE="examples/hello-scaleway/server.js",
            SCW_UPSTREAM_PORT=str(port),
            SCW_APPLICATION_MEMORY="512",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"]) == {"message": "Hello, CLI!", "memoryLimitInMb": 512}
    assert f"listening on 127.0.0.1:{port}" in result.stderr  # its stdout is the log


# -- answers and errors -----------------------------------------------------------------------


def test_answers_pass_through_and_failures_are_sub_runtime_errors(
    function, node_runtime, handler_dir
):
    subject = function(handler_dir, "handler.main")
    assert json.loads(subject.invoke({"action": "http"})) == {
        "statusCode": 404,
        "headers": {"X-Kind": "missing"},
        "body": "no such page",
        "isBase64Encoded": False,
    }
    assert subject.invoke({"action": "text"}) == b'"plain text"'
    assert subject.invoke({"action": "nothing"}) == b"null"  # an empty body

    error = subject.fail({"action": "fail"})
    assert error.error_type == "Runtime.SubRuntimeError"
    assert error.message == (
        "An error occurred during handler execution: HTTP 500: the handler failed on purpose"
    )
    assert "pid" in json.loads(subject.invoke({}))


def test_scaleways_context_and_handler_location_reach_the_handler(
    function, node_runtime, handler_dir, monkeypatch
):
    monkeypatch.setenv("SCW_APPLICATION_NAME", "scw-fn")
    monkeypatch.setenv("SCW_APPLICATION_VERSION", "4")
    subject = function(handler_dir, "handler.main", memory_limit_in_mb="256")
    seen = json.loads(subject.invoke({"action": "context"}))
    assert seen["event"] == {"action": "context"}
    assert seen["context"] == {
        "memoryLimitInMb": 256,
        "functionName": "scw-fn",
        "functionVersion": "4",
    }


def test_the_request_is_scaleways(function, node_runtime, handler_dir, tmp_path, monkeypatch):
    (tmp_path / "echo.js").write_text(ECHO_SERVER)
    node_runtime(tmp_path / "echo.js")
    monkeypatch.setenv("SCW_UPSTREAM_HOST", "http://127.0.0.1")  # as Scaleway's default reads
    subject = function(handler_dir, "handler.main")
    seen = json.loads(subject.invoke({"name": "x"}))
    assert (seen["method"], seen["url"], seen["contentType"]) == ("POST", "/", "application/json")
    assert seen["body"] == {
        "event": {"name": "x"},
        "context": {"memoryLimitInMb": 128, "functionName": "", "functionVersion": ""},
        "handlerPath": str(handler_dir / "handler.js"),  # found by its extension
        "handlerName": "main",
    }


def test_scw_handler_path_and_name_win_over_the_handler_string(
    function, node_runtime, tmp_path, monkeypatch
):
    (tmp_path / "echo.js").write_text(ECHO_SERVER)
    node_runtime(tmp_path / "echo.js")
    monkeypatch.setenv("SCW_HANDLER_PATH", "/srv/function/index.js")
    monkeypatch.setenv("SCW_HANDLER_NAME", "entry")
    body = json.loads(function(tmp_path, "ignored.fn").invoke({}))["body"]
    assert (body["handlerPath"], body["handlerName"]) == ("/srv/function/index.js", "entry")


def test_one_connection_is_kept_alive_and_reopened_once_the_server_drops_it(
    function, node_runtime, tmp_path
):
    (tmp_path / "brief.js").write_text(
        "const server = require('node:http').createServer((request, response) => {\n"
        "  request.resume();\n"
        "  request.on('end', () => response.end(String(request.socket.remotePort)));\n"
        "});\n"
        "server.keepAliveTimeout = 100;\n"
        "server.listen(Number(process.env.SCW_UPSTREAM_PORT), '127.0.0.1');\n"
    )
    node_runtime(tmp_path / "brief.js")
    subject = function(tmp_path, "handler.main")
    first, second = subject.invoke({}), subject.invoke({})
    assert first == second  # the same client port: one kept-alive connection
    time.sleep(1.6)  # node closes the idle connection about 1 s later (100 ms, rounded up)
    assert subject.invoke({}) != first


def test_a_sub_runtime_that_exits_fails_one_invocation_and_is_restarted(
    function, node_runtime, handler_dir
):
    subject = function(handler_dir, "handler.main")
    first_pid = json.loads(subject.invoke({}))["pid"]

    error = subject.fail({"action": "exit"}, request_id="req-exit")
    assert error.error_type == "Runtime.ExitError"
    assert error.message.startswith(
        "RequestId: req-exit Error: the sub-runtime exited with exit status 3"
    )
    assert "about to exit" in error.message
    assert not running(first_pid)

    second_pid = json.loads(subject.invoke({}))["pid"]
    assert second_pid != first_pid
    assert json.loads(subject.invoke({}))["pid"] == second_pid


def test_a_handler_past_its_deadline_restarts_the_sub_runtime(function, node_runtime, handler_dir):
    subject = function(handler_dir, "handler.main")
    first_pid = json.loads(subject.invoke({}))["pid"]
    started = time.monotonic()
    error = subject.fail({"action": "sleep"}, timeout_ms=700, request_id="req-slow")
    assert time.monotonic() - started < 5
    assert error.error_type == "Sandbox.Timedout"
    assert error.message.startswith("req-slow Task timed out after")
    assert wait_until(lambda: not running(first_pid))
    assert json.loads(subject.invoke({}))["pid"] != first_pid


def test_a_slow_booting_sub_runtime_still_answers_the_first_invocation(
    function, node_runtime, tmp_path
):
    (tmp_path / "slow.js").write_text(
        f"setTimeout(() => require({json.dumps(str(SERVER))}), 1000);\n"
    )
    node_runtime(tmp_path / "slow.js")
    started = time.monotonic()
    hello = function(EXAMPLE, "handler.handle")
    answer = json.loads(hello.invoke({"name": "slow"}))
    assert time.monotonic() - started >= 0.9
    assert json.loads(answer["body"])["message"] == "Hello, slow!"


def test_a_sub_runtime_that_never_listens_fails_after_the_boot_timeout(
    node_runtime, handler_dir, tmp_path
):
    (tmp_path / "mute.js").write_text("setInterval(() => {}, 1000);\n")
    node_runtime(tmp_path / "mute.js")
    config = FunctionConfig(handler="handler.main", task_root=str(handler_dir))
    bridge = ScalewayBridge(config, os.environ, boot_timeout=1.0)
    bridge.start()
    try:
        context = Context("req-mute", int(time.time() * 1000) + 10_000, config)
        with pytest.raises(FunctionError) as raised:
            bridge.invoke({}, context)
        assert raised.value.error_type == "Runtime.SubRuntimeError"
        assert "did not listen on 127.0.0.1:" in raised.value.message
    finally:
        bridge.stop()
    assert bridge.process is None


def test_a_sub_runtime_that_dies_while_booting_is_an_exit_error(function, node_runtime, tmp_path):
    (tmp_path / "broken.js").write_text("console.error('missing dependency'); process.exit(4);\n")
    node_runtime(tmp_path / "broken.js")
    error = function(tmp_path, "handler.main").fail({})
    assert error.error_type == "Runtime.ExitError"
    assert "exited with exit status 4" in error.message
    assert "missing dependency" in error.message


def test_stop_leaves_no_process(function, node_runtime, handler_dir):
    subject = function(handler_dir, "handler.main")
    pid = json.loads(subject.invoke({}))["pid"]
    subject.pipeline.close()
    assert not running(pid)
    assert subject.bridge.process is None
    subject.pipeline.close()  # twice is fine


def test_a_port_already_taken_is_an_init_error(function, node_runtime, port, handler_dir):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen(1)
        with pytest.raises(FunctionError) as raised:
            function(handler_dir, "handler.main")
    assert raised.value.error_type == "Runtime.SubRuntimeError"
    assert f"127.0.0.1:{port} already accepts connections" in raised.value.message


def test_a_binary_handler_is_its_own_sub_runtime(function, port, tmp_path, monkeypatch):
    binary = tmp_path / "server"
    binary.write_text(f"#!{NODE}\n" + ECHO_SERVER)
    binary.chmod(0o755)
    monkeypatch.setenv("SCW_HANDLER_IS_BINARY", "true")
    monkeypatch.setenv("SCW_HANDLER_PATH", str(binary))
    subject = function(tmp_path, "server")  # no language, no SCW_RUNTIME_BINARY
    assert subject.bridge.language == "scaleway"
    body = json.loads(subject.invoke({"n": 1}))["body"]
    assert body["event"] == {"n": 1}
    assert body["handlerPath"] == str(binary)


def test_without_scaleways_variables_nothing_is_claimed(port, handler_dir):
    config = FunctionConfig(handler="handler.main", task_root=str(handler_dir))
    assert scaleway.launch_language(config) is None
    assert scaleway.launch_language(config._replace(language="node")) is None
    assert scaleway.launch_language(config._replace(language="scaleway")) is not None


def test_scaleway_language_without_a_runtime_is_an_init_error(function, port, handler_dir):
    with pytest.raises(FunctionError) as raised:
        function(handler_dir, "handler.main", "scaleway")
    assert raised.value.error_type == "Runtime.InvalidEntrypoint"
    assert "SCW_RUNTIME_BINARY" in raised.value.message
