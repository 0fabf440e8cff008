"""ort-apm around handlers in language workers, through ``ort bootstrap``: Node, a Python
subprocess worker (``ORT_PYTHON_MODE=subprocess``) and Deno.

These depend on the worker side: ort-apm's preloads (``ort_apm/preload/``), loaded through
``ORT_PRELOAD`` (which ort-apm's ``ort.worker_env`` entry point sets), and workers that send
the spans back with their results.
"""

from __future__ import annotations

import pytest
from apm_traces import (
    assert_exported_after_the_answer_before_the_next_event,
    assert_invocation_span,
    assert_nested,
    one,
    server_span,
    trace,
    traceparent_ids,
)

PYTHON_HANDLER = """
import os, time, urllib.request


def handler(event, context):
    if event.get("fail"):
        raise ValueError("boom")
    time.sleep(event.get("sleep", 0) / 1000)
    out = None
    if event.get("url"):
        with urllib.request.urlopen(event["url"]) as response:
            out = response.read().decode()
    return {
        "request_id": context.aws_request_id,
        "traceparent": context.traceparent,
        "env": os.environ.get("TRACEPARENT"),
        "out": out,
    }
"""

NODE_HANDLER = """
const http = require("node:http");

exports.handler = async (event, context) => {
  if (event.fail) throw new TypeError("boom");
  if (event.sleep) await new Promise((done) => setTimeout(done, event.sleep));
  let out = null;
  if (event.url) {
    out = await new Promise((resolve, reject) => {
      http.get(event.url, (response) => {
        let body = "";
        response.on("data", (chunk) => (body += chunk));
        response.on("end", () => resolve(body));
      }).on("error", reject);
    });
  }
  if (event.fetch) out = await (await fetch(event.fetch)).text();
  return {
    request_id: context.awsRequestId,
    traceparent: context.traceparent,
    env: process.env.TRACEPARENT,
    out,
  };
};
"""

DENO_HANDLER = """
export const handler = async (event: any, context: any) => {
  if (event.fail) throw new TypeError("boom");
  if (event.sleep) await new Promise((done) => setTimeout(done, event.sleep));
  let out = null;
  if (event.url || event.fetch) out = await (await fetch(event.url || event.fetch)).text();
  return {
    request_id: context.awsRequestId,
    traceparent: context.traceparent,
    env: Deno.env.get("TRACEPARENT") ?? null,
    out,
  };
};
"""

# case: (preload language, files, environment, bridge step, error type of {"fail": true})
CASES = {
    "node": (
        "node",
        {"index.js": NODE_HANDLER},
        {"_HANDLER": "index.handler", "ORT_LANGUAGE": "node"},
        "bridge:node",
        "TypeError",
    ),
    "python-subprocess": (
        "python",
        {"app.py": PYTHON_HANDLER},
        {"_HANDLER": "app.handler", "ORT_PYTHON_MODE": "subprocess"},
        "bridge:python",
        "ValueError",
    ),
    "deno": (
        "deno",
        {"handler.ts": DENO_HANDLER},
        {
            "_HANDLER": "handler.handler",
            "ORT_LANGUAGE": "deno",
            "ORT_DENO_PERMISSIONS": "--allow-net=127.0.0.1 --allow-env=TRACEPARENT",
        },
        "bridge:deno",
        "TypeError",
    ),
}


def case_params() -> list:
    return [
        pytest.param(
            name,
            marks=[pytest.mark.preloads],
        )
        for name in CASES
    ]


def start_case(start, receiver, case: str, deadline_ms: int | None = None, **env: str):
    _, files, case_env, _, _ = CASES[case]
    return start(
        files, deadline_ms, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, **case_env, **env
    )


@pytest.mark.parametrize("case", case_params())
def test_worker_handler_and_http_spans_nest_under_the_invocation(case, start, receiver, downstream):
    bridge_step = CASES[case][3]
    runtime = start_case(start, receiver, case, SLSMIDDLEWARES="pass")
    results = [runtime.peer.invoke({"url": downstream.url}) for _ in range(2)]
    for index, result in enumerate(results):
        assert result.kind == "response", (result.body, runtime.log)
        answer = result.json()
        assert answer["out"] == "downstream says hello"
        trace_id, handler_id, flags = traceparent_ids(answer["traceparent"])
        assert flags == "01"
        assert answer["env"] == answer["traceparent"]

        spans = trace(receiver, trace_id, count=6)
        server = server_span(spans)
        assert_invocation_span(server, answer["request_id"], coldstart=index == 0, trigger="other")
        bridge = one(spans, name=bridge_step)
        assert_nested(bridge, server)
        for hook in ("before", "after"):
            assert_nested(one(spans, name=f"middleware:pass:{hook}"), server)
        handler = one(spans, span_id=handler_id)  # the worker's, with the id ORT allocated
        assert_nested(handler, bridge)
        client = one(spans, kind="client")
        assert_nested(client, handler)
        assert client["attributes"]["http.request.method"] == "GET"
        assert client["attributes"]["url.full"] == downstream.url
        assert client["attributes"]["server.address"] == "127.0.0.1"
        assert client["attributes"]["http.response.status_code"] == 200
        assert downstream.traceparents[index].split("-")[1:3] == [trace_id, client["span_id"]]
        assert_exported_after_the_answer_before_the_next_event(spans, runtime.peer, result)


