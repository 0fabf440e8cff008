"""ort-apm around a Python handler in ORT's own process, through ``ort bootstrap``, against a
real OTLP/HTTP receiver (conftest.py). In this mode ORT's process is the handler's: ort-apm
records the handler span and its outgoing HTTP spans itself."""

from __future__ import annotations

import time

import pytest
from apm_traces import (
    assert_exported_after_the_answer_before_the_next_event,
    assert_invocation_span,
    assert_nested,
    attributes,
    closed_port,
    one,
    server_span,
    trace,
    traceparent_ids,
)

HANDLER = """
import os, time, urllib.request


def handler(event, context):
    if not isinstance(event, dict):  # a CloudEvent
        event = {}
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
FILES = {"app.py": HANDLER}
XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


def start_traced(start, receiver, **env):
    return start(
        FILES, _HANDLER="app.handler", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, **env
    )


def test_invocation_middleware_handler_and_http_spans_nest_and_arrive_before_the_next_event(
    start, receiver, downstream
):
    runtime = start_traced(start, receiver, SLSMIDDLEWARES="pass")
    result = runtime.peer.invoke({"url": downstream.url})
    assert result.kind == "response", result.body
    answer = result.json()
    assert answer["out"] == "downstream says hello"
    trace_id, handler_id, flags = traceparent_ids(answer["traceparent"])
    assert flags == "01"
    assert answer["env"] == answer["traceparent"]  # TRACEPARENT during the invocation

    spans = trace(receiver, trace_id, count=6)
    server = server_span(spans)
    assert_invocation_span(server, answer["request_id"], coldstart=True, trigger="other")
    assert server["parent_id"] is None and server["status"] == "unset"
    before = one(spans, name="middleware:pass:before")
    after = one(spans, name="middleware:pass:after")
    bridge = one(spans, name="bridge:python")
    for step in (before, bridge, after):
        assert_nested(step, server)
        assert step["kind"] == "internal"
    assert before["end_ns"] <= bridge["start_ns"] and bridge["end_ns"] <= after["start_ns"]
    assert after["attributes"]["ort.middleware.name"] == "pass"
    handler = one(spans, span_id=handler_id)
    assert handler["name"] == "app.handler"
    assert_nested(handler, bridge)
    client = one(spans, kind="client")
    assert_nested(client, handler)
    assert client["attributes"]["http.request.method"] == "GET"
    assert client["attributes"]["url.full"] == downstream.url
    assert client["attributes"]["server.address"] == "127.0.0.1"
    assert client["attributes"]["http.response.status_code"] == 200
    assert downstream.traceparents == [f"00-{trace_id}-{client['span_id']}-01"]
    assert len(spans) == 6
    assert_exported_after_the_answer_before_the_next_event(spans, runtime.peer, result)


def test_flush_before_answer_exports_before_the_answer_is_posted(start, receiver):
    runtime = start_traced(start, receiver, ORT_APM_FLUSH="before_answer")
    result = runtime.peer.invoke({})
    spans = trace(receiver, traceparent_ids(result.json()["traceparent"])[0], count=3)
    assert max(span["received_ms"] for span in spans) <= result.received_ms


def test_coldstart_is_true_only_for_the_first_invocation_and_metrics_count(start, receiver):
    runtime = start_traced(start, receiver)
    answers = [runtime.peer.invoke({}).json() for _ in range(3)]
    coldstarts = []
    for answer in answers:
        trace_id, _, _ = traceparent_ids(answer["traceparent"])
        server = server_span(trace(receiver, trace_id))
        coldstarts.append(server["attributes"]["faas.coldstart"])
    assert coldstarts == [True, False, False]
    assert len({traceparent_ids(a["traceparent"])[0] for a in answers}) == 3  # fresh traces

    metrics = receiver.wait_for(
        lambda: receiver.metrics().get("faas.invoke_duration", (0,))[0] == 3 and receiver.metrics()
    )
    assert metrics["faas.coldstarts"] == 1
    assert metrics["faas.init_duration"][0] == 1 and metrics["faas.init_duration"][1] > 0
    assert metrics["faas.errors"] == 0 and metrics["faas.timeouts"] == 0


def test_the_xray_trace_is_the_parent_and_its_sampled_flag_is_respected(start, receiver):
    runtime = start_traced(start, receiver)
    answer = runtime.peer.invoke({}, headers={"Lambda-Runtime-Trace-Id": XRAY}).json()
    trace_id, _, flags = traceparent_ids(answer["traceparent"])
    assert (trace_id, flags) == ("5759e988bd862e3fe1be46a994272793", "01")
    server = server_span(trace(receiver, trace_id))
    assert server["parent_id"] == "53995c3f42cd8ad8"

    unsampled = XRAY.replace("Sampled=1", "Sampled=0").replace("bd862e3f", "bd862e30")
    answer = runtime.peer.invoke({}, headers={"Lambda-Runtime-Trace-Id": unsampled}).json()
    trace_id, _, flags = traceparent_ids(answer["traceparent"])
    assert flags == "00"
    runtime.peer.invoke({})  # flushed after the unsampled one: it would have come by now
    assert trace(receiver, trace_id, timeout=0.5) == []


def test_always_on_records_what_xray_did_not_sample_and_always_off_nothing(start, receiver):
    unsampled = XRAY.replace("Sampled=1", "Sampled=0")
    runtime = start_traced(start, receiver, OTEL_TRACES_SAMPLER="always_on")
    answer = runtime.peer.invoke({}, headers={"Lambda-Runtime-Trace-Id": unsampled}).json()
    assert traceparent_ids(answer["traceparent"])[2] == "01"
    assert server_span(trace(receiver, "5759e988bd862e3fe1be46a994272793"))

    silent = start_traced(start, receiver, OTEL_TRACES_SAMPLER="always_off")
    answer = silent.peer.invoke({}).json()
    trace_id, _, flags = traceparent_ids(answer["traceparent"])
    assert flags == "00"
    assert trace(receiver, trace_id, timeout=0.5) == []

    def instances() -> set[str]:  # sandboxes that exported metrics: both did, sampled or not
        return {
            attributes(resource.resource.attributes)["service.instance.id"]
            for export in receiver.exports
            if export.path == "/v1/metrics"
            for resource in export.message.resource_metrics
        }

    assert receiver.wait_for(lambda: len(instances()) == 2)


def test_an_http_traceparent_header_is_the_parent_of_an_http_trigger(start, receiver):
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    event = {
        "version": "2.0",
        "routeKey": "GET /hello",
        "rawPath": "/hello",
        "rawQueryString": "",
        "headers": {"host": "api.example.com", "traceparent": caller},
        "requestContext": {
            "http": {"method": "GET", "path": "/hello"},
            "requestId": "api-request-1",
            "domainName": "api.example.com",
            "timeEpoch": 1732233600000,
        },
        "isBase64Encoded": False,
    }
    runtime = start_traced(start, receiver, ORT_SIGNATURE="cloudevent")
    result = runtime.peer.invoke(event, headers={"Lambda-Runtime-Trace-Id": XRAY})
    assert result.kind == "response" and result.json()["statusCode"] == 200, result.body
    server = server_span(trace(receiver, "0af7651916cd43dd8448eb211c80319c"))
    assert server["parent_id"] == "b7ad6b7169203331"
    assert server["attributes"]["faas.trigger"] == "http"
    assert server["attributes"]["http.request.method"] == "GET"
    assert server["attributes"]["url.path"] == "/hello"
    assert server["attributes"]["cloudevents.event_type"] == "com.amazonaws.apigateway.request"


def test_a_cloudevents_traceparent_extension_is_the_parent(start, receiver):
    event = {
        "specversion": "1.0",
        "id": "event-1",
        "source": "/orders",
        "type": "com.example.order.created",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "data": {"order": 1},
    }
    runtime = start_traced(start, receiver, ORT_SIGNATURE="cloudevent")
    assert runtime.peer.invoke(event).kind == "response"
    server = server_span(trace(receiver, "4bf92f3577b34da6a3ce929d0e0e4736"))
    assert server["parent_id"] == "00f067aa0ba902b7"
    assert server["attributes"]["faas.trigger"] == "other"
    assert server["attributes"]["cloudevents.event_id"] == "event-1"


def test_a_failing_handler_gives_error_statuses_before_the_next_event(start, receiver):
    runtime = start_traced(start, receiver)
    ok = runtime.peer.invoke({}).json()
    trace(receiver, traceparent_ids(ok["traceparent"])[0])
    result = runtime.peer.invoke({"fail": True})
    assert result.kind == "error" and result.json()["errorType"] == "ValueError"
    spans = receiver.wait_for(
        lambda: [s for s in receiver.spans() if s["status"] == "error" and s["kind"] == "server"]
    )
    server = one(spans, kind="server")
    assert server["message"] == "ValueError: boom"
    assert server["attributes"]["error.type"] == "ValueError"
    assert server["events"] == ["exception"]
    assert_exported_after_the_answer_before_the_next_event([server], runtime.peer, result)
    everything = trace(receiver, server["trace_id"], count=3)
    assert one(everything, name="bridge:python")["status"] == "error"
    assert one(everything, name="app.handler")["status"] == "error"
    assert receiver.wait_for(lambda: receiver.metrics().get("faas.errors") == 1)


def test_a_timeout_gives_a_timeout_status_before_the_error_is_posted(start, receiver):
    runtime = start_traced(start, receiver, deadline_ms=1500, ORT_TIMEOUT_MARGIN_MS="400")
    result = runtime.peer.invoke({"sleep": 30_000})
    assert result.kind == "error" and result.json()["errorType"] == "Sandbox.Timedout"
    assert result.received_ms < result.deadline_ms
    servers = [s for s in receiver.spans() if s["kind"] == "server"]  # no waiting: already there
    assert len(servers) == 1, receiver.spans()
    server = servers[0]
    assert server["status"] == "error"
    assert server["attributes"]["error.type"] == "Sandbox.Timedout"
    assert server["received_ms"] <= result.received_ms
    spans = trace(receiver, server["trace_id"], count=3)
    assert one(spans, name="bridge:python")["status"] == "error"  # the step in flight
    assert one(spans, name="app.handler")["status"] == "error"
    assert receiver.metrics()["faas.timeouts"] == 1
    assert runtime.process.wait(timeout=10) == 1  # in process: the sandbox ends, as on Lambda


@pytest.mark.parametrize("mode", ["ack", "send"])
@pytest.mark.parametrize("collector", ["down", "silent"])
def test_a_dead_collector_never_holds_an_invocation_beyond_the_bound(
    start, collector, mode, silent_collector
):
    endpoint = f"http://127.0.0.1:{closed_port()}" if collector == "down" else silent_collector
    runtime = start(
        FILES,
        _HANDLER="app.handler",
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        ORT_APM_EXPORT_MODE=mode,
    )
    runtime.wait_ready()  # what follows times invocations, not the cold start
    durations = []  # each from the event to the runtime asking for the next: the flush too
    for _ in range(5):
        started = time.monotonic()
        assert runtime.peer.invoke({}).kind == "response"
        runtime.peer.wait_for_next()
        durations.append(time.monotonic() - started)
    assert max(durations) < 0.5, durations  # the export budget is 100 ms
    assert sorted(durations)[-2] < 0.08, durations  # one budget spent, then backing off
    assert runtime.log.count("export to") == 1, runtime.log  # one warning, not one per event


def test_spans_kept_while_the_collector_fails_go_out_once_it_recovers(start, receiver):
    receiver.fail_with = 503
    runtime = start_traced(start, receiver, ORT_APM_RETRY_MS="0")
    first = runtime.peer.invoke({}).json()
    receiver.fail_with = None
    second = runtime.peer.invoke({}).json()
    for answer in (first, second):
        assert server_span(trace(receiver, traceparent_ids(answer["traceparent"])[0]))


def test_send_mode_writes_the_spans_before_the_answer_and_reads_the_ack_later(start, receiver):
    runtime = start_traced(start, receiver, ORT_APM_EXPORT_MODE="send")
    answers = [runtime.peer.invoke({}).json() for _ in range(3)]
    for answer in answers:
        server = server_span(trace(receiver, traceparent_ids(answer["traceparent"])[0], count=3))
        assert server["attributes"]["faas.name"] == "traced"
    assert "failed" not in runtime.log


def test_enabled_ort_apm_keeps_http_client_and_the_sdk_off_the_cold_start(start, receiver):
    plain = "import sys\n\ndef handler(event, context):\n    return sorted(sys.modules)\n"
    runtime = start(
        {"app.py": plain}, _HANDLER="app.handler", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint
    )
    modules = set(runtime.peer.invoke({}).json())
    assert {"ort_apm.plugin", "ort_apm.agent", "ort_apm.exporter"} <= modules
    never = {"http.client", "urllib.request", "ssl", "email", "asyncio", "http.server"}
    assert not modules & never, modules & never
    assert not {m for m in modules if m.split(".")[0] in ("opentelemetry", "google")}


LAZY = """
def handler(event, context):
    import http.client  # first imported here, during the invocation

    connection = http.client.HTTPConnection("127.0.0.1", event["port"], timeout=5)
    headers = {"traceparent": event["own"]} if event.get("own") else {}
    connection.request("GET", event["path"], headers=headers)
    status = connection.getresponse().status
    connection.close()
    return {"status": status, "traceparent": context.traceparent}
