"""Worker lifecycle in the core, with a real Node worker: logs, restarts, stops, no leaks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import PYTHON, clean_environ

from ort_core import Context, FunctionConfig, FunctionError
from ort_core.startup import start_function

HANDLER = """
exports.handler = async (event, context) => {
  if (event.print) console.log(`from node ${context.awsRequestId}`);
  if (event.warn) console.error('a warning');
  if (event.exit) process.exit(event.exit);
  if (event.sleep) await new Promise((resolve) => setTimeout(resolve, event.sleep));
  return {pid: process.pid};
};
"""


def children_of(pid: int) -> list[tuple[int, str]]:
    """(pid, state) of the processes whose parent is ``pid``, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append((int(entry), fields[0]))
    return found


def gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}"):
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    (tmp_path / "index.js").write_text(HANDLER)
    return tmp_path


def test_restarts_leak_no_descriptor_process_or_zombie(node_dir):
    config = FunctionConfig(handler="index.handler", task_root=str(node_dir), language="node")
    pipeline = start_function(config, {"ORT_PLUGINS": "ort-node"})

    def invoke(event):
        context = Context("req", int(time.time() * 1000) + 30_000, config)
        return pipeline.invoke(json.dumps(event).encode(), context)

    try:
        invoke({})
        descriptors = len(os.listdir("/proc/self/fd"))
        pids = set()
        for _ in range(5):
            pids.add(json.loads(invoke({}))["pid"])
            with pytest.raises(FunctionError, match="exit status 7"):
                invoke({"exit": 7})
        pids.add(json.loads(invoke({}))["pid"])
        assert len(pids) == 6  # a fresh worker after each crash
        assert len(os.listdir("/proc/self/fd")) == descriptors
        assert [pid for pid, _ in children_of(os.getpid())] == [pipeline.bridge.worker.process.pid]
    finally:
        pipeline.close()
    assert children_of(os.getpid()) == []  # nothing running, no zombie left


