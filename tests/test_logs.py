"""The function's log as a user sees it: the output of real `ort bootstrap` runs.

Lambda's Text format (``[LEVEL]\\t<time>Z\\t<request id>\\t<message>``) or, with
``AWS_LAMBDA_LOG_FORMAT=JSON``, one JSON object a line; ``AWS_LAMBDA_LOG_LEVEL`` honoured; the
output of workers, executables and middlewares logged line by line; and no line ever made of
two writers' text.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import PYTHON, clean_environ
from runtime_api_peer import Peer, Result

from ort_core.logs import MAX_LINE

TEXT_RECORD = re.compile(
    r"\[(TRACE|DEBUG|INFO|WARNING|ERROR|CRITICAL)\]\t"
    r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\t([^\t]*)\t(.*)"
)
JSON_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
RANK = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


# -- running ORT --------------------------------------------------------------------------------


@dataclass
class Runtime:
    process: subprocess.Popen[bytes]
    peer: Peer
    log_path: Path

    def invoke(self, event: Any = None) -> Result:
        result = self.peer.invoke({} if event is None else event)
        assert result.kind == "response", (result.body, self.text())
        return result

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def lines(self) -> list[str]:
        return self.text().splitlines()

    def wait_for(self, text: str, limit: float = 30.0) -> None:
        """Until ``text`` is in the log: lines forwarded after the answer."""
        deadline = time.monotonic() + limit
        while text not in self.text():
            assert time.monotonic() < deadline, f"{text!r} never came"
            time.sleep(0.05)


@pytest.fixture
def runtime(peer: Peer, tmp_path: Path) -> Iterator[Any]:
    """``runtime(files, handler, **env)``: ``ort bootstrap`` for a folder of files (names in
    ``executable`` get the exec bit), its stdout and stderr in one log file."""
    started: list[Runtime] = []

    def start(
        files: dict[str, str], handler: str, executable: tuple[str, ...] = (), **env: str
    ) -> Runtime:
        folder = tmp_path / "task"
        for name, source in files.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source).lstrip())
            if name in executable:
                path.chmod(0o755)
        log_path = tmp_path / "runtime.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [PYTHON, "-m", "ort_core", "bootstrap"],
                env=clean_environ(
                    AWS_LAMBDA_RUNTIME_API=peer.address,
                    _HANDLER=handler,
                    LAMBDA_TASK_ROOT=str(folder),
                    **env,
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append(Runtime(process, peer, log_path))
        return started[-1]

    yield start
    for running in started:
        running.process.kill()
        running.process.wait()


def text_records(lines: list[str]) -> list[tuple[str, str, str]]:
    """(level, request id, message) of every line in Lambda's Text format."""
    found = []
    for line in lines:
        match = TEXT_RECORD.fullmatch(line)
        if match:
            found.append((match[1], match[3], match[4]))
    return found


