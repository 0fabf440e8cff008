"""The fault matrix through the Lambda loop: every bridge, against a Runtime API that is
written to misbehave (faults/harness.py).

For each fault: the invocation gets a clear error in Lambda's shape, the same runtime answers
the next event, and the runtime has as many processes under it and descriptors open as before
(counted after a first successful event, so that persistent workers are up). Handler timeouts
in every bridge are tests/test_timeouts.py's; middleware failures are
tests/test_middlewares.py's and test_middleware_faults.py's.
"""

from __future__ import annotations

import json

import pytest
from conftest import descendants
from faults.harness import (
    BRIDGES,
    IN_PROCESS,
    PERSISTENT,
    SIX_MB,
    Runtime,
    none_alive,
    settled,
    wait_for_children,
)

ALL = list(BRIDGES)
OUT_OF_PROCESS = [bridge for bridge in ALL if bridge != IN_PROCESS]
EXIT = ("Runtime.ExitError", "Runtime exited with error: exit status 3")
KILLED = ("Runtime.ExitError", "signal: kill")
UNCAUGHT = ("Error", "fault: uncaught")

# (bridge, fault) -> (errorType, a part of errorMessage)
EXPECTED = {
    ("python-in-process", "raise"): ("ValueError", "fault: raised on purpose"),
    ("python-subprocess", "raise"): ("ValueError", "fault: raised on purpose"),
    ("node", "raise"): ("Error", "fault: raised on purpose"),
    ("deno-persistent", "raise"): ("Error", "fault: raised on purpose"),
    ("deno-per-invocation", "raise"): ("Error", "fault: raised on purpose"),
    # a script reports an error by failing, with its reason on stderr
    ("bash", "raise"): ("Runtime.ExitError", "exited with exit status 1"),
    ("python-subprocess", "exit"): EXIT,
    ("node", "exit"): EXIT,
    ("deno-persistent", "exit"): EXIT,
    ("deno-per-invocation", "exit"): EXIT,
    ("bash", "exit"): ("Runtime.ExitError", "handler.sh exited with exit status 3"),
    ("python-subprocess", "crash"): ("Runtime.ExitError", "signal: abrt"),
    ("node", "crash"): ("Runtime.ExitError", "signal: abrt"),
    ("node", "uncaught"): UNCAUGHT,
    ("deno-persistent", "uncaught"): UNCAUGHT,
    ("deno-per-invocation", "uncaught"): UNCAUGHT,
    ("bash", "crash"): ("Runtime.ExitError", "handler.sh exited with signal: segv"),
    # a memory limit: RLIMIT_AS for Python, V8's heap limit for Node and Deno, ulimit -v in bash
    ("python-in-process", "oom"): ("MemoryError", ""),
    ("python-subprocess", "oom"): ("MemoryError", ""),
    ("node", "oom"): ("Runtime.ExitError", "signal: abrt"),
    ("deno-persistent", "oom"): ("Runtime.ExitError", "signal: trap"),
    ("deno-per-invocation", "oom"): ("Runtime.ExitError", "signal: trap"),
    ("bash", "oom"): ("Runtime.ExitError", "cannot allocate"),
    **{(b, "hang"): ("Sandbox.Timedout", "Task timed out after 1.") for b in OUT_OF_PROCESS},
}
TOO_LARGE = "Response payload size (7000002 bytes) exceeded maximum allowed payload size"


def warm(runtime: Runtime) -> tuple[int, int]:
    """Events succeed; the counts every fault must leave as they are. Two events: after the
    first answer ORT does one-off work (ort_core/invocation_env.py loads ctypes, whose files
    are open for a moment)."""
    runtime.ok()
    runtime.ok()
    return runtime.counts()


def recovered(runtime: Runtime, counts: tuple[int, int]) -> None:
    runtime.ok()
    assert runtime.process.poll() is None, "the runtime must go on"
    assert settled(runtime.counts, counts) == counts, "(processes, descriptors) changed"


