"""ORT_PRELOAD in the Node worker, the invocation's traceparent, and spans sent back by a preload
(docs/worker-protocol.md, "Preloads and spans"); then ort-apm's own Node preload, tracing http
and fetch calls to a server on 127.0.0.1."""

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
NODE_PRELOAD = ROOT / "plugins" / "ort_apm" / "ort_apm" / "preload" / "node.cjs"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"

# A test preload, not ort-apm's: it marks that it ran, times the handler through the seam, and
# pushes a span built from the context it was given.
RECORDER = """
globalThis.__ortSpans = [];
globalThis.preloadOrder = (globalThis.preloadOrder || []).concat(__filename);
globalThis.__ortAroundHandler = async (context, call) => {
  const result = await call();
  globalThis.__ortSpans.push({name: 'recorded', traceparent: context.traceparent,
                              env: process.env.TRACEPARENT, answer: result});
  return result;
};
"""
SECOND = "globalThis.preloadOrder = (globalThis.preloadOrder || []).concat(__filename);\n"
HANDLER = """
exports.handler = async (event, context) => ({
  order: globalThis.preloadOrder || null,
  traceparent: context.traceparent,
  env: process.env.TRACEPARENT ?? null,
});
exports.later = async () => process.env.TRACEPARENT ?? null;
"""


@pytest.fixture
def start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """Start a handler with ORT_PRELOAD set to the given files; stop every worker after."""
    monkeypatch.setenv("ORT_DISABLE_PLUGINS", "ort-apm")  # only the preloads the test names
    pipelines = []

    def start(files: dict[str, str], handler: str, preloads: list[Path | str]):
        for name, source in files.items():
            (tmp_path / name).write_text(textwrap.dedent(source))
        monkeypatch.setenv("ORT_PRELOAD", ":".join(str(p) for p in preloads))
        config = FunctionConfig(handler=handler, task_root=str(tmp_path), language="node")
        pipeline = start_function(config, {"ORT_PLUGINS": "ort-node"})
        pipelines.append(pipeline)
        return pipeline

    yield start
    for pipeline in pipelines:
        pipeline.close()


def invoke(pipeline, event, traceparent: str | None = None) -> tuple[object, Context]:
    """One invocation as a front end runs it: the answer, then ``answered`` (the worker's
    spans follow its result, and are read then)."""
    context = Context("req-1", int(time.time() * 1000) + 30_000, pipeline.bridge.config)
    context.traceparent = traceparent
    answer = pipeline.invoke(json.dumps(event).encode(), context)
    pipeline.answered(context)
    return json.loads(answer), context


def test_preloads_run_in_order_before_the_handler_and_see_the_traceparent(start, tmp_path):
    (tmp_path / "recorder.cjs").write_text(RECORDER)
    (tmp_path / "second.cjs").write_text(SECOND)
    pipeline = start({"index.js": HANDLER}, "index.handler", ["recorder.cjs", "second.cjs"])

    answer, context = invoke(pipeline, {}, TRACEPARENT)

    assert answer == {
        "order": [str(tmp_path / "recorder.cjs"), str(tmp_path / "second.cjs")],
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
        {"name": "recorded", "traceparent": None, "answer": answer}  # env: undefined
    ]


def test_spans_follow_the_result_and_are_read_after_the_answer(start, tmp_path):
    """The answer does not wait for the spans: they arrive in a message of their own, read
    once the answer is delivered, or by the next invocation when nobody asked."""
    (tmp_path / "recorder.cjs").write_text(RECORDER)
    pipeline = start({"index.js": HANDLER}, "index.handler", ["recorder.cjs"])
    config = pipeline.bridge.config
    first = Context("req-1", int(time.time() * 1000) + 30_000, config)
    first.traceparent = TRACEPARENT
    answer = json.loads(pipeline.invoke(b"{}", first))
    assert first.worker_spans == []  # still on their way
    pipeline.answered(first)
    assert [span["answer"] for span in first.worker_spans] == [answer]

    second, third = (Context(f"req-{n}", int(time.time() * 1000) + 30_000, config) for n in (2, 3))
    second_answer = json.loads(pipeline.invoke(b"{}", second))  # no answered(): never read...
    third_answer = json.loads(pipeline.invoke(b"{}", third))  # ...until the next invocation
    assert [span["answer"] for span in second.worker_spans] == [second_answer]
    pipeline.answered(third)
    assert [span["answer"] for span in third.worker_spans] == [third_answer]