def start_bootstrap(address: str, folder: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [PYTHON, "-m", "ort_core", "bootstrap"],
        env=clean_environ(
            AWS_LAMBDA_RUNTIME_API=address,
            _HANDLER="index.handler",
            LAMBDA_TASK_ROOT=str(folder),
            ORT_PLUGINS="ort-node",
        ),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def test_worker_output_is_logged_line_by_line_with_the_request_id(node_dir, tmp_path, peer):
    log = tmp_path / "runtime.log"
    runtime = start_bootstrap(peer.address, node_dir, log)
    try:
        result = peer.invoke({"print": True, "warn": True})
        assert result.kind == "response"
        deadline = time.monotonic() + 5
        while "a warning" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        lines = log.read_text().splitlines()
        printed = next(line for line in lines if "from node" in line)
        level, _, tagged_id, message = printed.split("\t")
        assert level == "[INFO]"
        assert message == f"from node {tagged_id}"  # the id the handler saw is the tag
        warned = next(line for line in lines if "a warning" in line)
        assert warned.startswith("[ERROR]\t") and warned.endswith(f"\t{tagged_id}\ta warning")
    finally:
        runtime.kill()
        runtime.wait()


def test_sigterm_stops_the_runtime_and_its_worker(node_dir, tmp_path, peer):
    runtime = start_bootstrap(peer.address, node_dir, tmp_path / "runtime.log")
    try:
        worker_pid = peer.invoke({}).json()["pid"]
        runtime.send_signal(signal.SIGTERM)
        assert runtime.wait(timeout=10) == 0
        assert gone(worker_pid)
    finally:
        runtime.kill()
        runtime.wait()


def test_a_worker_init_error_reaches_init_error(node_dir, tmp_path, peer):
    (node_dir / "index.js").write_text("exports.other = () => 1;\n")
    runtime = start_bootstrap(peer.address, node_dir, tmp_path / "runtime.log")
    assert runtime.wait(timeout=30) == 1
    [init_error] = peer.init_errors
    assert init_error.headers["Lambda-Runtime-Function-Error-Type"] == "Runtime.HandlerNotFound"
    assert children_of(runtime.pid) == []


def test_bootstrap_starts_the_worker_early_and_adopts_it(node_dir, tmp_path, peer):
    """The worker spawned before ORT's imports is the one that serves: one load, one pid."""
    loads = tmp_path / "loads.txt"
    (node_dir / "index.js").write_text(
        f"require('fs').appendFileSync({str(loads)!r}, process.pid + '\\n');\n" + HANDLER
    )
    runtime = start_bootstrap(peer.address, node_dir, tmp_path / "runtime.log")
    try:
        pid = peer.invoke({}).json()["pid"]
        assert loads.read_text().split() == [str(pid)]
    finally:
        runtime.kill()
        runtime.wait()


def test_a_worker_answer_stays_byte_exact_past_hooks_that_do_not_read_it(tmp_path):
    (tmp_path / "index.js").write_text("exports.handler = async () => ({a: 1, b: [true]});\n")
    (tmp_path / "watcher.py").write_text(
        "from ort_core import hookimpl\n\n"
        "@hookimpl\n"
        "def after_response(context):\n"
        "    print('seen', context.aws_request_id)\n"
    )
    result = subprocess.run(
        [PYTHON, "-m", "ort_core", "invoke", "--handler", "index.handler", "--language", "node"],
        cwd=tmp_path,
        env=clean_environ(ORT_PLUGIN_MODULES="watcher", PYTHONPATH=str(tmp_path)),
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b'{"a":1,"b":[true]}\n'  # Node's own bytes, not re-encoded
    assert b"seen " in result.stderr


# What a scripted worker needs first: its channel to ORT, and the protocol's framing.
WORKER_BASICS = r"""
import json, os, socket, sys, time

channel = socket.socket(socket.AF_UNIX)
channel.connect(os.environ["ORT_WORKER_SOCKET"])
reader = channel.makefile("rb")

def send(header, body=b""):
    head = json.dumps(header).encode()
    channel.sendall(len(head).to_bytes(4, "big") + head + len(body).to_bytes(4, "big") + body)

def part():
    return reader.read(int.from_bytes(reader.read(4), "big"))
"""

# A worker that reports the handler's run, as asked (time_handler), on a clock given by argv:
# ORT's monotonic one, or one ten seconds ahead (not the same clock).
TIMING_WORKER = (
    WORKER_BASICS
    + r"""
ahead = int(sys.argv[1])
send({"type": "ready"})
while True:
    header, _ = json.loads(part()), part()
    started = time.monotonic_ns() + ahead
    time.sleep(0.01)
    result = {"type": "result", "id": header["id"], "ok": True}
    if header.get("time_handler"):
        result["handler_ns"] = [str(started), time.monotonic_ns() + ahead]
    send(result, json.dumps(header.get("time_handler", False)).encode())
"""
)


@pytest.mark.parametrize("ahead_s", [0, 10])
def test_a_traced_invocation_has_the_handlers_run_as_its_worker_timed_it(tmp_path, ahead_s):
    """ORT asks the worker to time a traced invocation's handler, and turns its monotonic
    readings into epoch times, within the bridge call; readings that do not fall within it
    are another clock's, and dropped. An untraced invocation is not timed."""
    from ort_core.workers.bridge import WorkerBridge

    config = FunctionConfig(handler="app.handler", task_root=str(tmp_path), language="python")
    bridge = WorkerBridge("python", [PYTHON, "-c", TIMING_WORKER, str(ahead_s * 10**9)], config)
    bridge.start()
    try:
        context = Context("req", int(time.time() * 1000) + 30_000, config)
        context.traceparent = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
        before = time.time_ns()
        assert json.loads(bridge.invoke({}, context)) is True
        after = time.time_ns()
        if ahead_s:
            assert context.handler_ns is None
        else:
            assert context.handler_ns is not None
            start, end = context.handler_ns
            assert before < start < end < after and end - start >= 10_000_000

        untraced = Context("req-2", int(time.time() * 1000) + 30_000, config)
        assert json.loads(bridge.invoke({}, untraced)) is False
        assert untraced.handler_ns is None
    finally:
        bridge.stop()


# A worker that announces spans after each result, then sends them, something else, or nothing.
SPANS_WORKER = (
    WORKER_BASICS
    + r"""
send({"type": "ready"})
while True:
    header, _ = json.loads(part()), part()
    answer = json.dumps({"pid": os.getpid()}).encode()
    send({"type": "result", "id": header["id"], "ok": True, "spans_follow": True}, answer)
    if sys.argv[1] == "spans":
        send({"type": "spans", "id": header["id"]}, b'[{"name": "handler"}]')
    elif sys.argv[1] == "another result":
        send({"type": "result", "id": header["id"], "ok": True}, b"null")
"""
)


@pytest.mark.parametrize("sends", ["spans", "another result", "nothing"])
def test_spans_that_follow_a_result_are_read_after_the_answer(tmp_path, monkeypatch, sends):
    """The spans come after the answer; a worker that sends something else, or nothing within
    the wait, loses them and is replaced, and no invocation fails for it."""
    from ort_core.workers import process
    from ort_core.workers.bridge import WorkerBridge

    monkeypatch.setattr(process, "SPANS_WAIT_S", 0.3)
    config = FunctionConfig(handler="app.handler", task_root=str(tmp_path), language="python")
    bridge = WorkerBridge("python", [PYTHON, "-c", SPANS_WORKER, sends], config)
    bridge.start()
    descriptors = len(os.listdir("/proc/self/fd"))
    try:
        pids, spans = [], []
        for _ in range(3):
            context = Context("req", int(time.time() * 1000) + 30_000, config)
            pids.append(json.loads(bridge.invoke({}, context))["pid"])
            assert context.worker_spans == []  # not read before the answer
            bridge.receive_spans()
            spans.append(context.worker_spans)
        if sends == "spans":
            assert spans == [[{"name": "handler"}]] * 3 and len(set(pids)) == 1
        else:
            assert spans == [[], [], []] and len(set(pids)) == 3  # a fresh worker each time
        assert len(os.listdir("/proc/self/fd")) == descriptors
    finally:
        bridge.stop()
    assert [pid for pid, state in children_of(os.getpid()) if state != "Z"] == []
