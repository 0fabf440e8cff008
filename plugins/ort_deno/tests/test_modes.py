"""What differs between the modes: one process for the sandbox, or one per event."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import TYPE_CHECKING

import pytest
from ort_deno.per_invocation import PerInvocationBridge

from ort_core import FunctionConfig, FunctionError
from ort_core.startup import start_function
from ort_core.workers import prelaunch
from ort_core.workers.bridge import WorkerBridge

if TYPE_CHECKING:
    from conftest import Function

PID_HANDLER = """
let calls = 0;
export const handler = () => ({ pid: Deno.pid, calls: ++calls });
"""


def test_persistent_mode_keeps_one_worker(persistent: Function) -> None:
    persistent.write("pid.ts", PID_HANDLER)
    pipeline = persistent.start("pid.handler")
    assert isinstance(pipeline.bridge, WorkerBridge)

    first = json.loads(persistent.invoke(pipeline, {}))
    second = json.loads(persistent.invoke(pipeline, {}))

    assert first["pid"] == second["pid"] == pipeline.bridge.worker.process.pid
    assert (first["calls"], second["calls"]) == (1, 2)


def test_per_invocation_mode_starts_a_process_per_event(per_invocation: Function) -> None:
    per_invocation.write("pid.ts", PID_HANDLER)
    pipeline = per_invocation.start("pid.handler")
    assert isinstance(pipeline.bridge, PerInvocationBridge)

    first = json.loads(per_invocation.invoke(pipeline, {}))
    second = json.loads(per_invocation.invoke(pipeline, {}))

    assert first["pid"] != second["pid"]
    assert first["calls"] == second["calls"] == 1


def test_a_worker_killed_between_invocations_is_replaced(persistent: Function) -> None:
    persistent.write("pid.ts", PID_HANDLER)
    pipeline = persistent.start("pid.handler")
    first = json.loads(persistent.invoke(pipeline, {}))
    worker = pipeline.bridge.worker

    os.kill(worker.process.pid, signal.SIGKILL)
    worker.process.wait(timeout=5)
    second = json.loads(persistent.invoke(pipeline, {}))

    assert second["pid"] != first["pid"]
    assert second["calls"] == 1


def test_an_uncaught_exception_fails_the_invocation_in_flight_only(function: Function) -> None:
    function.write(
        "timer.ts",
        """
        export const handler = (event: { boom: boolean }) =>
          event.boom
            ? new Promise(() => setTimeout(() => { throw new EvalError("from a timer"); }, 1))
            : Deno.pid;
        """,
    )
    pipeline = function.start("timer.handler")

    pids = set()
    for _ in range(3):  # the next event never meets the dying worker
        error = function.invoke_error(pipeline, {"boom": True})
        assert (error.error_type, error.message) == ("EvalError", "from a timer")
        pids.add(int(function.invoke(pipeline, {"boom": False})))

    assert len(pids) == 3  # a fresh worker each time, in either mode


def test_a_deadline_ends_the_invocation_and_its_process(per_invocation: Function) -> None:
    per_invocation.write(
        "forever.ts",
        """
        export const handler = (event: { sleep: boolean }) =>
          event.sleep ? new Promise(() => setInterval(() => {}, 1000)) : "awake";
        """,
    )
    pipeline = per_invocation.start("forever.handler")

    started = time.monotonic()
    error = per_invocation.invoke_error(pipeline, {"sleep": True}, timeout=1)

    assert error.error_type == "Sandbox.Timedout"
    assert time.monotonic() - started < 5
    assert per_invocation.invoke(pipeline, {"sleep": False}) == b'"awake"'


def test_an_unknown_mode_is_an_init_error(
    persistent: Function, monkeypatch: pytest.MonkeyPatch
) -> None:
    persistent.write("app.ts", "export const handler = () => 1;\n")
    monkeypatch.setenv("ORT_DENO_MODE", "forked")

    with pytest.raises(FunctionError) as raised:
        persistent.start("app.handler")

    assert raised.value.error_type == "Runtime.InvalidEntrypoint"
    assert "forked" in raised.value.message


def test_the_worker_ort_bootstrap_starts_early_is_the_one_that_serves(
    persistent: Function,
) -> None:
    persistent.write("pid.ts", PID_HANDLER)
    environ = {
        "_HANDLER": "pid.handler",
        "LAMBDA_TASK_ROOT": str(persistent.root),
        "ORT_PLUGINS": "ort-deno",
    }
    prelaunch.start_early(environ)  # what `ort bootstrap` does before importing the rest
    [early] = prelaunch._started.values()

    pipeline = start_function(FunctionConfig.from_environ(environ), environ)
    persistent.pipelines.append(pipeline)

    assert pipeline.bridge.worker.process is early  # adopted: the very process spawned early
    assert json.loads(persistent.invoke(pipeline, {}))["pid"] == early.pid
