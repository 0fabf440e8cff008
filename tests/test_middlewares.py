"""Executable middlewares (SLSMIDDLEWARES) around real handlers, through `ort bootstrap`.

Each middleware below is a real program in a temporary middleware directory. The ``trail``
middleware appends its own name to ``event["trail"]`` in ``before`` and to
``response["trail"]`` in ``after``, so the order is visible in the answer; it does what the
event's ``"do"`` asks for one hook (fail, write garbage, hang...) so that one invocation fails
and the next, without it, shows the runtime went on.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import PYTHON, alive, clean_environ, descendants
from runtime_api_peer import Peer, start_peer

ECHO = """
def handler(event, context):
    trail = list(event.get("trail", []))
    return {"event": event, "trail": trail, "request_id": context.aws_request_id}
"""

NODE_ECHO = """
exports.handler = async (event) => ({ event, trail: [...(event.trail || [])], from: "node" });
"""

TRAIL = """
import json, os, sys, time

NAME = os.path.basename(sys.argv[0])
PERSISTENT = len(sys.argv) > 1 and sys.argv[1] == "persistent"
# MARKER (persistent_copy opts in here)


def act(hook, payload, request_id, remaining):
    source = payload["event"] if hook == "after" else payload
    instruction = (source.get("do") or {}).get(NAME, {}).get(hook)
    if instruction == "exit":
        print(f"{NAME} is failing on purpose", file=sys.stderr, flush=True)
        sys.exit(3)
    if instruction == "garbage":
        return "this is not json"
    if instruction == "sleep":
        time.sleep(30)
    if instruction == "empty":
        print(f"{NAME} leaves it unchanged", file=sys.stderr, flush=True)
        return ""
    if instruction == "error":
        return {"error": f"{NAME} refuses"}
    payload = dict(payload)
    payload["trail"] = [*payload.get("trail", []), f"{NAME}:{hook}"]
    payload.setdefault("seen", {})[f"{NAME}:{hook}"] = {
        "request_id": request_id, "remaining_ms": remaining, "pid": os.getpid(),
    }
    return payload


if PERSISTENT:
    for line in sys.stdin:
        request = json.loads(line)
        answer = act(request["hook"], request["payload"], request["requestId"],
                     request["remainingMs"])
        if answer == "":
            answer = {}
        elif isinstance(answer, dict) and "error" in answer and len(answer) == 1:
            pass
        elif answer == "this is not json":
            print(answer, flush=True)
            continue
        else:
            answer = {"payload": answer}
        print(json.dumps(answer), flush=True)
else:
    hook = sys.argv[1]
    answer = act(hook, json.load(sys.stdin), os.environ.get("ORT_REQUEST_ID"),
                 int(os.environ.get("ORT_REMAINING_MS", "0")))
    if isinstance(answer, dict) and "error" in answer and len(answer) == 1:
        sys.exit(4)
    print(answer if isinstance(answer, str) else json.dumps(answer))