def json_records(lines: list[str], raw: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every line as a JSON log record (lines in ``raw`` excepted), checked field by field."""
    records = []
    for line in lines:
        if line in raw:
            continue
        record = json.loads(line)
        assert isinstance(record, dict), line
        assert JSON_TIMESTAMP.fullmatch(record["timestamp"]), line
        assert record["level"] in RANK, line
        assert isinstance(record["requestId"], str), line
        assert isinstance(record["message"], str), line
        records.append(record)
    return records


# -- what each kind of function writes ------------------------------------------------------


@dataclass
class Case:
    """A function that writes ``records`` (level, message) for every invocation, answers its
    request id, and prints ``raw`` lines that are not log records (in-process prints)."""

    files: dict[str, str]
    handler: str
    records: list[tuple[str, str]]
    default: str  # the level below which nothing shows without AWS_LAMBDA_LOG_LEVEL
    env: dict[str, str]
    raw: tuple[str, ...] = ()
    executable: tuple[str, ...] = ()


CASES = {
    "python": Case(
        files={
            "app.py": """
            import logging

            log = logging.getLogger("app")

            def handler(event, context):
                log.debug("debug from python")
                log.info("info from python %s", "in-process")
                log.warning("warning from python")
                print("print from python")
                if event.get("fail"):
                    raise ValueError("failed on purpose")
                return context.aws_request_id
            """
        },
        handler="app.handler",
        records=[
            ("DEBUG", "debug from python"),
            ("INFO", "info from python in-process"),
            ("WARNING", "warning from python"),
        ],
        default="INFO",
        env={},
        raw=("print from python",),  # as AWS's Python runtime: prints are not log records
    ),
    "python-subprocess": Case(
        files={
            "app.py": """
            import logging

            log = logging.getLogger("app")

            def handler(event, context):
                print("print from the worker")
                log.debug("debug from the worker")
                log.info("info from the worker")
                log.warning("warning from the worker")
                return context.aws_request_id
            """
        },
        handler="app.handler",
        records=[
            ("INFO", "print from the worker"),
            ("DEBUG", "debug from the worker"),
            ("INFO", "info from the worker"),
            ("WARNING", "warning from the worker"),
        ],
        default="INFO",
        env={"ORT_PYTHON_MODE": "subprocess"},
    ),
    "node": Case(
        files={
            "index.js": """
            exports.handler = async (event, context) => {
              console.trace('trace from node');
              console.debug('debug from node');
              console.log('log from node %d', 1);
              console.info('info from node');
              console.warn('warn from node');
              console.error('error from node');
              process.stdout.write('raw stdout from node\\n');
              return context.awsRequestId;
            };
            """
        },
        handler="index.handler",
        records=[
            ("TRACE", "trace from node"),
            ("DEBUG", "debug from node"),
            ("INFO", "log from node 1"),
            ("INFO", "info from node"),
            ("WARNING", "warn from node"),
            ("ERROR", "error from node"),
            ("INFO", "raw stdout from node"),
        ],
        default="TRACE",  # as Lambda's Node runtime: without a level, every console method
        env={},
    ),
    "deno": Case(
        files={
            "hello.ts": """
            export const handler = (event: unknown, context: { awsRequestId: string }) => {
              console.debug("debug from deno");
              console.log("log from deno %s %d", "x", 2, { a: 1 });
              console.warn("warn from deno");
              console.error("error from deno");
              Deno.stdout.writeSync(new TextEncoder().encode("raw stdout from deno\\n"));
              return context.awsRequestId;
            };
            """
        },
        handler="hello.handler",
        records=[
            ("DEBUG", "debug from deno"),
            ("INFO", "log from deno x 2 { a: 1 }"),
            ("WARNING", "warn from deno"),
            ("ERROR", "error from deno"),
            ("INFO", "raw stdout from deno"),
        ],
        default="TRACE",
        env={},
    ),
    "bash": Case(
        files={
            "handler.sh": """
            #!/bin/bash
            cat > /dev/null
            echo "stderr from bash" >&2
            printf '\\037Wwarning from bash, marked\\n' >&2
            echo "\\"$ORT_REQUEST_ID\\""
            """
        },
        handler="handler.sh",
        records=[("INFO", "stderr from bash"), ("WARNING", "warning from bash, marked")],
        default="TRACE",
        env={},
        executable=("handler.sh",),
    ),
}


def shown(case: Case, level: str | None) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(the records a run at ``level`` shows, those it drops)."""
    floor = RANK[level or case.default]
    return (
        {record for record in case.records if RANK[record[0]] >= floor},
        {record for record in case.records if RANK[record[0]] < floor},
    )


def start_case(runtime: Any, name: str, **env: str) -> tuple[Runtime, Case]:
    case = CASES[name]
    return runtime(case.files, case.handler, case.executable, **case.env, **env), case


# -- Text, JSON and levels, for every kind of function --------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_text_lines_carry_the_level_and_the_request_id_of_their_invocation(runtime, name):
    running, case = start_case(runtime, name)
    ids = [running.invoke().json() for _ in range(2)]
    lines = running.lines()
    records = text_records(lines)
    expected, dropped = shown(case, None)
    for request_id in ids:
        mine = {(level, message) for level, tag, message in records if tag == request_id}
        assert mine == expected, "\n".join(lines)
    assert not any(message == text for _, text in dropped for *_, message in records)
    for raw in case.raw:
        assert lines.count(raw) == 2, "\n".join(lines)


@pytest.mark.parametrize("name", list(CASES))
def test_json_format_makes_every_log_line_one_object(runtime, name):
    running, case = start_case(runtime, name, AWS_LAMBDA_LOG_FORMAT="JSON")
    ids = [running.invoke().json() for _ in range(2)]
    lines = running.lines()
    records = json_records(lines, raw=case.raw)
    expected, _ = shown(case, None)
    for request_id in ids:
        mine = {(r["level"], r["message"]) for r in records if r["requestId"] == request_id}
        assert mine == expected, "\n".join(lines)


@pytest.mark.parametrize("level", ["WARN", "DEBUG"])
@pytest.mark.parametrize("name", list(CASES))
def test_the_log_level_drops_what_is_below_it(runtime, name, level):
    running, case = start_case(runtime, name, AWS_LAMBDA_LOG_LEVEL=level)
    request_id = running.invoke().json()
    records = text_records(running.lines())
    expected, dropped = shown(case, "WARNING" if level == "WARN" else level)
    assert {(lvl, message) for lvl, tag, message in records if tag == request_id} == expected
    assert not any(message == text for _, text in dropped for *_, message in records)


def test_at_warn_orts_own_errors_stay_and_info_records_go(runtime):
    running, _ = start_case(runtime, "python", AWS_LAMBDA_LOG_LEVEL="WARN")
    failed = running.peer.invoke({"fail": True})
    assert failed.kind == "error"
    request_id = failed.json()["requestId"]
    records = text_records(running.lines())
    assert ("ERROR", request_id, "ValueError: failed on purpose") in records  # ORT's own
    assert ("WARNING", request_id, "warning from python") in records
    assert not [record for record in records if record[0] in ("DEBUG", "INFO")]


def test_multi_line_messages_are_one_json_object(runtime):
    running = runtime(
        {
            "index.js": """
            exports.handler = async () => {
              console.error(new Error('boom from node'));
              console.log({ nested: { list: ['a'.repeat(40), 'b'.repeat(40)] } });
              return 'done';
            };
            """
        },
        "index.handler",
        AWS_LAMBDA_LOG_FORMAT="JSON",
    )
    running.invoke()
    records = json_records(running.lines())  # stderr's and stdout's, in either order
    assert sorted(record["level"] for record in records) == ["ERROR", "INFO"]
    for record in records:
        if record["level"] == "ERROR":
            assert record["message"].startswith("Error: boom from node\n    at ")
        else:
            assert record["message"].startswith("{\n  nested: {\n    list: [")


def test_a_python_workers_exception_is_one_record(runtime):
    running = runtime(
        {
            "app.py": """
            import logging

            def handler(event, context):
                try:
                    1 / 0
                except ZeroDivisionError:
                    logging.getLogger("app").exception("failed on purpose")
                return context.aws_request_id
            """
        },
        "app.handler",
        ORT_PYTHON_MODE="subprocess",
        AWS_LAMBDA_LOG_FORMAT="JSON",
    )
    request_id = running.invoke().json()
    [record] = json_records(running.lines())
    assert (record["level"], record["requestId"]) == ("ERROR", request_id)
    assert record["message"].startswith("failed on purpose\nTraceback (most recent call last):")
    assert record["message"].endswith("ZeroDivisionError: division by zero")


def test_what_a_node_module_logs_while_loading_is_in_the_log(runtime):
    running = runtime(
        {
            "index.js": """
            console.log('node module loaded');
            exports.handler = async () => 'ok';
            """
        },
        "index.handler",
    )
    running.invoke()
    assert ("INFO", "", "node module loaded") in text_records(running.lines())


# -- whole lines ------------------------------------------------------------------------------

PRINTER = """
import logging
import sys
import threading

LINE = "p" * 20_000


def handler(event, context):
    sys.setswitchinterval(1e-6)  # switch threads as often as it can
    stop = threading.Event()

    def chatter():
        number = 0
        while not stop.is_set():
            logging.getLogger("thread").info("from the thread %d %s", number, "t" * 300)
            number += 1

    thread = threading.Thread(target=chatter)
    if event.get("thread"):
        thread.start()
    for number in range(event["prints"]):
        print(f"print {number} {LINE}")
    stop.set()
    if event.get("thread"):
        thread.join()
    return context.aws_request_id
"""


def assert_whole_lines(lines: list[str], prints: int, logged: re.Pattern[str]) -> None:
    """Every line is one print, exactly, or one whole log record; every print is there."""
    printed = []
    for line in lines:
        if line.startswith("print "):
            number, _, rest = line[len("print ") :].partition(" ")
            assert rest == "p" * 20_000, f"a print's line holds something else: {line[:200]!r}"
            printed.append(int(number))
        else:
            record = TEXT_RECORD.fullmatch(line)
            assert record and logged.fullmatch(record[4]), f"not a whole line: {line[:200]!r}"
    assert printed == list(range(prints))


def test_prints_and_records_from_other_threads_never_share_a_line(runtime):
    running = runtime({"app.py": PRINTER}, "app.handler")
    running.invoke({"prints": 300, "thread": True})
    lines = running.lines()
    assert_whole_lines(lines, 300, re.compile(r"from the thread \d+ t{300}"))
    assert any("from the thread" in line for line in lines)


MIDDLEWARE = f"""#!{PYTHON}
# ort-middleware: persistent
import sys
import threading


def chatter():
    for number in range(20_000):
        print(f"middleware line {{number}} " + "m" * 200, file=sys.stderr, flush=True)


for line in sys.stdin:
    if '"before"' in line:
        threading.Thread(target=chatter, daemon=True).start()
    print("{{}}", flush=True)
"""


def test_a_middlewares_stderr_never_splits_the_handlers_prints(runtime, tmp_path):
    middlewares = tmp_path / "middlewares"
    middlewares.mkdir()
    (middlewares / "chatty").write_text(MIDDLEWARE)
    (middlewares / "chatty").chmod(0o755)
    running = runtime(
        {"app.py": PRINTER},
        "app.handler",
        ORT_MIDDLEWARE_DIR=str(middlewares),
        ORT_MIDDLEWARES="chatty",
    )
    running.invoke({"prints": 1000})
    running.wait_for("middleware line 19999 ")  # all of them, so none is half-written
    assert_whole_lines(running.lines(), 1000, re.compile(r"middleware line \d+ m{200}"))


def test_an_unfinished_line_is_written_whole_before_the_answer(runtime):
    running = runtime(
        {
            "app.py": """
            import logging

            def handler(event, context):
                if event.get("long"):
                    print("z" * (3 * 256 * 1024))
                    return "long"
                print("begun,", end="")
                logging.getLogger("app").info("a whole record")
                print(" and finished")
                print("left open", end="", flush=event.get("flush", False))
                return context.aws_request_id
            """
        },
        "app.handler",
    )
    first = running.invoke().json()
    lines = running.lines()
    assert text_records(lines[-3:-2]) == [("INFO", first, "a whole record")]
    assert lines[-2:] == ["begun, and finished", "left open"]  # written before the answer
    running.invoke({"flush": True})
    lines = running.lines()
    assert lines.count("left open") == 2
    running.invoke({"long": True})
    assert running.lines()[-1] == "z" * (3 * 256 * 1024)  # one line, whatever its length


def test_a_worker_line_longer_than_max_line_comes_in_pieces(runtime):
    running = runtime(
        {
            "index.js": """
            exports.handler = async (event, context) => {
              process.stdout.write('y'.repeat(600 * 1024) + '\\n');
              return context.awsRequestId;
            };
            """
        },
        "index.handler",
    )
    request_id = running.invoke().json()
    pieces = [message for _, tag, message in text_records(running.lines()) if tag == request_id]
    assert "".join(pieces) == "y" * (600 * 1024)
    assert len(pieces) == 3 and all(len(piece) <= MAX_LINE for piece in pieces)


def test_worker_lines_written_just_before_the_answer_carry_its_request_id(runtime, peer):
    """Events queued back to back: the next one starts the moment an answer is posted."""
    running = runtime(
        {
            "index.js": """
            exports.handler = async (event, context) => {
              for (let i = 0; i < 50; i++) console.log(`line ${i} of ${context.awsRequestId}`);
              return context.awsRequestId;
            };
            """
        },
        "index.handler",
    )
    running.invoke()  # started
    ids = [str(uuid.uuid4()) for _ in range(30)]
    for request_id in ids:
        peer.results[request_id] = queue.Queue()
        peer.events.put((request_id, b"{}", {}))
    for request_id in ids:
        assert peer.results[request_id].get(timeout=30).json() == request_id
    records = text_records(running.lines())
    for request_id in ids:
        mine = [message for _, tag, message in records if tag == request_id]
        assert mine == [f"line {i} of {request_id}" for i in range(50)]


def test_ort_invoke_keeps_the_answer_on_stdout_and_whole_log_lines_on_stderr(tmp_path):
    (tmp_path / "app.py").write_text(PRINTER)
    result = subprocess.run(
        [PYTHON, "-m", "ort_core", "invoke", "--handler", "app.handler", "--event", "-"],
        input=b'{"prints": 200, "thread": true}',
        cwd=tmp_path,
        env=clean_environ(),
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    request_id = json.loads(result.stdout)
    lines = result.stderr.decode().splitlines()
    assert_whole_lines(lines, 200, re.compile(r"from the thread \d+ t{300}"))
    assert {tag for _, tag, _ in text_records(lines)} == {request_id}
