"""ORT_PRELOAD in the Python worker (``ORT_PYTHON_MODE=subprocess``), the invocation's
traceparent, and spans sent back by a preload (docs/worker-protocol.md, "Preloads and
spans"); then ort-apm's own Python preload, tracing urllib calls to a server on 127.0.0.1."""

from __future__ import annotations

import json
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ort_core import Context, FunctionConfig, FunctionError
from ort_core.startup import start_function

ROOT = Path(__file__).resolve().parents[3]
PYTHON_PRELOAD = ROOT / "plugins" / "ort_apm" / "ort_apm" / "preload" / "python.py"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"

# A test preload, not ort-apm's: it marks that it ran, times the handler through the seam, and
# pushes a span built from the context it was given.
RECORDER = """
import builtins, os
builtins.__ort_spans__ = []
builtins.preload_order = getattr(builtins, "preload_order", []) + [__file__]

def around(context, call):
    result = call()
    builtins.__ort_spans__.append({"name": "recorded", "traceparent": context.traceparent,
                                   "env": os.environ.get("TRACEPARENT"), "answer": result})
    return result

builtins.__ort_around_handler__ = around
"""
SECOND = """
import builtins
builtins.preload_order = getattr(builtins, "preload_order", []) + [__file__]
"""
HANDLER = """
import builtins, os

def handler(event, context):
    return {
        "order": getattr(builtins, "preload_order", None),
        "traceparent": context.traceparent,
        "env": os.environ.get("TRACEPARENT"),
    }
"""


@pytest.fixture
def start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """Start a handler in a worker with ORT_PRELOAD set to the given files; stop it after."""
    monkeypatch.setenv("ORT_DISABLE_PLUGINS", "ort-apm")  # only the preloads the test names
    monkeypatch.setenv("ORT_PYTHON_MODE", "subprocess")
    monkeypatch.delenv("ORT_PYTHON_BINARY", raising=False)
    pipelines = []

    def start(files: dict[str, str], handler: str, preloads: list[Path | str]):
        for name, source in files.items():
            (tmp_path / name).write_text(textwrap.dedent(source))
        monkeypatch.setenv("ORT_PRELOAD", ":".join(str(p) for p in preloads))
        config = FunctionConfig(handler=handler, task_root=str(tmp_path), language="python")
        pipeline = start_function(config, {"ORT_PLUGINS": "ort-python"})
        pipelines.append(pipeline)
        return pipeline

    yield start
    for pipeline in pipelines:
        pipeline.close()


def new_context(pipeline, traceparent: str | None) -> Context:
    context = Context("req-1", int(time.time() * 1000) + 30_000, pipeline.bridge.config)
    context.traceparent = traceparent
    return context


def invoke(pipeline, event, traceparent: str | None = None) -> tuple[object, Context]:
    """As a front end: the answer, then ``answered``, when the worker's spans are read."""
    context = new_context(pipeline, traceparent)
    answer = json.loads(pipeline.invoke(json.dumps(event).encode(), context))
    pipeline.answered(context)
    return answer, context


def invoke_error(pipeline, event, traceparent: str | None) -> tuple[FunctionError, Context]:
    context = new_context(pipeline, traceparent)
    with pytest.raises(FunctionError) as raised:
        pipeline.invoke(json.dumps(event).encode(), context)
    pipeline.answered(context)
    return raised.value, context


def test_preloads_run_in_order_before_the_handler_and_see_the_traceparent(start, tmp_path):
    (tmp_path / "recorder.py").write_text(RECORDER)
    (tmp_path / "second.py").write_text(SECOND)
    pipeline = start({"app.py": HANDLER}, "app.handler", ["recorder.py", tmp_path / "second.py"])

    answer, context = invoke(pipeline, {}, TRACEPARENT)

    assert answer == {
        "order": [str(tmp_path / "recorder.py"), str(tmp_path / "second.py")],
        "traceparent": TRACEPARENT,
        "env": TRACEPARENT,
    }
    assert context.worker_spans == [
        {"name": "recorded", "traceparent": TRACEPARENT, "env": TRACEPARENT, "answer": answer}
    ]
    # The next invocation, without a trace: no TRACEPARENT left over, and the list was emptied.
    answer, context = invoke(pipeline, {})
    assert answer["traceparent"] is None and answer["env"] is None
    assert context.worker_spans == [
        {"name": "recorded", "traceparent": None, "env": None, "answer": answer}
    ]


def test_spans_follow_the_result_and_unencodable_ones_are_dropped(start, tmp_path):
    """The spans come after the result, read once the answer is delivered; spans JSON cannot
    encode are dropped, and the same worker answers the next invocation."""
    (tmp_path / "recorder.py").write_text(RECORDER)
    (tmp_path / "bad.py").write_text(
        "import builtins\n"
        "def around(context, call):\n"
        "    builtins.__ort_spans__.append({'name': 'bad', 'ids': {1, 2}})  # a set\n"
        "    return call()\n"
        "builtins.__ort_around_handler__ = around\n"
    )
    pipeline = start({"app.py": HANDLER}, "app.handler", ["recorder.py"])
    context = new_context(pipeline, TRACEPARENT)
    answer = json.loads(pipeline.invoke(b"{}", context))
    assert context.worker_spans == []  # still on their way
    pipeline.answered(context)
    assert [span["answer"] for span in context.worker_spans] == [answer]

    pipeline = start({"app.py": HANDLER}, "app.handler", ["recorder.py", "bad.py"])
    pids = set()
    for _ in range(2):
        answer, context = invoke(pipeline, {}, TRACEPARENT)
        assert answer["traceparent"] == TRACEPARENT and context.worker_spans == []
        pids.add(pipeline.bridge.worker.process.pid)
    assert len(pids) == 1