"""


# -- processes ----------------------------------------------------------------------------


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# -- the runtime --------------------------------------------------------------------------


class Runtime:
    def __init__(self, process: subprocess.Popen, peer: Peer, log: Path) -> None:
        self.process = process
        self.peer = peer
        self.log_path = log

    def invoke(self, event: object) -> dict:
        result = self.peer.invoke(event)
        assert result.kind == "response", result.body
        return result.json()

    def fail(self, event: object) -> dict:
        result = self.peer.invoke(event)
        assert result.kind == "error", result.body
        error = result.json()
        error["arrived_before_deadline"] = result.received_ms < result.deadline_ms
        return error

    @property
    def log(self) -> str:
        return self.log_path.read_text()


@pytest.fixture
def middleware_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "middlewares"
    folder.mkdir()
    for name in ("one", "two", "three"):
        write_executable(folder / name, f"#!{PYTHON}\n" + TRAIL)
    for name in ("p-one", "p-two"):
        persistent_copy(folder / name)
    return folder


def write_executable(path: Path, source: str) -> Path:
    path.write_text(textwrap.dedent(source).lstrip())
    path.chmod(0o755)
    return path


def persistent_copy(path: Path) -> Path:
    source = f"#!{PYTHON}\n" + TRAIL.replace("# MARKER", "# ort-middleware: persistent")
    return write_executable(path, source)


@pytest.fixture
def start(tmp_path: Path, middleware_dir: Path) -> Iterator[Callable[..., Runtime]]:
    started: list[tuple[subprocess.Popen, Peer]] = []

    def run(
        middlewares: str,
        deadline_ms: int | None = None,
        handler: str = "app.handler",
        files: dict[str, str] | None = None,
        **env: str,
    ) -> Runtime:
        folder = tmp_path / f"function-{len(started)}"
        folder.mkdir()
        for name, source in (files or {"app.py": ECHO}).items():
            (folder / name).write_text(textwrap.dedent(source))
        peer = start_peer(deadline_ms)  # one per runtime: a killed one's /next must not steal
        log = tmp_path / f"runtime-{len(started)}.log"
        environ = clean_environ(
            AWS_LAMBDA_RUNTIME_API=peer.address,
            _HANDLER=handler,
            LAMBDA_TASK_ROOT=str(folder),
            **{"ORT_MIDDLEWARE_DIR": str(middleware_dir), **env},
        )
        if middlewares:
            environ["SLSMIDDLEWARES"] = middlewares
        process = subprocess.Popen(
            [PYTHON, "-m", "ort_core", "bootstrap"],
            env=environ,
            stdout=open(log, "wb"),
            stderr=subprocess.STDOUT,
        )
        started.append((process, peer))
        return Runtime(process, peer, log)

    yield run
    for process, peer in started:
        process.kill()
        process.wait()
        peer.close()


def init_error(runtime: Runtime) -> dict:
    assert runtime.process.wait(timeout=20) == 1, runtime.log
    assert len(runtime.peer.init_errors) == 1, runtime.log
    return runtime.peer.init_errors[0].json()


# -- order ----------------------------------------------------------------------------------


def test_before_runs_in_listed_order_and_after_in_reverse(start):
    runtime = start("one,two,three")
    answer = runtime.invoke({"trail": []})
    assert answer["event"]["trail"] == ["one:before", "two:before", "three:before"]
    assert answer["trail"] == [
        "one:before",
        "two:before",
        "three:before",
        "three:after",
        "two:after",
        "one:after",
    ]


def test_ort_middlewares_is_an_alias_and_disagreeing_lists_are_an_init_error(start):
    assert start("", ORT_MIDDLEWARES="two,one").invoke({})["trail"] == [
        "two:before",
        "one:before",
        "one:after",
        "two:after",
    ]
    error = init_error(start("one", ORT_MIDDLEWARES="two"))
    assert error["errorType"] == "Runtime.MiddlewareError"
    assert "disagree" in error["errorMessage"]


def test_in_process_plugins_wrap_the_executable_middlewares(start, tmp_path):
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "outer_plugin.py").write_text(
        textwrap.dedent(
            """
            from ort_core import hookimpl

            @hookimpl
            def before_event(event):
                return {**event, "trail": [*event.get("trail", []), "plugin:before"]}

            @hookimpl
            def after_response(response):
                return {**response, "trail": [*response["trail"], "plugin:after"]}
            """
        )
    )
    runtime = start("one", ORT_PLUGIN_MODULES="outer_plugin", PYTHONPATH=str(plugin))
    assert runtime.invoke({})["trail"] == [
        "plugin:before",
        "one:before",
        "one:after",
        "plugin:after",
    ]


def test_the_middleware_learns_the_request_id_and_the_remaining_time(start):
    runtime = start("one,p-one", deadline_ms=20_000)
    answer = runtime.invoke({})
    for step in ("one:before", "p-one:before"):
        seen = answer["event"]["seen"][step]
        assert seen["request_id"] == answer["request_id"]
        assert 0 < seen["remaining_ms"] <= 20_000


def test_empty_output_leaves_the_payload_unchanged(start):
    runtime = start("one,two")
    answer = runtime.invoke({"do": {"two": {"before": "empty", "after": "empty"}}})
    assert answer["event"]["trail"] == ["one:before"]
    assert answer["trail"] == ["one:before", "one:after"]
    assert "two leaves it unchanged" in runtime.log


def test_middlewares_wrap_a_node_function_too(start):
    runtime = start(
        "one,p-one", handler="index.handler", files={"index.js": NODE_ECHO}, ORT_LANGUAGE="node"
    )
    answer = runtime.invoke({})
    assert answer["from"] == "node"
    assert answer["trail"] == ["one:before", "p-one:before", "p-one:after", "one:after"]


# -- failures -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["one", "p-one"])
@pytest.mark.parametrize("hook", ["before", "after"])
@pytest.mark.parametrize(
    ("instruction", "expected"),
    [
        ("exit", "exit status 3"),
        ("garbage", "this is not json"),
    ],
)
def test_a_failing_middleware_fails_only_that_invocation(start, name, hook, instruction, expected):
    runtime = start(f"two,{name}")
    pid = runtime.process.pid
    runtime.invoke({})  # persistent middlewares and the worker are up; count from here
    # once it asks for the next event: after its first answer it imports ctypes, a file open
    runtime.peer.wait_for_next()
    processes, fds = len(descendants(pid)), descriptors(pid)

    error = runtime.fail({"do": {name: {hook: instruction}}})
    assert error["errorType"] == "Runtime.MiddlewareError"
    assert f"middleware '{name}' failed in '{hook}'" in error["errorMessage"]
    assert expected in error["errorMessage"]
    if instruction == "exit":
        assert f"{name} is failing on purpose" in error["errorMessage"]  # its stderr

    assert runtime.invoke({})["trail"] == [
        "two:before",
        f"{name}:before",
        f"{name}:after",
        "two:after",
    ]
    runtime.peer.wait_for_next()
    assert len(descendants(pid)) == processes
    assert descriptors(pid) == fds


def test_a_persistent_middleware_can_refuse_one_event_and_stays_running(start):
    runtime = start("p-one")
    before = runtime.invoke({})["event"]["seen"]["p-one:before"]["pid"]
    error = runtime.fail({"do": {"p-one": {"before": "error"}}})
    assert error["errorType"] == "Runtime.MiddlewareError"
    assert "middleware 'p-one' failed in 'before': p-one refuses" in error["errorMessage"]
    assert runtime.invoke({})["event"]["seen"]["p-one:before"]["pid"] == before


def test_a_persistent_middleware_is_one_process_for_many_events_and_restarts_after_a_crash(
    start,
):
    runtime = start("p-one,p-two")
    pids = {
        (step, seen["pid"])
        for _ in range(5)
        for step, seen in runtime.invoke({})["event"]["seen"].items()
    }
    assert len({pid for _, pid in pids}) == 2, pids
    first = dict(pids)["p-one:before"]
    runtime.fail({"do": {"p-one": {"before": "exit"}}})
    restarted = runtime.invoke({})["event"]["seen"]["p-one:before"]["pid"]
    assert restarted != first
    assert first not in descendants(runtime.process.pid)


@pytest.mark.parametrize("name", ["one", "p-one"])
@pytest.mark.parametrize("hook", ["before", "after"])
def test_a_middleware_still_running_at_the_deadline_is_cut_and_named(start, tmp_path, name, hook):
    plugin = tmp_path / "plugin"
    plugin.mkdir(exist_ok=True)
    (plugin / "timeout_witness.py").write_text(
        textwrap.dedent(
            """
            import sys
            from ort_core import hookimpl

            @hookimpl
            def on_timeout(context):
                print("on_timeout ran for", context.aws_request_id, file=sys.stderr, flush=True)
            """
        )
    )
    runtime = start(
        f"two,{name}",
        deadline_ms=1500,
        ORT_TIMEOUT_MARGIN_MS="300",
        ORT_PLUGIN_MODULES="timeout_witness",
        PYTHONPATH=str(plugin),
    )
    pid = runtime.process.pid
    runtime.invoke({})
    processes = len(descendants(pid))

    error = runtime.fail({"do": {name: {hook: "sleep"}}})
    assert error["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1." in error["errorMessage"]
    assert f"middleware '{name}' failed in '{hook}'" in error["errorMessage"]
    assert error["arrived_before_deadline"]
    assert f"on_timeout ran for {error['requestId']}" in runtime.log

    assert runtime.invoke({})["trail"][-1] == "two:after"
    assert runtime.process.poll() is None, "the runtime itself goes on"
    assert len(descendants(pid)) == processes


# -- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../one", "sub/one", "..", "/bin/true", "one..", "missing"])
def test_names_outside_the_directory_or_missing_are_init_errors(start, name):
    error = init_error(start(f"one,{name}"))
    assert error["errorType"] == "Runtime.MiddlewareError"
    assert repr(name) in error["errorMessage"]


def test_a_link_that_leaves_the_directory_is_refused(start, middleware_dir, tmp_path):
    outside = write_executable(tmp_path / "outside", "#!/bin/sh\necho '{}'\n")
    (middleware_dir / "escape").symlink_to(outside)
    error = init_error(start("escape"))
    assert error["errorType"] == "Runtime.MiddlewareError"
    assert "links outside" in error["errorMessage"]


def test_a_file_without_the_exec_bit_is_an_init_error(start, middleware_dir):
    (middleware_dir / "plain").write_text("#!/bin/sh\n")
    error = init_error(start("plain"))
    assert "not executable" in error["errorMessage"]


# -- early answers ----------------------------------------------------------------------------


def test_an_early_answer_from_before_event_skips_the_middlewares_and_the_handler(start, tmp_path):
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "gate.py").write_text(
        textwrap.dedent(
            """
            from ort_core import EarlyResponse, hookimpl

            @hookimpl
            def before_event(event):
                if not event.get("token"):
                    return EarlyResponse({"statusCode": 401, "body": "no token"})
            """
        )
    )
    runtime = start("one", ORT_PLUGIN_MODULES="gate", PYTHONPATH=str(plugin))
    assert runtime.invoke({}) == {"statusCode": 401, "body": "no token"}
    assert runtime.invoke({"token": "t"})["trail"] == ["one:before", "one:after"]


# -- the examples -----------------------------------------------------------------------------

HTTP_APP = """
def handler(event, context):
    return {"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": "hi"}