def test_spans_that_cannot_be_encoded_are_dropped_and_the_worker_goes_on(start, tmp_path):
    (tmp_path / "bigint.cjs").write_text(
        "globalThis.__ortSpans = [];\n"
        "globalThis.__ortAroundHandler = async (context, call) => {\n"
        "  globalThis.__ortSpans.push({ name: 'bad', start: 1n });\n"
        "  return call();\n"
        "};\n"
    )
    pipeline = start({"index.js": HANDLER}, "index.handler", ["bigint.cjs"])
    pids = set()
    for _ in range(2):
        answer, context = invoke(pipeline, {}, TRACEPARENT)
        assert answer["traceparent"] == TRACEPARENT
        assert context.worker_spans == []
        pids.add(pipeline.bridge.worker.process.pid)
    assert len(pids) == 1  # the same worker: nothing broke


ENVIRONMENT = """
const { execFileSync } = require('node:child_process');
exports.handler = async (event) => {
  const seen = {
    read: process.env.TRACEPARENT ?? null,
    in: 'TRACEPARENT' in process.env,
    keys: Object.keys(process.env).includes('TRACEPARENT'),
    spread: { ...process.env }.TRACEPARENT ?? null,
    child: execFileSync('sh', ['-c', 'echo "${TRACEPARENT-unset}"']).toString().trim(),
    // the C environment (what setenv() changes), as Node's diagnostic report reads it
    setenv: process.report.getReport().environmentVariables.TRACEPARENT ?? null,
  };
  if (event.own) process.env.TRACEPARENT = event.own;
  return seen;
};
"""


def test_the_traceparent_is_in_process_env_and_childrens_without_setenv(start):
    """JavaScript and spawned children see the invocation's TRACEPARENT, only while it runs,
    and the C environment never gets it: setenv() keeps every value it is given, for good."""
    pipeline = start({"index.js": ENVIRONMENT}, "index.handler", [])
    traced = {
        "read": TRACEPARENT,
        "in": True,
        "keys": True,
        "spread": TRACEPARENT,
        "child": TRACEPARENT,
        "setenv": None,
    }
    untraced = {"read": None, "in": False, "keys": False, "spread": None, "child": "unset"}
    assert invoke(pipeline, {}, TRACEPARENT)[0] == traced
    assert invoke(pipeline, {})[0] == {**untraced, "setenv": None}
    # the function's own value is its own, as any variable it sets; a traced invocation
    # shows its TRACEPARENT over it
    own = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    assert invoke(pipeline, {"own": own}, TRACEPARENT)[0] == traced
    assert invoke(pipeline, {})[0] == {
        "read": own,
        "in": True,
        "keys": True,
        "spread": own,
        "child": own,
        "setenv": own,
    }
    assert invoke(pipeline, {}, TRACEPARENT)[0] == {**traced, "setenv": own}


def test_without_a_preload_there_are_no_spans(start):
    pipeline = start({"index.js": HANDLER}, "index.handler", [])
    answer, context = invoke(pipeline, {}, TRACEPARENT)
    assert answer == {"order": None, "traceparent": TRACEPARENT, "env": TRACEPARENT}
    assert context.worker_spans == []


def test_an_esm_preload_is_imported(start, tmp_path):
    (tmp_path / "esm.mjs").write_text("globalThis.preloadOrder = ['esm'];\n")
    pipeline = start({"index.js": HANDLER}, "index.handler", [tmp_path / "esm.mjs"])
    assert invoke(pipeline, {})[0]["order"] == ["esm"]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("throw new RangeError('no collector configured');", "RangeError: no collector configured"),
        ("this is not javascript", "SyntaxError"),
        (None, "Cannot find module"),
    ],
    ids=["throws", "syntax", "missing"],
)
def test_a_broken_preload_is_an_init_error_naming_it(start, tmp_path, source, message):
    preload = tmp_path / "broken.cjs"
    if source is not None:
        preload.write_text(source)
    with pytest.raises(FunctionError) as raised:
        start({"index.js": HANDLER}, "index.handler", [preload])
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
const http = require('node:http');
function get(url, options = {}) {
  return new Promise((resolve, reject) => {
    http.get(url, options, (res) => {
      let body = '';
      res.on('data', (chunk) => { body += chunk; });
      res.on('end', () => resolve({status: res.statusCode, body}));
    }).on('error', reject);
  });
}
exports.httpGet = async (event) => get(event.url);
exports.fetch = async (event) => {
  const response = await fetch(event.url, {method: 'POST', body: 'x', headers: {'x-a': '1'}});
  return {status: response.status, body: await response.text()};
};
exports.both = async (event) => [await get(event.url + '/status/404'), await fetch(event.url)
  .then((r) => r.status)];
