"""Executable handlers (ort_core.languages.executable): bash and PHP, one real process per event.

Every test checks that no process is left behind: the test process's children are counted
before and after, and the pids a script reports (its own, and what it started) must be gone.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import PYTHON, clean_environ
from test_emulator import RunningEmulator, free_port, stop, wait_for_port

from ort_core import Context, FunctionConfig, FunctionError
from ort_core.languages import executable
from ort_core.pipeline import Pipeline
from ort_core.startup import start_function
from ort_core.workers.oneshot import OneShot, json_answer, run_once

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
ARN = "arn:aws:lambda:us-east-1:012345678912:function:exec-fn"
TRACE = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"


# -- processes --------------------------------------------------------------------------------


def children(pid: int) -> set[int]:
    """Direct children of ``pid``, zombies included (an unreaped child is still listed)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found.update(int(child) for child in (task / "children").read_text().split())
        except OSError:
            pass
    return found


def running(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie waiting for its reaper is not)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat_line.rpartition(")")[2].split()[0] != "Z"


def wait_until(condition: Callable[[], bool], limit: float = 5.0) -> bool:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture(autouse=True)
def no_process_left() -> Iterator[None]:
    """Whatever a test starts, it ends and reaps."""
    before = children(os.getpid())
    yield
    assert wait_until(lambda: children(os.getpid()) <= before), children(os.getpid()) - before


# -- functions --------------------------------------------------------------------------------


class Function:
    """A started function (``start_function``) and a way to invoke it like a front end."""

    def __init__(self, config: FunctionConfig, pipeline: Pipeline) -> None:
        self.config = config
        self.pipeline = pipeline

    def invoke(
        self,
        event: object = None,
        *,
        body: bytes | None = None,
        request_id: str = "req-1",
        timeout_ms: int = 10_000,
        trace_id: str | None = None,
    ) -> bytes:
        context = Context(
            request_id,
            int(time.time() * 1000) + timeout_ms,
            self.config,
            invoked_function_arn=ARN,
            trace_id=trace_id,
        )
        payload = body if body is not None else json.dumps({} if event is None else event).encode()
        return self.pipeline.invoke(payload, context)

    def fail(self, event: object = None, **options) -> FunctionError:
        with pytest.raises(FunctionError) as raised:
            self.invoke(event, **options)
        return raised.value


@pytest.fixture
def function() -> Iterator[Callable[..., Function]]:
    """``function(folder, handler, language=None)``: started with the built-in plugins only."""
    started: list[Function] = []

    def start(folder: Path, handler: str, language: str | None = None) -> Function:
        config = FunctionConfig(
            handler=handler,
            task_root=str(folder),
            language=language,
            function_name="exec-fn",
        )
        started.append(Function(config, start_function(config, {"ORT_PLUGINS": ""})))
        return started[-1]

    yield start
    for started_function in started:
        started_function.pipeline.close()


def script(folder: Path, name: str, source: str, executable_bit: bool = True) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source.lstrip())
    if executable_bit:
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def pids_in(path: Path) -> list[int]:
    assert wait_until(path.exists), f"{path} was never written"
    return [int(pid) for pid in path.read_text().split()]


# -- the examples, through the pipeline, `ort invoke` and `ort emulate` -----------------------


def test_the_bash_example_answers_byte_exact_through_the_pipeline(function):
    hello = function(EXAMPLES / "hello-bash", "handler.sh")
    assert hello.pipeline.bridge.language == "executable"
    assert hello.invoke({"name": "ORT"}) == b'{"message": "Hello, ORT!"}'
    assert hello.invoke({}) == b'{"message": "Hello, world!"}'


def test_a_function_suffix_is_the_first_argument(function):
    bonjour = function(EXAMPLES / "hello-bash", "handler.sh.Bonjour")
    assert json.loads(bonjour.invoke({"name": "ORT"})) == {"message": "Bonjour, ORT!"}


@pytest.mark.parametrize("language", [None, "php"])
def test_the_php_example_answers_through_the_pipeline(function, language):
    hello = function(EXAMPLES / "hello-php", "handler.php", language)
    assert hello.pipeline.bridge.language == "php"
    answer = json.loads(hello.invoke({"name": "ORT"}))
    assert answer["message"] == "Hello, ORT!"
    assert answer["runtime"].startswith("php 8")