"""


def test_http_client_imported_during_an_invocation_is_traced_and_a_callers_header_wins(
    start, receiver, downstream
):
    runtime = start(
        {"app.py": LAZY}, _HANDLER="app.handler", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint
    )
    port = downstream.server.server_port
    answer = runtime.peer.invoke({"port": port, "path": "/missing"}).json()
    assert answer["status"] == 404
    trace_id, handler_id, _ = traceparent_ids(answer["traceparent"])
    spans = trace(receiver, trace_id, count=4)
    client = one(spans, kind="client")
    assert client["parent_id"] == handler_id
    assert client["status"] == "error" and client["attributes"]["error.type"] == "404"
    assert client["attributes"]["url.full"] == f"http://127.0.0.1:{port}/missing"
    assert downstream.traceparents[-1] == f"00-{trace_id}-{client['span_id']}-01"

    own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    runtime.peer.invoke({"port": port, "path": "/hello", "own": own})
    assert downstream.traceparents[-1] == own  # the handler's own OpenTelemetry, untouched


def test_each_record_of_a_batch_gets_its_invocation_span(start, receiver):
    records = [
        {"messageId": f"m{n}", "eventSource": "aws:sqs", "body": "{}", "attributes": {}}
        for n in range(2)
    ]
    runtime = start_traced(
        start, receiver, ORT_SIGNATURE="cloudevent", OTEL_EXPORTER_OTLP_COMPRESSION="gzip"
    )
    result = runtime.peer.invoke({"Records": records})
    assert result.json() == {"batchItemFailures": []}
    servers = receiver.wait_for(
        lambda: len(found := [s for s in receiver.spans() if s["kind"] == "server"]) == 2 and found
    )
    assert [s["attributes"]["faas.coldstart"] for s in servers] == [True, False]
    assert {s["attributes"]["faas.trigger"] for s in servers} == {"pubsub"}
    assert {s["attributes"]["cloudevents.event_id"] for s in servers} == {"m0", "m1"}
    assert len({s["attributes"]["faas.invocation_id"] for s in servers}) == 1
    for server in servers:  # each with its own steps
        spans = trace(receiver, server["trace_id"], count=3)
        assert_nested(one(spans, name="bridge:python"), server)


def test_the_last_metrics_go_out_when_the_sandbox_shuts_down(start, receiver):
    runtime = start_traced(start, receiver, OTEL_METRIC_EXPORT_INTERVAL="600000")
    for _ in range(3):
        assert runtime.peer.invoke({}).kind == "response"
    runtime.peer.wait_for_next()
    assert receiver.metrics()["faas.invoke_duration"][0] == 1  # the first flush's, then none
    runtime.process.terminate()  # SIGTERM, as Lambda sends at shutdown
    assert runtime.process.wait(timeout=10) == 0
    assert receiver.metrics()["faas.invoke_duration"][0] == 3