"""


def test_the_example_middlewares_in_bash_and_python(start):
    examples = Path(__file__).parent.parent / "examples" / "middlewares"
    runtime = start(
        "log-request,count-events,request-timer,security-headers",
        files={"app.py": HTTP_APP},
        ORT_MIDDLEWARE_DIR=str(examples),
    )
    for _ in range(2):
        answer = runtime.invoke({"path": "/"})
    assert answer["statusCode"] == 200 and answer["body"] == "hi"
    headers = answer["headers"]
    assert headers["Content-Type"] == "text/plain"
    assert headers["X-Content-Type-Options"] == "nosniff"  # security-headers, per event
    assert headers["Server-Timing"].startswith("app;dur=")  # request-timer, persistent
    log = runtime.log
    assert "count-events: event #2 in this sandbox" in log
    assert "request-timer: " in log and " took " in log
    assert "log-request: before " in log and "log-request: after " in log


def test_sigterm_ends_the_persistent_middlewares_with_the_runtime(start):
    runtime = start("p-one,p-two")
    seen = runtime.invoke({})["event"]["seen"]
    pids = {seen["p-one:before"]["pid"], seen["p-two:before"]["pid"]}
    assert pids <= descendants(runtime.process.pid)
    runtime.process.terminate()
    assert runtime.process.wait(timeout=10) == 0
    assert not any(alive(pid) for pid in pids)