@pytest.mark.parametrize("case", case_params())
def test_worker_errors_and_timeouts_give_error_statuses_before_the_answer(case, start, receiver):
    error_type = CASES[case][4]
    runtime = start_case(start, receiver, case, ORT_TIMEOUT_MARGIN_MS="400")
    result = runtime.peer.invoke({"fail": True})
    assert result.kind == "error" and result.json()["errorType"] == error_type, result.body
    failed = receiver.wait_for(
        lambda: [s for s in receiver.spans() if s["kind"] == "server" and s["status"] == "error"]
    )
    server = one(failed, kind="server")
    assert server["attributes"]["error.type"] == error_type
    assert_exported_after_the_answer_before_the_next_event([server], runtime.peer, result)
    handler = one(trace(receiver, server["trace_id"], count=3), name=CASES[case][2]["_HANDLER"])
    assert handler["status"] == "error" and "boom" in handler["message"]

    # the worker is ready before the first event: the deadline is the handler's alone
    timed_out = start_case(start, receiver, case, deadline_ms=1500, ORT_TIMEOUT_MARGIN_MS="400")
    result = timed_out.peer.invoke({"sleep": 30_000})
    assert result.kind == "error" and result.json()["errorType"] == "Sandbox.Timedout"
    servers = [
        s
        for s in receiver.spans()
        if s["kind"] == "server" and s["attributes"].get("error.type") == "Sandbox.Timedout"
    ]
    assert len(servers) == 1, receiver.spans()
    assert servers[0]["received_ms"] <= result.received_ms
    assert timed_out.peer.invoke({}).kind == "response"  # a fresh worker: the runtime goes on


@pytest.mark.parametrize("case", case_params())
def test_flush_before_answer_has_the_workers_spans_before_the_answer(case, start, receiver):
    """The worker sends its spans after its result; with ``ORT_APM_FLUSH=before_answer``
    ort-apm reads them before it exports, so they too are in before the answer."""
    runtime = start_case(start, receiver, case, ORT_APM_FLUSH="before_answer")
    for _ in range(2):
        result = runtime.peer.invoke({})
        assert result.kind == "response", (result.body, runtime.log)
        trace_id, handler_id, _ = traceparent_ids(result.json()["traceparent"])
        spans = trace(receiver, trace_id, count=3)
        assert one(spans, span_id=handler_id)["name"] == CASES[case][2]["_HANDLER"]
        assert max(span["received_ms"] for span in spans) <= result.received_ms


@pytest.mark.parametrize("case", case_params())
def test_an_unsampled_invocation_passes_its_flags_downstream_and_exports_no_span(
    case, start, receiver, downstream
):
    runtime = start_case(start, receiver, case)
    unsampled = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
    result = runtime.peer.invoke(
        {"url": downstream.url}, headers={"Lambda-Runtime-Trace-Id": unsampled}
    )
    assert result.kind == "response", (result.body, runtime.log)
    trace_id, _, flags = traceparent_ids(result.json()["traceparent"])
    assert flags == "00"
    assert downstream.traceparents[0].split("-")[1] == trace_id
    assert downstream.traceparents[0].endswith("-00")  # the downstream service samples alike
    runtime.peer.wait_for_next()  # the export, had there been one, is done
    assert receiver.spans() == []


@pytest.mark.preloads
def test_a_traced_worker_still_gets_the_events_own_bytes(start, receiver):
    """ort-apm only reads the event (``observe_event``), so ORT hands the worker the bytes it
    received. Encoded again they would say something else: Python reads the integer ``-0`` as
    0, where JavaScript keeps -0."""
    handler = """
    exports.handler = async (event, context) => ({
      negativeZero: Object.is(event.v, -0),
      traceparent: context.traceparent,
    });
    """
    runtime = start(
        {"index.js": handler},
        _HANDLER="index.handler",
        ORT_LANGUAGE="node",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
    )
    result = runtime.peer.invoke(b'{"v": -0}')
    assert result.kind == "response", (result.body, runtime.log)
    answer = result.json()
    assert answer["negativeZero"] is True
    trace_id, _, _ = traceparent_ids(answer["traceparent"])  # traced all the same
    assert server_span(trace(receiver, trace_id, count=3))["name"] == "traced"
