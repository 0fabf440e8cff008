"""Remote debugging: ``_debugProxy`` relays the Node inspector out, only with ORT_ALLOW_DEBUG=1;
``ort emulate --inspect`` opens it locally."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from ort_core import Context, FunctionConfig
from ort_core.startup import start_function
from ort_core.workers import debug

HANDLER = """\
exports.handler = async (event) => ({
  keys: Object.keys(event).sort(),
  inspector: require('node:inspector').url() || null,
});
"""


@pytest.fixture
def node_function(tmp_path: Path):
    pipelines = []

    def start(source: str = HANDLER):
        (tmp_path / "index.js").write_text(textwrap.dedent(source))
        config = FunctionConfig(
            handler="index.handler", task_root=str(tmp_path), language="node", signature="raw"
        )
        pipeline = start_function(config, {"ORT_PLUGINS": "ort-node"})
        pipelines.append(pipeline)
        return pipeline

    yield start
    for pipeline in pipelines:
        pipeline.close()


@pytest.fixture
def relay_listener():
    """The developer's relay, played by the test: a listener on 127.0.0.1."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(10)
    yield listener
    listener.close()


def invoke_in_thread(pipeline, event: dict) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run() -> None:
        context = Context("req-1", int(time.time() * 1000) + 60_000, pipeline.bridge.config)
        try:
            outcome["answer"] = json.loads(pipeline.invoke(json.dumps(event).encode(), context))
        except Exception as exc:  # reported by the test
            outcome["error"] = exc
        outcome["at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_without_allow_debug_the_key_is_removed_and_nothing_connects(
    node_function, relay_listener, monkeypatch
):
    monkeypatch.delenv("ORT_ALLOW_DEBUG", raising=False)
    proxy = f"127.0.0.1:{relay_listener.getsockname()[1]}"
    pipeline = node_function()
    thread, outcome = invoke_in_thread(pipeline, {"name": "x", "_debugProxy": proxy})
    thread.join(20)
    assert outcome["answer"] == {"keys": ["name"], "inspector": None}
    relay_listener.settimeout(1.5)
    with pytest.raises(TimeoutError):
        relay_listener.accept()  # no outbound connection was attempted


def test_the_debugger_attaches_through_the_relay_then_the_handler_runs(
    node_function, relay_listener, monkeypatch
):
    monkeypatch.setenv("ORT_ALLOW_DEBUG", "1")
    monkeypatch.setenv("ORT_DEBUG_WAIT", "30")
    proxy = f"127.0.0.1:{relay_listener.getsockname()[1]}"
    pipeline = node_function()
    started = time.monotonic()
    thread, outcome = invoke_in_thread(pipeline, {"name": "x", "_debugProxy": proxy})

    # The worker connected out: through that connection, the inspector's HTTP endpoint.
    first, _ = relay_listener.accept()
    with first:
        status, body = debug.http_get(first, "/json/version")
    assert status == 200
    assert "node" in json.loads(body)["Browser"].lower()
    assert "answer" not in outcome  # still waiting for a debugger

    # Each connection the relay hands over is followed by a spare one: the target list...
    second, _ = relay_listener.accept()
    with second:
        path = debug.debugger_path(second)
    # ...then the WebSocket, the Chrome DevTools protocol, and the handler runs.
    third, _ = relay_listener.accept()
    with third:
        debug.websocket_open(third, path)
        debug.websocket_send(
            third, {"id": 1, "method": "Runtime.evaluate", "params": {"expression": "6 * 7"}}
        )
        reply = debug.websocket_receive(third)
        while reply.get("id") != 1:
            reply = debug.websocket_receive(third)
        assert reply["result"]["result"]["value"] == 42
        assert "answer" not in outcome
        debug.websocket_send(third, {"id": 2, "method": "Runtime.runIfWaitingForDebugger"})
        thread.join(10)
    assert outcome["answer"]["keys"] == ["name"]  # the handler never saw _debugProxy
    assert outcome["answer"]["inspector"].startswith("ws://127.0.0.1:")
    assert outcome["at"] - started < 20  # well before ORT_DEBUG_WAIT


def test_without_a_debugger_the_handler_runs_after_the_bounded_wait(
    node_function, relay_listener, monkeypatch
):
    monkeypatch.setenv("ORT_ALLOW_DEBUG", "1")
    monkeypatch.setenv("ORT_DEBUG_WAIT", "1")
    proxy = f"127.0.0.1:{relay_listener.getsockname()[1]}"
    pipeline = node_function()
    started = time.monotonic()
    thread, outcome = invoke_in_thread(pipeline, {"_debugProxy": proxy, "n": 1})
    connection, _ = relay_listener.accept()  # the relay connected, and nobody speaks
    thread.join(15)
    connection.close()
    assert outcome["answer"]["keys"] == ["n"]
    assert 1 <= outcome["at"] - started < 10
    # The next event finds the inspector open: no wait.
    again = time.monotonic()
    thread, outcome = invoke_in_thread(pipeline, {"_debugProxy": proxy, "n": 2})
    thread.join(10)
    assert outcome["answer"]["keys"] == ["n"]
    assert outcome["at"] - again < 1


def test_take_debug_proxy_rejects_what_is_not_host_port(monkeypatch):
    monkeypatch.setenv("ORT_ALLOW_DEBUG", "1")
    for value in ("nohost", "host:99999", 42, ":80"):
        event = {"_debugProxy": value}
        assert debug.take_debug_proxy(event) is None
        assert event == {}
    assert debug.take_debug_proxy({"_debugProxy": "relay.example:9999"}) == "relay.example:9999"
    monkeypatch.setenv("ORT_ALLOW_DEBUG", "true")  # exactly 1, nothing else
    assert debug.take_debug_proxy({"_debugProxy": "relay.example:9999"}) is None


def test_emulate_inspect_opens_nodes_inspector(tmp_path: Path):
    (tmp_path / "index.js").write_text(HANDLER)
    inspect_port, invoke_port = debug.free_port(), debug.free_port()
    env = {**os.environ, "ORT_PLUGINS": "ort-node"}
    env.pop("ORT_INSPECT", None)
    emulator = subprocess.Popen(
        [sys.executable, "-m", "ort_core", "emulate", "--port", str(invoke_port),
         "--handler", "index.handler", f"--inspect={inspect_port}"],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        version = None
        deadline = time.monotonic() + 20
        while version is None and time.monotonic() < deadline:
            try:
                url = f"http://127.0.0.1:{inspect_port}/json/version"
                with urllib.request.urlopen(url, timeout=2) as answer:
                    version = json.loads(answer.read())
            except OSError:
                time.sleep(0.2)
        assert version is not None, "the inspector never answered"
        assert "node" in version["Browser"].lower()
        request = urllib.request.Request(
            f"http://127.0.0.1:{invoke_port}/2015-03-31/functions/function/invocations",
            data=b'{"a": 1}',
        )
        with urllib.request.urlopen(request, timeout=20) as answer:
            result = json.loads(answer.read())
        assert result["inspector"].startswith(f"ws://127.0.0.1:{inspect_port}/")
    finally:
        emulator.terminate()
        emulator.wait(10)
