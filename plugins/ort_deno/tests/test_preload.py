"""ORT_PRELOAD in Deno, in both modes: loaded before the handler, readable although the sandbox
is otherwise as tight; the invocation's traceparent; spans sent back by a preload
(docs/worker-protocol.md, "Preloads and spans"); then ort-apm's own Deno preload, tracing
fetch calls to a server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from ort_deno import sandbox

from ort_core import Context, FunctionConfig, FunctionError
from ort_core.pipeline import Pipeline

if TYPE_CHECKING:
    from conftest import Function

ROOT = Path(__file__).resolve().parents[3]
DENO_PRELOAD = ROOT / "plugins" / "ort_apm" / "ort_apm" / "preload" / "deno.ts"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"

# A test preload, not ort-apm's: it marks that it ran, times the handler through the seam, and
# pushes a span built from the context it was given.
RECORDER = """
const g = globalThis as any;
g.__ortSpans = [];
g.preloadOrder = [...(g.preloadOrder ?? []), "recorder"];
g.__ortAroundHandler = async (context: any, call: () => Promise<unknown>) => {
  const result = await call();
  g.__ortSpans.push({ name: "recorded", traceparent: context.traceparent,
                      env: Deno.env.get("TRACEPARENT") ?? null, answer: result });
  return result;
};
"""
SECOND = """
const g = globalThis as any;
g.preloadOrder = [...(g.preloadOrder ?? []), "second"];
"""
HANDLER = """
export const handler = (_event: unknown, context: any) => ({
  order: (globalThis as any).preloadOrder ?? null,
  traceparent: context.traceparent,
  env: Deno.env.get("TRACEPARENT") ?? null,
});
"""


@pytest.fixture(autouse=True)
def only_named_preloads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORT_DISABLE_PLUGINS", "ort-apm")  # only the preloads the test names


def start(
    function: Function, monkeypatch: pytest.MonkeyPatch, handler: str, preloads: list
) -> Pipeline:
    monkeypatch.setenv("ORT_PRELOAD", ":".join(str(p) for p in preloads))
    return function.start(handler)


def new_context(pipeline: Pipeline, traceparent: str | None) -> Context:
    context = Context("req-1", int(time.time() * 1000) + 30_000, pipeline.bridge.config)
    context.traceparent = traceparent
    return context


def invoke(pipeline: Pipeline, event: object, traceparent: str | None = None):
    """As a front end: the answer, then ``answered``, when the worker's spans are read."""
    context = new_context(pipeline, traceparent)
    answer = json.loads(pipeline.invoke(json.dumps(event).encode(), context))
    pipeline.answered(context)
    return answer, context


def invoke_error(pipeline: Pipeline, event: object, traceparent: str | None):
    context = new_context(pipeline, traceparent)
    with pytest.raises(FunctionError) as raised:
        pipeline.invoke(json.dumps(event).encode(), context)
    pipeline.answered(context)
    return raised.value, context


def test_preloads_run_in_order_before_the_handler_and_see_the_traceparent(
    function: Function, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    function.write("app.ts", HANDLER)
    outside = tmp_path / "preloads"  # outside the task root: readable all the same
    outside.mkdir()
    (outside / "recorder.ts").write_text(RECORDER)
    function.write("second.ts", SECOND)
    pipeline = start(function, monkeypatch, "app.handler", [outside / "recorder.ts", "second.ts"])

    answer, context = invoke(pipeline, {}, TRACEPARENT)

    assert answer == {
        "order": ["recorder", "second"],
        "traceparent": TRACEPARENT,
        "env": TRACEPARENT,
    }
    assert context.worker_spans == [
        {"name": "recorded", "traceparent": TRACEPARENT, "env": TRACEPARENT, "answer": answer}
    ]
    answer, context = invoke(pipeline, {})
    assert answer["traceparent"] is None and answer["env"] is None
    assert context.worker_spans == [
        {"name": "recorded", "traceparent": None, "env": None, "answer": answer}
    ]


def test_without_a_preload_there_are_no_spans(
    function: Function, monkeypatch: pytest.MonkeyPatch
) -> None:
    function.write("app.ts", HANDLER)
    pipeline = start(function, monkeypatch, "app.handler", [])
    answer, context = invoke(pipeline, {}, TRACEPARENT)
    assert answer == {"order": None, "traceparent": TRACEPARENT, "env": TRACEPARENT}
    assert context.worker_spans == []


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("throw new RangeError('no collector configured');", "RangeError: no collector"),
        ("this is not typescript {", "SyntaxError"),
        (None, "Module not found"),
    ],
    ids=["throws", "syntax", "missing"],
)
def test_a_broken_preload_is_an_init_error_naming_it(
    function: Function,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    source: str | None,
    message: str,
) -> None:
    function.write("app.ts", HANDLER)
    preload = tmp_path / "broken.ts"
    if source is not None:
        preload.write_text(source)
    monkeypatch.setenv("ORT_PRELOAD", str(preload))
    error = function.start_error("app.handler")
    assert error.error_type == "Runtime.InitError"
    assert f"ORT_PRELOAD {preload}" in error.message
    assert message in error.message