@pytest.mark.parametrize(("bridge", "fault"), sorted(EXPECTED))
def test_a_failing_handler_fails_only_its_invocation(runtime_for, bridge, fault):
    runtime = runtime_for(bridge)
    counts = warm(runtime)
    before = runtime.ok()["pid"]

    deadline_ms = 1500 if fault == "hang" else 60_000
    error = runtime.error({"do": fault}, deadline_ms=deadline_ms)

    error_type, message = EXPECTED[bridge, fault]
    assert error["errorType"] == error_type
    assert message in error["errorMessage"]
    if bridge == "bash" and fault == "raise":
        assert "fault: raised on purpose" in error["errorMessage"]  # the end of its stderr
    recovered(runtime, counts)
    if bridge in PERSISTENT and error_type != error_type.split(".")[-1]:  # the worker died
        assert runtime.ok()["pid"] != before
        assert none_alive({before})


@pytest.mark.parametrize("bridge", OUT_OF_PROCESS)
def test_a_worker_killed_from_outside_fails_only_its_invocation(runtime_for, bridge):
    """SIGKILL, as the OOM killer or an operator sends it, while the handler runs."""
    runtime = runtime_for(bridge)
    counts = warm(runtime)
    seen = runtime.log.count("fault: hanging")
    request_id = runtime.api.send({"do": "hang"}, deadline_ms=30_000)
    runtime.hanging(seen)
    children = wait_for_children(runtime)
    runtime.kill_children()
    result = runtime.api.result(request_id)
    assert result.kind == "error"
    error = result.json()
    assert (error["errorType"], error["requestId"]) == ("Runtime.ExitError", request_id)
    assert KILLED[1] in error["errorMessage"]
    assert none_alive(children)
    recovered(runtime, counts)


@pytest.mark.parametrize("bridge", ALL)
def test_flooding_stdout_and_stderr_is_logged_and_answered(runtime_for, bridge):
    runtime = runtime_for(bridge)
    counts = warm(runtime)
    logged = len(runtime.log)
    assert runtime.ok({"do": "flood"})["ok"]
    log = runtime.log[logged:]
    streams = "e" if bridge == "bash" else "oe"  # an executable's stdout is its answer
    for letter in streams:  # 8 MB of each, logged whole (in records of at most 256 KiB)
        assert settled(lambda letter=letter: runtime.log[logged:].count(letter) >= 8e6, True)
    assert len(log) < 40_000_000
    recovered(runtime, counts)


@pytest.mark.parametrize("early", [False, True], ids=["read", "hang-up"])
@pytest.mark.parametrize("bridge", ALL)
def test_a_response_over_6_mb_is_lambdas_error_not_a_truncation(runtime_for, bridge, early):
    """Lambda's Runtime API answers 413 to an answer over 6291556 bytes; ORT then posts
    ``Function.ResponseSizeTooLarge``, as Lambda reports it. ``hang-up``: the 413 comes
    before the body is read and the connection is closed, as a server that will not read
    6 MB does; ORT reads that answer rather than sending the body again and again (it used
    to retry ten times, then exit with no error for the invocation)."""
    runtime = runtime_for(bridge)
    counts = warm(runtime)
    runtime.api.early_413 = early
    try:
        request_id = runtime.api.send({"do": "big"})
        result = runtime.api.result(request_id, timeout=30)
    finally:
        runtime.api.early_413 = False
    assert result.kind == "error", result.body[:300]
    error = result.json()
    assert error["errorType"] == "Function.ResponseSizeTooLarge"
    assert TOO_LARGE in error["errorMessage"]
    assert [entry for entry in runtime.api.refused if entry[0] == request_id] == [
        (request_id, 413)
    ], "the oversize answer was sent more than once"
    recovered(runtime, counts)


SIX_MB_PLUS_ONE = json.dumps({"pad": "x" * (SIX_MB + 1 - len('{"pad": ""}'))}).encode()
BAD_EVENTS = {
    "malformed": b'{"do": ',
    "empty": b"",
    "not-utf-8": b'{"name": "caf\xe9"}',
    "deeply-nested": b"[" * 100_000 + b"]" * 100_000,  # was a RecursionError with ORT's frames
}


@pytest.mark.parametrize("event", BAD_EVENTS)
@pytest.mark.parametrize("bridge", ALL)
def test_an_event_that_is_not_json_is_an_unmarshal_error(runtime_for, bridge, event):
    runtime = runtime_for(bridge)
    counts = warm(runtime)
    error = runtime.error(BAD_EVENTS[event])
    assert error["errorType"] == "Runtime.UnmarshalError"
    assert error["errorMessage"].startswith("Unable to unmarshal input: ")
    assert error["stackTrace"] == []
    recovered(runtime, counts)