exports.refused = async (event) => get(event.url);
exports.throws = async (event) => { await get(event.url); throw new TypeError('after the call'); };
"""


def epoch_times(span: dict, offset_ns: int) -> tuple[int, int]:
    """A span's times as epoch nanoseconds: the Node preload sends monotonic readings."""
    return (
        int(span["startMonotonicNano"]) + offset_ns,
        int(span["endMonotonicNano"]) + offset_ns,
    )


def check_spans(context, server, method: str, path: str, status: int, client=None) -> dict:
    """A client span (the only one, unless given), with the right ids, parentage and
    attributes, within the handler's run as the worker timed it (``context.handler_ns``); the
    server saw its traceparent. The handler's own span is ORT's to build. Returns it."""
    if client is None:
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
    client_start, client_end = epoch_times(client, time.time_ns() - time.monotonic_ns())
    assert start <= client_start <= client_end <= end
    assert abs(start / 1e9 - time.time()) < 60
    seen = [r for r in server.requests if r[1] == path]
    assert seen[-1][2]["traceparent"] == f"00-{TRACE_ID}-{client['spanId']}-01"
    return client


def test_apm_preload_traces_http_get(start, server):
    pipeline = start({"calls.js": CALLS}, "calls.httpGet", [NODE_PRELOAD])

    answer, context = invoke(pipeline, {"url": server.url + "/items?id=7"}, TRACEPARENT)

    assert answer == {"status": 200, "body": "hello"}
    check_spans(context, server, "GET", "/items?id=7", 200)


ESM_CALLS = """
import { request } from 'node:https';
import http from 'node:http';
export const handler = (event) => new Promise((resolve, reject) => {
  http.get(event.url, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); })
    .on('error', reject);
});
"""


def test_apm_preload_traces_http_imported_by_an_es_module(start, server):
    pipeline = start({"esm.mjs": ESM_CALLS}, "esm.handler", [NODE_PRELOAD])

    answer, context = invoke(pipeline, {"url": server.url + "/esm"}, TRACEPARENT)

    assert answer == 200
    check_spans(context, server, "GET", "/esm", 200)


def test_apm_preload_traces_fetch(start, server):
    pipeline = start({"calls.js": CALLS}, "calls.fetch", [NODE_PRELOAD])

    answer, context = invoke(pipeline, {"url": server.url + "/submit"}, TRACEPARENT)

    assert answer == {"status": 200, "body": "hello"}
    check_spans(context, server, "POST", "/submit", 200)
    assert server.requests[-1][2]["x-a"] == "1"  # the handler's own headers are kept


def test_apm_preload_errors_and_untraced_invocations(start, server):
    pipeline = start({"calls.js": CALLS}, "calls.both", [NODE_PRELOAD])
    answer, context = invoke(pipeline, {"url": server.url}, TRACEPARENT)
    assert answer == [{"status": 404, "body": "hello"}, 200]
    assert [s["kind"] for s in context.worker_spans] == ["client", "client"]
    check_spans(context, server, "GET", "/status/404", 404, context.worker_spans[0])

    # Without a traceparent: no span, no header, no timing.
    answer, context = invoke(pipeline, {"url": server.url})
    assert context.worker_spans == [] and context.handler_ns is None
    assert "traceparent" not in server.requests[-1][2]

    # A refused connection: the client span fails; a throwing handler is still timed.
    error, context = invoke_error(start({}, "calls.refused", [NODE_PRELOAD]), "http://127.0.0.1:1")
    assert "ECONNREFUSED" in error.message
    [client] = context.worker_spans
    assert client["parentSpanId"] == SPAN_ID and client["status"]["code"] == "error"
    assert client["attributes"]["error.type"] == "ECONNREFUSED"
    assert "http.response.status_code" not in client["attributes"]

    error, context = invoke_error(start({}, "calls.throws", [NODE_PRELOAD]), server.url)
    assert error.message == "after the call"
    [client] = context.worker_spans
    start_ns, end_ns = context.handler_ns
    offset = time.time_ns() - time.monotonic_ns()
    assert start_ns <= epoch_times(client, offset)[0] <= epoch_times(client, offset)[1] <= end_ns


def invoke_error(pipeline, url: str) -> tuple[FunctionError, Context]:
    context = Context("req-1", int(time.time() * 1000) + 30_000, pipeline.bridge.config)
    context.traceparent = TRACEPARENT
    with pytest.raises(FunctionError) as raised:
        pipeline.invoke(json.dumps({"url": url}).encode(), context)
    pipeline.answered(context)
    return raised.value, context