def test_without_a_preload_there_are_no_spans(start):
    pipeline = start({"app.py": HANDLER}, "app.handler", [])
    answer, context = invoke(pipeline, {}, TRACEPARENT)
    assert answer == {"order": None, "traceparent": TRACEPARENT, "env": TRACEPARENT}
    assert context.worker_spans == []


@pytest.mark.parametrize(
    ("name", "source", "message"),
    [
        ("broken.py", "raise RuntimeError('no collector configured')", "RuntimeError: no coll"),
        ("broken.py", "def broken(:", "SyntaxError"),
        ("missing.py", None, "FileNotFoundError"),
        ("preload.js", "", "not a Python file"),
    ],
    ids=["raises", "syntax", "missing", "not-python"],
)
def test_a_broken_preload_is_an_init_error_naming_it(start, tmp_path, name, source, message):
    preload = tmp_path / name
    if source is not None:
        preload.write_text(source)
    with pytest.raises(FunctionError) as raised:
        start({"app.py": HANDLER}, "app.handler", [preload])
    assert raised.value.error_type == "Runtime.InitError"
    assert f"ORT_PRELOAD {preload}" in raised.value.message
    assert message in raised.value.message


# -- ort-apm's preload ------------------------------------------------------------------------


class Server:
    """An HTTP server on 127.0.0.1 that records each request's path and headers; the path
    ``/status/N`` answers N."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append(
                    (self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
                )
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                status = int(self.path.rsplit("/", 1)[1]) if "/status/" in self.path else 200
                body = b"hello"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.close()


CALLS = """
import http.client
import urllib.error
import urllib.request


def get(event, context):
    with urllib.request.urlopen(event["url"]) as response:
        return {"status": response.status, "body": response.read().decode()}


def post(event, context):
    request = urllib.request.Request(event["url"], data=b"x", headers={"X-A": "1"})
    with urllib.request.urlopen(request) as response:
        return {"status": response.status, "body": response.read().decode()}


def not_found(event, context):
    try:
        urllib.request.urlopen(event["url"])
    except urllib.error.HTTPError as error:
        return error.code


def raises(event, context):
    urllib.request.urlopen(event["url"]).read()
    raise ValueError("after the call")
"""


def check_spans(context, server, method: str, path: str, status: int) -> dict:
    """One client span, with the right ids, parentage and attributes, within the handler's
    run as the worker timed it (``context.handler_ns``); the server saw the client span's
    traceparent. The handler's own span is ORT's to build. Returns the client span."""
    [client] = context.worker_spans
    assert client["kind"] == "client" and client["name"] == method
    assert client["traceId"] == TRACE_ID and client["parentSpanId"] == SPAN_ID
    assert len(client["spanId"]) == 16 and client["spanId"] not in (SPAN_ID, "0" * 16)
    assert client["attributes"] == {
        "http.request.method": method,
        "url.full": f"{server.url}{path}",
        "server.address": "127.0.0.1",
        "server.port": server.port,
        "http.response.status_code": status,
        **({"error.type": str(status)} if status >= 400 else {}),
    }
    assert client["status"]["code"] == ("error" if status >= 400 else "unset")
    start, end = context.handler_ns
    assert start <= client["startTimeUnixNano"] <= client["endTimeUnixNano"] <= end
    assert abs(start / 1e9 - time.time()) < 60
    seen = [r for r in server.requests if r[1] == path]
    assert seen[-1][2]["traceparent"] == f"00-{TRACE_ID}-{client['spanId']}-01"
    return client


def test_apm_preload_traces_urllib(start, server):
    pipeline = start({"calls.py": CALLS}, "calls.get", [PYTHON_PRELOAD])

    answer, context = invoke(pipeline, {"url": server.url + "/items?id=7"}, TRACEPARENT)

    assert answer == {"status": 200, "body": "hello"}
    check_spans(context, server, "GET", "/items?id=7", 200)

    post = start({}, "calls.post", [PYTHON_PRELOAD])
    answer, context = invoke(post, {"url": server.url + "/submit"}, TRACEPARENT)
    check_spans(context, server, "POST", "/submit", 200)
    assert server.requests[-1][2]["x-a"] == "1"  # the handler's own headers are kept


def test_apm_preload_errors_and_untraced_invocations(start, server):
    pipeline = start({"calls.py": CALLS}, "calls.not_found", [PYTHON_PRELOAD])
    answer, context = invoke(pipeline, {"url": server.url + "/status/404"}, TRACEPARENT)
    assert answer == 404
    check_spans(context, server, "GET", "/status/404", 404)

    # Without a traceparent: no span, no header, no timing.
    answer, context = invoke(pipeline, {"url": server.url + "/status/404"})
    assert context.worker_spans == [] and context.handler_ns is None
    assert "traceparent" not in server.requests[-1][2]

    # A refused connection: the client span fails; a failed handler is still timed.
    refused = start({}, "calls.get", [PYTHON_PRELOAD])
    error, context = invoke_error(refused, {"url": "http://127.0.0.1:1/"}, TRACEPARENT)
    assert error.error_type == "URLError"
    [client] = context.worker_spans
    assert client["parentSpanId"] == SPAN_ID and client["status"]["code"] == "error"
    assert client["attributes"]["error.type"] == "ConnectionRefusedError"
    assert "http.response.status_code" not in client["attributes"]
    start_ns, end_ns = context.handler_ns
    assert start_ns <= client["startTimeUnixNano"] <= client["endTimeUnixNano"] <= end_ns

    raises = start({}, "calls.raises", [PYTHON_PRELOAD])
    error, context = invoke_error(raises, {"url": server.url}, TRACEPARENT)
    [client] = context.worker_spans
    assert client["attributes"]["http.response.status_code"] == 200
    assert context.handler_ns is not None