@pytest.mark.parametrize("bridge", ALL)
def test_an_event_of_6_mb_plus_one_byte_reaches_the_handler_whole(runtime_for, bridge):
    """The Runtime API is the platform's side of the limit (the emulator and the gateway
    refuse such events: test_emulator_and_gateway_faults.py); what it hands out passes whole."""
    assert len(SIX_MB_PLUS_ONE) == SIX_MB + 1
    runtime = runtime_for(bridge)
    counts = warm(runtime)
    size = runtime.ok(SIX_MB_PLUS_ONE)["size"]
    assert size == (len(SIX_MB_PLUS_ONE) if bridge == "bash" else SIX_MB + 1 - 11)
    recovered(runtime, counts)


def test_after_running_out_of_memory_in_process_the_memory_is_given_back(runtime_for):
    """A MemoryError in ORT's own process used to keep the handler's frames (and what they
    held) alive through the error's context, so the next big event failed too, or ended the
    runtime while it read the event."""
    runtime = runtime_for(IN_PROCESS)
    counts = warm(runtime)
    assert runtime.error({"do": "oom"})["errorType"] == "MemoryError"
    assert runtime.ok(SIX_MB_PLUS_ONE)["size"] == SIX_MB + 1 - 11
    assert runtime.error({"do": "big"})["errorType"] == "Function.ResponseSizeTooLarge"
    recovered(runtime, counts)


# -- the platform misbehaves ---------------------------------------------------------------------

RECOVERED_FROM = ["next-slow", "next-drop", "idle-drop", "post-drop", "post-slow"]


@pytest.mark.parametrize("fault", RECOVERED_FROM)
@pytest.mark.parametrize("bridge", ALL)
def test_a_dropped_connection_or_a_slow_runtime_api_loses_nothing(runtime_for, bridge, fault):
    """The answer reaches the platform once, on a fresh connection if the old one was
    dropped; the dropped socket is closed (the descriptor count is back where it was)."""
    runtime = runtime_for(bridge)
    counts = warm(runtime)
    request_id = runtime.api.send({"pad": "abc"}, fault=fault)
    result = runtime.api.result(request_id)
    assert (result.kind, result.json()["ok"], result.json()["size"]) == (
        "response",
        True,
        len('{"pad": "abc"}') if bridge == "bash" else 3,
    )
    assert runtime.api.results[request_id].empty(), "answered twice"
    recovered(runtime, counts)


@pytest.mark.parametrize("bridge", ALL)
def test_a_500_to_the_answer_is_logged_and_the_runtime_goes_on(runtime_for, bridge):
    runtime = runtime_for(bridge)
    counts = warm(runtime)
    request_id = runtime.api.send({}, fault="post-500")
    assert settled(lambda: (request_id, 500) in runtime.api.refused, True)
    line = f"Runtime API refused the response of request {request_id}: HTTP 500"
    assert settled(lambda: line in runtime.log, True)
    recovered(runtime, counts)


@pytest.mark.parametrize("bridge", ALL)
def test_a_500_to_next_ends_the_runtime_and_its_workers_and_nothing_is_lost(runtime_for, bridge):
    """Lambda's contract: a 500 from ``/next`` is a non-recoverable state, the runtime must
    exit. It does, with a message, leaving no process behind; the platform's next runtime
    gets the event."""
    runtime = runtime_for(bridge)
    warm(runtime)
    children = descendants(runtime.pid)  # the persistent worker, if any
    assert len(children) == (1 if bridge in PERSISTENT else 0)
    request_id = runtime.api.send({"pad": "kept"}, fault="next-500")
    assert runtime.process.wait(timeout=20) == 1
    assert "GET /invocation/next answered HTTP 500" in runtime.log
    assert none_alive(children), "a worker outlived its runtime"

    successor = Runtime(bridge, runtime.folder, runtime.log_path, api=runtime.api)
    try:
        result = runtime.api.result(request_id)
        assert result.kind == "response" and result.json()["ok"]
        assert successor.ok()["ok"]
    finally:
        successor.stop()