def test_php_warnings_go_to_the_log_and_fatal_errors_into_the_exit_error(
    function, tmp_path, caplog
):
    script(
        tmp_path, "warn.php", '<?php\n$a = $nowhere;\necho json_encode(["ok" => true]);\n', False
    )
    script(tmp_path, "fatal.php", "<?php\nundefined_function();\n", False)
    with caplog.at_level(logging.INFO, logger="executable"):
        assert function(tmp_path, "warn.php").invoke({}) == b'{"ok":true}'
    warnings = [
        record.getMessage() for record in caplog.records if "$nowhere" in record.getMessage()
    ]
    assert len(warnings) == 1 and warnings[0].startswith("Warning: Undefined variable")

    error = function(tmp_path, "fatal.php").fail({})
    assert error.error_type == "Runtime.ExitError"
    assert "fatal.php exited with exit status 255" in error.message
    assert "Call to undefined function undefined_function()" in error.message


EXAMPLE_CASES = [
    ("hello-bash", "handler.sh", {"message": "Hello, ORT!"}, "hello-bash: request "),
    ("hello-php", "handler.php", {"message": "Hello, ORT!"}, "hello-php: request "),
]


@pytest.mark.parametrize(("example", "handler", "expected", "logged"), EXAMPLE_CASES)
def test_the_examples_answer_through_ort_invoke(example, handler, expected, logged):
    result = subprocess.run(
        [PYTHON, "-m", "ort_core", "invoke", "--handler", handler, "--event", "event.json"],
        cwd=EXAMPLES / example,
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert {key: answer[key] for key in expected} == expected
    [log_line] = [line for line in result.stderr.splitlines() if logged in line]
    level, _, request_id, message = log_line.split("\t")
    assert level == "[INFO]"
    assert message.startswith(f"{logged}{request_id}")


@pytest.fixture
def emulate_folder(tmp_path: Path) -> Iterator[Callable[..., RunningEmulator]]:
    """``ort emulate`` (test_emulator.py's helpers) with a given folder as the task root."""
    started: list[RunningEmulator] = []

    def start(folder: Path, handler: str) -> RunningEmulator:
        port = free_port()
        stdout = open(tmp_path / f"emulator-{port}.out", "wb")  # closed in stop()
        stderr = open(tmp_path / f"emulator-{port}.err", "wb")  # closed in stop()
        process = subprocess.Popen(
            [PYTHON, "-m", "ort_core", "emulate", "--port", str(port), "--handler", handler],
            cwd=folder,
            env=clean_environ(LAMBDA_TASK_ROOT=str(folder)),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
        emulator = RunningEmulator(
            process=process,
            port=port,
            stdout_path=Path(stdout.name),
            stderr_path=Path(stderr.name),
            client=httpx.Client(timeout=30),
            files=[stdout, stderr],
        )
        started.append(emulator)
        wait_for_port(emulator)
        return emulator

    yield start
    for emulator in started:
        stop(emulator)


@pytest.mark.parametrize(("example", "handler", "expected", "logged"), EXAMPLE_CASES)
def test_the_examples_answer_through_ort_emulate(
    emulate_folder, tmp_path, example, handler, expected, logged
):
    folder = shutil.copytree(EXAMPLES / example, tmp_path / example)  # keeps the exec bit
    emulator = emulate_folder(folder, handler)
    for name in ("ORT", "emulator"):
        response = emulator.invoke({"name": name})
        assert response.status_code == 200, emulator.diagnostics()
        assert "X-Amz-Function-Error" not in response.headers
        assert response.json()["message"] == f"Hello, {name}!"
    assert logged in emulator.log()


def test_a_failing_script_is_an_unhandled_error_under_ort_emulate(emulate_folder, tmp_path):
    script(tmp_path, "fail.sh", "#!/bin/sh\necho 'cannot go on' >&2\nexit 7\n")
    emulator = emulate_folder(tmp_path, "fail.sh")
    response = emulator.invoke({})
    assert response.headers.get("X-Amz-Function-Error") == "Unhandled", emulator.diagnostics()
    error = response.json()
    assert error["errorType"] == "Runtime.ExitError"
    assert "exit status 7" in error["errorMessage"]
    assert "cannot go on" in error["errorMessage"]


# -- failures ---------------------------------------------------------------------------------

FAILING = """
#!/bin/bash
event=$(cat)
case "$event" in
  *fail*)
    for n in $(seq 1 400); do echo "early noise line $n" >&2; done
    echo "final words before failing" >&2
    exit 3 ;;
  *signal*) kill -TERM $$ ;;
esac
echo '{"ok": true}'
"""


def test_a_non_zero_exit_is_an_exit_error_with_the_end_of_stderr(function, tmp_path):
    script(tmp_path, "handler.sh", FAILING)
    failing = function(tmp_path, "handler.sh")

    error = failing.fail({"action": "fail"}, request_id="req-fail")
    assert error.error_type == "Runtime.ExitError"
    assert error.message.startswith(
        "RequestId: req-fail Error: handler.sh exited with exit status 3"
    )
    assert "final words before failing" in error.message
    assert "early noise line 1\n" not in error.message  # only the last ~2 KB of stderr
    assert len(error.message) < 2048 + 200

    assert failing.invoke({"action": "none"}) == b'{"ok": true}'
    assert "signal: term" in failing.fail({"action": "signal"}).message
    assert failing.invoke({}) == b'{"ok": true}'


@pytest.mark.parametrize(
    ("output", "answer"),
    [
        (b'{"spacing":  "kept" , "n": [1,2]}\n', b'{"spacing":  "kept" , "n": [1,2]}'),
        (b"[1, 2]", b"[1, 2]"),
        (b"42\n", b"42"),
        (b"Hello, world!\n", b'"Hello, world!"'),
        (b"two\nlines\n\n", b'"two\\nlines\\n"'),
        (b"", b"null"),
        (b"\n", b"null"),
        (b"NaN\n", b'"NaN"'),
        ("héllo\n".encode(), '"héllo"'.encode()),
        (b"\xff\xfe bytes\n", '"\ufffd\ufffd bytes"'.encode()),
    ],
)
def test_stdout_that_is_json_passes_as_is_and_other_text_becomes_a_json_string(
    function, tmp_path, output, answer
):
    (tmp_path / "out").write_bytes(output)
    script(tmp_path, "handler.sh", '#!/bin/sh\ncat "$LAMBDA_TASK_ROOT/out"\n')
    assert function(tmp_path, "handler.sh").invoke({}) == answer
    assert json_answer(output) == answer


def test_a_megabyte_of_stderr_does_not_hold_up_the_answer(function, tmp_path, caplog):
    script(
        tmp_path,
        "handler.sh",
        """
        #!/bin/sh
        yes 'a line of stderr' | head -n 62000 >&2
        head -c 300000 /dev/zero | tr '\\0' 'e' >&2
        echo '{"answer": "exact"}'
        """.replace("\n        ", "\n"),
    )
    noisy = function(tmp_path, "handler.sh")
    with caplog.at_level(logging.INFO, logger="executable"):
        assert noisy.invoke({}) == b'{"answer": "exact"}'
    logged = [record.getMessage() for record in caplog.records if record.name == "executable"]
    assert logged.count("a line of stderr") == 62000  # 1 MB
    assert sum(len(line) for line in logged if line.startswith("eee")) == 300000


def test_a_five_megabyte_event_round_trips_through_stdin_and_stdout(function, tmp_path):
    script(tmp_path, "handler.sh", "#!/bin/sh\nexec cat\n")
    body = json.dumps({"blob": "x" * (5 * 1024 * 1024)}).encode()
    assert function(tmp_path, "handler.sh").invoke(body=body) == body


SLEEPER = """
#!/bin/bash
event=$(cat)
if [[ "$event" == *sleep* ]]; then
  echo $$ > "$LAMBDA_TASK_ROOT/pids"
  sleep 30 &
  echo $! >> "$LAMBDA_TASK_ROOT/pids"
  wait
fi
echo '{"awake": true}'
"""


def test_a_handler_past_its_deadline_is_killed_with_everything_it_started(function, tmp_path):
    script(tmp_path, "handler.sh", SLEEPER)
    sleeper = function(tmp_path, "handler.sh")

    started = time.monotonic()
    error = sleeper.fail({"action": "sleep"}, request_id="req-slow", timeout_ms=700)
    assert time.monotonic() - started < 5
    assert error.error_type == "Sandbox.Timedout"
    assert error.message.startswith("req-slow Task timed out after")
    shell, sleep = pids_in(tmp_path / "pids")
    assert wait_until(lambda: not running(shell) and not running(sleep))

    assert sleeper.invoke({}) == b'{"awake": true}'


def test_stop_kills_the_invocation_in_flight(function, tmp_path):
    script(tmp_path, "handler.sh", SLEEPER)
    sleeper = function(tmp_path, "handler.sh")
    timer = threading.Timer(0.5, sleeper.pipeline.close)  # as a SIGTERM from the platform
    timer.start()
    started = time.monotonic()
    error = sleeper.fail({"action": "sleep"}, request_id="req-stopped")
    timer.join()
    assert time.monotonic() - started < 5
    assert error.error_type == "Runtime.ExitError"
    assert "was stopped (the sandbox is ending): signal: kill" in error.message
    shell, sleep = pids_in(tmp_path / "pids")
    assert wait_until(lambda: not running(shell) and not running(sleep))


def test_what_a_script_leaves_running_is_killed_when_it_exits(function, tmp_path):
    script(
        tmp_path,
        "handler.sh",
        '#!/bin/sh\nsleep 30 &\necho $! > "$LAMBDA_TASK_ROOT/pids"\necho \'{"left": "behind"}\'\n',
    )
    started = time.monotonic()
    assert function(tmp_path, "handler.sh").invoke({}) == b'{"left": "behind"}'
    assert time.monotonic() - started < 3  # the sleep held stdout open until it was killed
    [sleep] = pids_in(tmp_path / "pids")
    assert wait_until(lambda: not running(sleep))


def test_the_invocation_context_reaches_the_script_environment(function, tmp_path, monkeypatch):
    monkeypatch.setenv("GREETING", "from the function's environment")
    monkeypatch.setenv("ORT_REQUEST_ID", "stale, from ORT's own environment")
    script(
        tmp_path,
        "bin/handler",
        """
        #!/bin/bash
        cat > /dev/null
        printf '{"id": "%s", "aws": "%s", "deadline": "%s", "remaining": "%s", "arn": "%s", ' \\
          "$ORT_REQUEST_ID" "$AWS_REQUEST_ID" "$ORT_DEADLINE_MS" "$ORT_REMAINING_MS" \\
          "$ORT_FUNCTION_ARN"
        printf '"trace": "%s", "handler": "%s", "root": "%s", "cwd": "%s", "args": "%s", ' \\
          "${_X_AMZN_TRACE_ID-unset}" "$_HANDLER" "$LAMBDA_TASK_ROOT" "$PWD" "$*"
        printf '"greeting": "%s"}' "$GREETING"
        """.replace("\n        ", "\n"),
    )
    env_function = function(tmp_path, "bin/handler.main")
    before_ms = int(time.time() * 1000)
    seen = json.loads(env_function.invoke({}, request_id="req-env", trace_id=TRACE))
    deadline = int(seen.pop("deadline"))
    assert before_ms + 9_000 < deadline <= before_ms + 10_100
    assert 9_000 < int(seen.pop("remaining")) <= 10_000
    assert seen == {
        "id": "req-env",
        "aws": "req-env",
        "arn": ARN,
        "trace": TRACE,
        "handler": "bin/handler.main",
        "root": str(tmp_path),
        "cwd": str(tmp_path),
        "args": "main",
        "greeting": "from the function's environment",
    }
    # No trace id on the next event: the variable is unset, not left over.
    assert json.loads(env_function.invoke({}, request_id="req-2"))["trace"] == "unset"


def test_stderr_lines_are_the_function_log(function, tmp_path, caplog):
    script(tmp_path, "handler.sh", "#!/bin/sh\necho one >&2\nprintf 'two\\nthree' >&2\necho 1\n")
    logging_function = function(tmp_path, "handler.sh")
    with caplog.at_level(logging.INFO, logger="executable"):
        assert logging_function.invoke({}) == b"1"
    assert [
        (record.levelname, record.getMessage())
        for record in caplog.records
        if record.name == "executable"
    ] == [("INFO", "one"), ("INFO", "two"), ("INFO", "three")]


# -- which handlers are claimed, and how they start -------------------------------------------


def test_only_executable_files_and_php_files_are_claimed_without_a_language(tmp_path):
    script(tmp_path, "run.sh", "#!/bin/sh\n")
    script(tmp_path, "plain.sh", "#!/bin/sh\n", executable_bit=False)
    script(tmp_path, "page.php", "<?php\n", executable_bit=False)
    script(tmp_path, "app.py", "def handler(event, context):\n    pass\n")

    def claimed(handler: str, language: str | None = None) -> str | None:
        config = FunctionConfig(handler=handler, task_root=str(tmp_path), language=language)
        bridge = executable.launch_language(config)
        return None if bridge is None else bridge.language

    assert claimed("run.sh") == "executable"
    assert claimed("run.sh.fn") == "executable"
    assert claimed("page.php") == "php"
    assert claimed("page.php.fn") == "php"
    assert claimed("plain.sh") is None
    assert claimed("app.handler") is None  # a Python handler, even though app.py is executable
    assert claimed("missing.sh") is None
    assert claimed("app.handler", "python") is None
    assert claimed("plain.sh", "bash") == "bash"
    assert claimed("anything", "exec") == "exec"


def test_interpreter_languages_need_neither_a_shebang_nor_the_exec_bit(function, tmp_path):
    script(tmp_path, "bash.sh", 'echo "{\\"bash\\": \\"${BASH_VERSION:+yes}\\"}"\n', False)
    script(tmp_path, "posix.sh", 'read -r event; echo "$event"\n', False)
    assert function(tmp_path, "bash.sh", "bash").invoke({}) == b'{"bash": "yes"}'
    assert function(tmp_path, "bash.sh", "shell").invoke({}) == b'{"bash": "yes"}'
    assert function(tmp_path, "posix.sh", "sh").invoke({"a": 1}) == b'{"a": 1}'


@pytest.mark.parametrize(
    ("files", "handler", "language", "message"),
    [
        ({}, "missing.sh", "executable", "no file 'missing.sh' under"),
        ({"plain.sh": False}, "plain.sh", "executable", "is not executable: `chmod +x` it"),
        ({}, "handler.sh", None, "no plugin found handler 'handler.sh'"),
    ],
)
def test_a_handler_that_cannot_run_is_an_init_error(
    function, tmp_path, files, handler, language, message
):
    for name, executable_bit in files.items():
        script(tmp_path, name, "#!/bin/sh\n", executable_bit)
    with pytest.raises(FunctionError) as raised:
        function(tmp_path, handler, language)
    assert raised.value.error_type in ("Runtime.InvalidEntrypoint", "Runtime.ImportModuleError")
    assert message in raised.value.message


def test_an_executable_without_a_shebang_gets_a_hint(function, tmp_path):
    script(tmp_path, "handler.sh", "echo '{}'\n")
    error = function(tmp_path, "handler.sh").fail({})
    assert error.error_type == "Runtime.InvalidEntrypoint"
    assert "Exec format error (add a shebang line" in error.message


def test_the_built_in_languages_are_listed_and_cheap_to_import():
    plugins = subprocess.run(
        [PYTHON, "-m", "ort_core", "plugins", "--json"],
        env=clean_environ(ORT_PLUGINS=""),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plugins.returncode == 0, plugins.stderr
    assert {
        info["name"]: (info["distribution"], info["hooks"]) for info in json.loads(plugins.stdout)
    } == {
        "executable": ("ort-core (built in)", ["launch_language"]),
        "scaleway": ("ort-core (built in)", ["launch_language"]),
    }
    imported = subprocess.run(
        [
            PYTHON,
            "-c",
            "import sys, ort_core.languages.executable, ort_core.languages.scaleway; "
            "print(' '.join(sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    expensive = {"subprocess", "selectors", "http.client", "shutil", "ort_core.workers.oneshot"}
    assert not expensive & set(imported)


# -- the one-shot helper on its own ----------------------------------------------------------


def test_a_program_that_ignores_its_input_does_not_block_the_writer():
    result = run_once(["true"], b"x" * (4 * 1024 * 1024), timeout=10)
    assert (result.returncode, result.stdout, result.ended_by) == (0, b"", None)


def test_output_over_the_limit_ends_the_program():
    process = OneShot(["yes"], log="test", max_output=100_000)
    result = process.communicate(b"", timeout=10)
    assert result.ended_by == "output limit"
    assert result.exit_description() == "signal: kill"
    assert len(result.stdout) <= 100_000


def test_a_process_that_closes_its_pipes_still_meets_its_deadline():
    started = time.monotonic()
    result = run_once(["sh", "-c", "exec >&- 2>&-; sleep 30"], timeout=0.5)
    assert time.monotonic() - started < 3
    assert (result.ended_by, result.exit_description()) == ("deadline", "signal: kill")


def test_a_process_that_escapes_its_group_does_not_hold_the_answer(tmp_path):
    pid_file = tmp_path / "escaped"
    command = f"setsid sleep 30 & echo $! > {pid_file}; sleep 0.2; echo done"
    started = time.monotonic()
    result = run_once(["sh", "-c", command], timeout=20)
    assert time.monotonic() - started < 4  # read for DRAIN_GRACE at most once it exited
    assert (result.returncode, result.stdout) == (0, b"done\n")
    [escaped] = pids_in(pid_file)
    assert running(escaped)  # out of ORT's reach by design: the test cleans up after itself
    os.kill(escaped, 9)
    assert wait_until(lambda: not running(escaped))