def test_the_preloads_files_are_readable_and_nothing_more() -> None:
    config = FunctionConfig(handler="app.handler", task_root="/var/task")
    env = {"ORT_PRELOAD": "/opt/apm/deno.ts:local/pre.ts"}

    preloads = sandbox.preload_files(config, env)

    assert preloads == ["/opt/apm/deno.ts", "/var/task/local/pre.ts"]
    assert sandbox.permission_flags(config, "", None, preloads)[0] == (
        f"--allow-read=/var/task,{sandbox.HERE},/opt/apm/deno.ts,/var/task/local/pre.ts"
    )


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
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
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
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    running = Server()
    monkeypatch.setenv("ORT_DENO_PERMISSIONS", f"--allow-net=127.0.0.1:{running.port}")
    yield running
    running.close()


CALLS = """
export const get = async (event: { url: string }) => {
  const response = await fetch(event.url);
  return { status: response.status, body: await response.text() };
};
export const post = async (event: { url: string }) => {
  const response = await fetch(new Request(event.url, { method: "POST", body: "x",
                                                        headers: { "x-a": "1" } }));
  return { status: response.status, body: await response.text() };
};
export const raises = async (event: { url: string }) => {
  await (await fetch(event.url)).text();
  throw new TypeError("after the call");
};
"""


def check_spans(spans: list, server: Server, method: str, path: str, status: int) -> dict:
    """The handler span and one client span, with the right ids, parentage and attributes;
    the server saw the client span's traceparent. Returns the client span."""
    assert [s["kind"] for s in spans] == ["client", "internal"]
    client, handler = spans
    assert (handler["traceId"], handler["spanId"], handler["parentSpanId"]) == (
        TRACE_ID,
        SPAN_ID,
        None,
    )
    assert client["name"] == method
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
    start, end = int(handler["startTimeUnixNano"]), int(handler["endTimeUnixNano"])
    assert start <= int(client["startTimeUnixNano"]) <= int(client["endTimeUnixNano"]) <= end
    assert abs(start / 1e9 - time.time()) < 60
    seen = [r for r in server.requests if r[1] == path]
    assert seen[-1][2]["traceparent"] == f"00-{TRACE_ID}-{client['spanId']}-01"
    return client


def test_apm_preload_traces_fetch(
    function: Function, monkeypatch: pytest.MonkeyPatch, server: Server
) -> None:
    function.write("calls.ts", CALLS)
    pipeline = start(function, monkeypatch, "calls.get", [DENO_PRELOAD])

    answer, context = invoke(pipeline, {"url": server.url + "/items?id=7"}, TRACEPARENT)

    assert answer == {"status": 200, "body": "hello"}
    check_spans(context.worker_spans, server, "GET", "/items?id=7", 200)
    assert context.worker_spans[1]["name"] == "calls.get"
    assert context.worker_spans[1]["attributes"] == {"code.function.name": "calls.get"}

    answer, context = invoke(pipeline, {"url": server.url + "/status/503"}, TRACEPARENT)
    assert answer == {"status": 503, "body": "hello"}
    check_spans(context.worker_spans, server, "GET", "/status/503", 503)

    answer, context = invoke(pipeline, {"url": server.url + "/plain"})  # no trace
    assert context.worker_spans == [] and "traceparent" not in server.requests[-1][2]

    post = start(function, monkeypatch, "calls.post", [DENO_PRELOAD])
    answer, context = invoke(post, {"url": server.url + "/submit"}, TRACEPARENT)
    check_spans(context.worker_spans, server, "POST", "/submit", 200)
    assert server.requests[-1][2]["x-a"] == "1"  # the handler's own headers are kept


def test_apm_preload_errors(
    function: Function, monkeypatch: pytest.MonkeyPatch, server: Server
) -> None:
    function.write("calls.ts", CALLS)
    pipeline = start(function, monkeypatch, "calls.get", [DENO_PRELOAD])
    # Port 1 is outside --allow-net: the sandbox refuses the call before any connection.
    error, context = invoke_error(pipeline, {"url": "http://127.0.0.1:1/"}, TRACEPARENT)
    client, handler = context.worker_spans
    assert client["parentSpanId"] == SPAN_ID and client["status"]["code"] == "error"
    assert client["attributes"]["error.type"] == error.error_type
    assert handler["status"] == {"code": "error", "message": error.message}

    raises = start(function, monkeypatch, "calls.raises", [DENO_PRELOAD])
    error, context = invoke_error(raises, {"url": server.url}, TRACEPARENT)
    client, handler = context.worker_spans
    assert handler["status"] == {"code": "error", "message": "after the call"}
    assert handler["attributes"]["error.type"] == "TypeError"
    assert client["attributes"]["http.response.status_code"] == 200
