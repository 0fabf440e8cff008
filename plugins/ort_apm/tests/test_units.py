"""ort-apm's pieces on their own: trace context, samplers, triggers, the OTLP encoding (checked
with opentelemetry-proto), metrics, configuration, the exporter's HTTP and its bounds."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
from apm_traces import attributes, hex_ids_to_base64
from google.protobuf import json_format
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from ort_apm import enabled
from ort_apm.config import Settings, key_value_list
from ort_apm.exporter import Connection, Endpoint, Exporter, ExportError
from ort_apm.metrics import Metrics
from ort_apm.otlp import metrics_body, traces_body
from ort_apm.preloads import PRELOAD_DIR, worker_env
from ort_apm.spans import (
    KIND_CLIENT,
    KIND_SERVER,
    Parent,
    Sampler,
    Span,
    _canonical_xray,
    _xray_by_fields,
    from_worker,
    parse_traceparent,
    parse_xray,
    sampler_from_environ,
)
from ort_apm.triggers import describe

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"

# -- trace context ------------------------------------------------------------------------------


def test_w3c_traceparent():
    parent = parse_traceparent(f"00-{TRACE}-{SPAN}-01")
    assert (parent.trace_id, parent.span_id, parent.sampled) == (TRACE, SPAN, True)
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-00").sampled is False
    assert parse_traceparent(f"01-{TRACE}-{SPAN}-01-future").trace_id == TRACE  # later versions
    for bad in (
        None,
        "",
        f"ff-{TRACE}-{SPAN}-01",
        f"00-{'0' * 32}-{SPAN}-01",
        f"00-{TRACE}-{'0' * 16}-01",
        f"00-{TRACE[:-1]}-{SPAN}-01",
        f"00-{TRACE}-{SPAN}-01-extra",
        f"00-{TRACE}-{SPAN}-zz",
    ):
        assert parse_traceparent(bad) is None, bad


def test_xray_header():
    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    parent = parse_xray(header)
    assert (parent.trace_id, parent.span_id) == (
        "5759e988bd862e3fe1be46a994272793",
        "53995c3f42cd8ad8",
    )
    assert parent.sampled is True
    assert parse_xray(header.replace("Sampled=1", "Sampled=0")).sampled is False
    assert parse_xray(header.replace("Sampled=1", "Sampled=?")).sampled is None  # undecided
    assert parse_xray("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1") is None  # no parent
    assert parse_xray("Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8") is None


_XRAY_PIECES = st.sampled_from(
    [
        "",
        ";Sampled=1",
        ";Sampled=0",
        ";Sampled=?",
        ";Sampled= 1",
        ";Lineage=a87bd80c:0",
        ";Sampled=",
        ";Lineage=a87bd80c:0;Sampled=0",
        ";Parent=ffffffffffffffff",
        ";Root=1-00000000-0",
        ";",
        "x",
        ";Sampled=1;Sampled=0",
        "Sampled=1",
    ]
)


_HEX = "0123456789abcdefABCDEF"


@given(
    first=st.text(_HEX, min_size=8, max_size=8),
    separator=st.sampled_from(["-", "-", "-", "_"]),
    second=st.one_of(st.text(_HEX, min_size=24, max_size=24), st.text(_HEX + "g-", max_size=25)),
    parent=st.one_of(st.text(_HEX, min_size=16, max_size=16), st.text(_HEX + "x", max_size=17)),
    rest=st.lists(_XRAY_PIECES, max_size=3),
)
@hypothesis.settings(max_examples=500, deadline=None)
def test_lambdas_layout_reads_as_any_other(first, separator, second, parent, rest):
    """The fixed-offset reading of ``Root=1-…;Parent=…`` gives what the field-by-field reading
    gives, or leaves the header to it."""
    header = f"Root=1-{first}{separator}{second};Parent={parent}{''.join(rest)}"
    fast, general = parse_xray(header), _xray_by_fields(header)
    assert (fast and (fast.trace_id, fast.span_id, fast.sampled)) == (
        general and (general.trace_id, general.span_id, general.sampled)
    )


def test_lambdas_own_header_is_read_at_fixed_offsets():
    header = "Root=1-5759E988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0;Lineage=x"
    fast = _canonical_xray(header)
    assert (fast.trace_id, fast.span_id, fast.sampled) == (
        "5759e988bd862e3fe1be46a994272793",
        "53995c3f42cd8ad8",
        False,
    )


def test_samplers():
    sampled, unsampled, undecided = (Parent(TRACE, SPAN, flag, "x") for flag in (True, False, None))
    default = Sampler()
    assert default.sample(TRACE, None) and default.sample(TRACE, sampled)
    assert not default.sample(TRACE, unsampled)  # parentbased: the parent decided
    assert default.sample(TRACE, undecided)  # the root sampler decides
    assert Sampler("always_on").sample(TRACE, unsampled)
    assert not Sampler("always_off").sample(TRACE, sampled)
    assert not Sampler("parentbased_always_off").sample(TRACE, None)
    assert Sampler("parentbased_always_off").sample(TRACE, sampled)
    half = Sampler("traceidratio", 0.5)
    assert half.sample("f" * 16 + "0" * 16, None)  # low 64 bits decide, as OpenTelemetry's SDKs
    assert not half.sample("0" * 16 + "f" * 16, None)
    assert not Sampler("traceidratio", 0.0).sample("0" * 31 + "1", None)
    kept = sum(
        Sampler("traceidratio", 0.25).sample(os.urandom(16).hex(), None) for _ in range(4000)
    )
    assert 800 < kept < 1200


def test_sampler_configuration():
    sampler, problems = sampler_from_environ(
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
    )
    assert (sampler.name, sampler.bound, problems) == (
        "parentbased_traceidratio",
        round(0.1 * 2**64),
        [],
    )
    sampler, problems = sampler_from_environ({"OTEL_TRACES_SAMPLER": "xray"})
    assert sampler.name == "parentbased_always_on" and "xray" in problems[0]
    _, problems = sampler_from_environ(
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}
    )
    assert "not a ratio" in problems[0]


# -- triggers -----------------------------------------------------------------------------------

HTTP_V2 = {
    "version": "2.0",
    "rawPath": "/orders",
    "headers": {"traceparent": f"00-{TRACE}-{SPAN}-01"},
    "requestContext": {"http": {"method": "post", "path": "/orders"}},
}
RAW_EVENTS = {
    "sqs": ({"Records": [{"eventSource": "aws:sqs", "body": "{}"}]}, "pubsub"),
    "sns": ({"Records": [{"EventSource": "aws:sns", "Sns": {}}]}, "pubsub"),
    "kinesis": ({"Records": [{"eventSource": "aws:kinesis"}]}, "pubsub"),
    "s3": ({"Records": [{"eventSource": "aws:s3"}]}, "datasource"),
    "dynamodb": ({"Records": [{"eventSource": "aws:dynamodb"}]}, "datasource"),
    "http-v2": (HTTP_V2, "http"),
    "http-v1": (
        {"httpMethod": "GET", "path": "/", "requestContext": {}, "headers": {"TraceParent": "x"}},
        "http",
    ),
    "alb": ({"httpMethod": "GET", "requestContext": {"elb": {}}}, "http"),
    "scheduled": ({"detail-type": "Scheduled Event", "source": "aws.events"}, "timer"),
    "eventbridge": ({"detail-type": "OrderPlaced", "source": "shop"}, "pubsub"),
    "logs": ({"awslogs": {"data": "H4sI"}}, "pubsub"),
    "direct": ({"name": "world"}, "other"),
    "not-an-object": ([1, 2], "other"),
}


@pytest.mark.parametrize("kind", RAW_EVENTS)
def test_the_trigger_of_lambdas_own_events(kind):
    event, trigger = RAW_EVENTS[kind]
    assert describe(event, "raw").trigger == trigger


def test_http_events_give_their_method_path_and_traceparent():
    described = describe(HTTP_V2, "raw")
    assert described.attributes == {"http.request.method": "POST", "url.path": "/orders"}
    assert described.traceparents == [f"00-{TRACE}-{SPAN}-01"]
    request = {"method": "GET", "path": "/x", "headers": {"traceparent": "t"}, "query": {}}
    assert describe(request, "http").traceparents == ["t"]


CLOUDEVENT_TYPES = {
    "com.amazonaws.sqs.message": "pubsub",
    "com.amazonaws.sns.Notification": "pubsub",
    "com.amazonaws.s3.ObjectCreated:Put": "datasource",
    "com.amazonaws.dynamodb.INSERT": "datasource",
    "com.amazonaws.kinesis.record": "pubsub",
    "com.amazonaws.logs.DATA_MESSAGE": "pubsub",
    "com.amazonaws.apigateway.request": "http",
    "com.amazonaws.lambda.url.request": "http",
    "com.amazonaws.elasticloadbalancing.request": "http",
    "com.amazonaws.lambda.invoke": "other",
    "com.example.order.created": "other",
}


@pytest.mark.parametrize("kind", CLOUDEVENT_TYPES)
def test_the_trigger_of_cloudevents(kind):
    event = {"specversion": "1.0", "id": "1", "source": "/s", "type": kind}
    assert describe(event, "cloudevent").trigger == CLOUDEVENT_TYPES[kind]


def test_cloudevents_from_eventbridge_and_the_header_before_the_extension():
    scheduled = {"specversion": "1.0", "id": "1", "source": "aws.events", "type": "Scheduled Event"}
    assert describe(scheduled, "cloudevent").trigger == "timer"
    event = {
        "specversion": "1.0",
        "id": "1",
        "source": "https://api.example.com",
        "type": "com.amazonaws.apigateway.request",
        "traceparent": "from-xray",
        "data": {"method": "GET", "path": "/", "headers": {"traceparent": "from-the-caller"}},
    }
    described = describe(event, "cloudevent")
    assert described.traceparents == ["from-the-caller", "from-xray"]
    assert described.attributes["cloudevents.event_id"] == "1"


# -- the OTLP encoding --------------------------------------------------------------------------


def parse(body: bytes, message):
    return json_format.Parse(json.dumps(hex_ids_to_base64(json.loads(body))), message)


def test_spans_encode_as_valid_otlp_json():
    server = Span(TRACE, SPAN, None, "fn", KIND_SERVER, 10, 20, {"a": "b", "n": 2**40})
    server.attributes.update({"ok": True, "ratio": 0.5, "list": ["x", 1], "nan": float("nan")})
    server.fail("Boom: it broke")
    server.events.append(("exception", 19, {"exception.type": "Boom"}))
    client = Span(TRACE, "1122334455667788", SPAN, "GET", KIND_CLIENT, 12, 18)
    body = traces_body(
        {"service.name": "fn"}, {"name": "ort-apm", "version": "0"}, [server, client]
    )
    request = parse(body, ExportTraceServiceRequest())
    scope_spans = request.resource_spans[0].scope_spans[0]
    assert scope_spans.scope.name == "ort-apm"
    first, second = scope_spans.spans
    assert first.trace_id.hex() == TRACE and first.span_id.hex() == SPAN
    assert first.parent_span_id == b"" and second.parent_span_id.hex() == SPAN
    assert (first.kind, second.kind) == (2, 3)
    assert (first.start_time_unix_nano, first.end_time_unix_nano) == (10, 20)
    assert attributes(first.attributes) == {
        "a": "b",
        "n": 2**40,
        "ok": True,
        "ratio": 0.5,
        "list": ["x", 1],
        "nan": "nan",
    }
    assert (first.status.code, first.status.message) == (2, "Boom: it broke")
    assert first.events[0].name == "exception" and first.events[0].time_unix_nano == 19
    assert attributes(request.resource_spans[0].resource.attributes) == {"service.name": "fn"}


def test_metrics_encode_as_valid_otlp_json():
    metrics = Metrics(start_ns=1_000)
    for value in (0.0, 3.0, 7.0, 12_000.0):
        metrics.record("faas.invoke_duration", value, **{"faas.trigger": "http"})
    metrics.add("faas.coldstarts")
    metrics.add("faas.errors", 2)
    body = metrics_body({"service.name": "fn"}, {"name": "ort-apm"}, metrics.otlp(now_ns=5_000))
    request = parse(body, ExportMetricsServiceRequest())
    found = {m.name: m for m in request.resource_metrics[0].scope_metrics[0].metrics}
    assert set(found) == {"faas.invoke_duration", "faas.coldstarts", "faas.errors", "faas.timeouts"}
    point = found["faas.invoke_duration"].histogram.data_points[0]
    assert found["faas.invoke_duration"].unit == "ms"
    assert found["faas.invoke_duration"].histogram.aggregation_temporality == 2  # cumulative
    assert (point.count, point.sum, point.min, point.max) == (4, 12_010.0, 0.0, 12_000.0)
    assert list(point.bucket_counts) == [1, 1, 1] + [0] * 12 + [1]
    assert len(point.explicit_bounds) == len(point.bucket_counts) - 1
    assert attributes(point.attributes) == {"faas.trigger": "http"}
    assert (point.start_time_unix_nano, point.time_unix_nano) == (1_000, 5_000)
    errors = found["faas.errors"].sum
    assert errors.is_monotonic and errors.data_points[0].as_int == 2
    assert found["faas.timeouts"].sum.data_points[0].as_int == 0


def test_worker_spans_are_checked_before_they_are_trusted():
    good = {
        "traceId": TRACE,
        "spanId": SPAN,
        "parentSpanId": None,
        "name": "index.handler",
        "kind": "internal",
        "startTimeUnixNano": "1700000000000000000",  # JavaScript sends strings
        "endTimeUnixNano": 1700000000000000100,
        "attributes": {"k": "v", "n": 1, "bad": {"nested": 1}},
        "status": {"code": "error", "message": "boom"},
    }
    span = from_worker(good, TRACE)
    assert (span.start_ns, span.end_ns) == (1700000000000000000, 1700000000000000100)
    assert span.attributes == {"k": "v", "n": 1} and (span.status_code, span.status_message) == (
        2,
        "boom",
    )
    assert from_worker({**good, "kind": "client"}, TRACE).kind == KIND_CLIENT
    # readings of the monotonic clock (Node's preload), turned into epoch times by the offset
    monotonic = {k: v for k, v in good.items() if not k.endswith("TimeUnixNano")}
    monotonic.update(startMonotonicNano="5000", endMonotonicNano="7000")
    span = from_worker(monotonic, TRACE, 1700000000000000000)
    assert (span.start_ns, span.end_ns) == (1700000000000005000, 1700000000000007000)
    for broken in (
        {**monotonic, "endMonotonicNano": None},
        {**good, "traceId": "f" * 32},  # another trace
        {**good, "spanId": "xyz"},
        {**good, "parentSpanId": "short"},
        {**good, "startTimeUnixNano": "soon"},
        "not a span",
    ):
        assert from_worker(broken, TRACE) is None


# -- configuration ------------------------------------------------------------------------------


def test_enabled_only_when_configured():
    assert not enabled({})
    assert enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert enabled({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"})
    assert enabled({"ORT_APM": "1"})
    assert not enabled({"ORT_APM": "0", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert not enabled({"OTEL_SDK_DISABLED": "true", "ORT_APM": "1"})


def test_endpoints_headers_and_resource_from_otel_variables():
    settings = Settings({"ORT_APM": "1"})
    assert settings.traces_endpoint == "http://localhost:4318/v1/traces"
    assert settings.metrics_endpoint == "http://localhost:4318/v1/metrics"
    settings = Settings(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "https://otlp.example.com/base/",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://metrics:9090/in",
            "OTEL_EXPORTER_OTLP_HEADERS": "api-key=s%3Dcret, x-team = a b",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-team=traces",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,service.name=shop,bad",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        }
    )
    assert settings.traces_endpoint == "https://otlp.example.com/base/v1/traces"
    assert settings.metrics_endpoint == "http://metrics:9090/in"  # as given
    assert settings.traces_headers == {"api-key": "s=cret", "x-team": "traces"}
    assert settings.metrics_headers == {"api-key": "s=cret", "x-team": "a b"}
    assert settings.service_name == "shop" and settings.gzip
    assert settings.resource_attributes["deployment.environment"] == "prod"
    assert "http/json only" in settings.problems[0]
    assert Settings({"OTEL_SERVICE_NAME": "named", "OTEL_RESOURCE_ATTRIBUTES": "service.name=x"})
    assert key_value_list("a=1,=2,b") == {"a": "1"}


def test_worker_env_appends_the_preload_only_when_enabled():
    assert worker_env("node", None, {"ORT_PRELOAD": "/mine.cjs"}) == {}  # disabled
    on = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}
    preload = os.path.join(PRELOAD_DIR, "node.cjs")
    assert worker_env("node", None, on) == {"ORT_PRELOAD": preload}
    joined = worker_env("node", None, {**on, "ORT_PRELOAD": "/mine.cjs"})["ORT_PRELOAD"]
    assert joined == f"/mine.cjs{os.pathsep}{preload}"
    assert worker_env("node", None, {**on, "ORT_PRELOAD": preload}) == {}  # already there
    assert worker_env("bash", None, on) == {}


# -- the exporter's HTTP --------------------------------------------------------------------------


class Scripted:
    """A raw HTTP server answering each request with the next scripted answer (bytes); an
    answer ending in ``CLOSE`` closes the connection after it."""

    CLOSE = b"<close>"

    def __init__(self, answers: list[bytes], tls: Any = None) -> None:
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.connections = 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        if tls is not None:
            self.listener = tls.wrap_socket(self.listener, server_side=True)
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/v1/traces"

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                if self.listener.fileno() < 0:
                    return
                continue  # a failed TLS handshake: the client refused the certificate
            self.connections += 1
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def _handle(self, connection: socket.socket) -> None:
        try:
            self._answer(connection)
        except OSError:
            pass  # the client went away

    def _answer(self, connection: socket.socket) -> None:
        reader = connection.makefile("rb")
        with connection:
            while self.answers:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                self.requests.append(head + reader.read(length))
                answer = self.answers.pop(0)
                connection.sendall(answer.removesuffix(self.CLOSE))
                if answer.endswith(self.CLOSE):
                    return

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def scripted() -> Iterator[type[Scripted]]:
    servers: list[Scripted] = []

    def make(answers: list[bytes], tls: Any = None) -> Scripted:
        servers.append(Scripted(answers, tls))
        return servers[-1]

    yield make  # type: ignore[misc]
    for server in servers:
        server.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"


def test_endpoint_urls():
    endpoint = Endpoint("https://[::1]:4318/v1/traces")
    assert (endpoint.scheme, endpoint.host, endpoint.port, endpoint.path) == (
        "https",
        "::1",
        4318,
        "/v1/traces",
    )
    assert Endpoint("http://collector").port == 80 and Endpoint("http://collector").path == "/"
    with pytest.raises(ValueError):
        Endpoint("grpc://collector:4317")


def test_one_connection_is_kept_and_reopened_when_the_collector_closed_it(scripted):
    server = scripted([OK, CHUNKED + Scripted.CLOSE, OK])
    endpoint = Endpoint(server.url)
    connection = Connection(endpoint)
    headers = {"Content-Type": "application/json"}
    for _ in range(3):
        assert connection.post(endpoint.path, b"{}", headers, time.monotonic() + 2) == 200
    assert server.connections == 2
    assert server.requests[0].startswith(b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1:")
    assert server.requests[0].endswith(b"Content-Length: 2\r\n\r\n{}")


def test_a_silent_collector_costs_one_budget(silent_collector):
    connection = Connection(Endpoint(silent_collector + "/v1/traces"))
    started = time.monotonic()
    with pytest.raises(ExportError):
        connection.post("/v1/traces", b"{}", {}, time.monotonic() + 0.05)
    assert time.monotonic() - started < 0.2


def exporter_for(url: str, **options) -> Exporter:
    return Exporter(
        url,
        url.replace("traces", "metrics"),
        {},
        {},
        lambda spans: json.dumps([s.name for s in spans]).encode(),
        lambda: b"{}",
        **options,
    )


def spans(*names: str) -> list[Span]:
    return [Span(TRACE, SPAN, None, name, KIND_SERVER, 1, 2) for name in names]


def test_the_buffer_keeps_the_newest_spans_and_retries_after_a_retryable_status(scripted):
    unavailable = b"HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n"
    server = scripted([unavailable, OK, OK])
    exporter = exporter_for(server.url, max_queue=3, first_backoff_s=0, metrics_interval_s=3600)
    exporter.add(spans("a", "b"))
    exporter.flush(1.0)  # 503: kept (the metrics wait for a working collector)
    assert exporter.buffered() == 2
    exporter.add(spans("c", "d"))  # one too many: the oldest goes
    assert exporter.buffered() == 3 and exporter.dropped == 1
    exporter.flush(1.0)
    assert exporter.buffered() == 0 and exporter.sent == 3
    traces = [r for r in server.requests if r.startswith(b"POST /v1/traces ")]
    assert traces[1].endswith(b'["b", "c", "d"]')


def test_a_refused_batch_is_dropped_and_the_exporter_backs_off(scripted):
    server = scripted([b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", OK])
    exporter = exporter_for(server.url, first_backoff_s=30, metrics_interval_s=3600)
    exporter.add(spans("a"))
    exporter.flush(1.0)
    assert exporter.buffered() == 0 and exporter.sent == 0
    exporter.add(spans("b"))
    exporter.flush(1.0)  # backing off: nothing tried
    assert len(server.requests) == 1 and exporter.buffered() == 1


def test_a_dead_collector_costs_nothing_while_backing_off():
    from apm_traces import closed_port

    exporter = exporter_for(f"http://127.0.0.1:{closed_port()}/v1/traces", first_backoff_s=30)
    exporter.add(spans("a"))
    exporter.flush(0.1)
    started = time.perf_counter()
    for _ in range(100):
        exporter.add(spans("b"))
        exporter.flush(0.1)
    assert (time.perf_counter() - started) / 100 < 0.001
    assert exporter.buffered() == 101


def test_send_mode_reads_each_answer_at_the_next_flush(scripted):
    unavailable = b"HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n"
    server = scripted([OK, unavailable, OK, OK])
    exporter = exporter_for(
        server.url, wait=False, max_in_flight=1, first_backoff_s=0, metrics_interval_s=3600
    )
    exporter.add(spans("a"))
    exporter.flush(1.0)  # metrics first time too: two requests written, none read
    assert exporter.sent == 0 and exporter.buffered() == 0
    time.sleep(0.1)
    exporter.add(spans("b"))
    exporter.flush(1.0)  # reads "a": 200, the metrics': 503; sends "b" and the metrics again
    assert exporter.sent == 1
    time.sleep(0.1)
    exporter.flush(1.0)  # reads "b": 200, the metrics': 200
    assert exporter.sent == 2 and exporter.buffered() == 0
    assert len(server.requests) == 4 and not exporter._traces_link.in_flight


def test_send_mode_buffers_again_what_a_broken_connection_left_unanswered(scripted):
    server = scripted([OK + Scripted.CLOSE, OK])
    exporter = exporter_for(
        server.url, wait=False, max_in_flight=1, first_backoff_s=0, metrics_interval_s=3600
    )
    exporter._metrics_at = time.monotonic() + 3600  # spans only
    exporter.add(spans("a"))
    exporter.flush(1.0)
    time.sleep(0.1)
    exporter.add(spans("b"))
    exporter.flush(1.0)  # "a" answered; "b" written into the connection the collector closed
    time.sleep(0.1)
    exporter.flush(1.0)  # no answer to "b": it goes again, on a new connection, at once
    assert exporter.sent == 1 and exporter.buffered() == 0
    time.sleep(0.1)
    exporter.flush(1.0)
    assert exporter.sent == 2 and server.connections == 2


def test_a_name_that_does_not_resolve_costs_one_budget():
    connection = Connection(Endpoint("http://collector.invalid:4318/v1/traces"))
    started = time.monotonic()
    with pytest.raises(ExportError):
        connection.post("/v1/traces", b"{}", {}, time.monotonic() + 0.05)
    assert time.monotonic() - started < 0.5  # getaddrinfo runs on a thread; not waited for


def test_https_endpoints_verify_the_collector(tmp_path, monkeypatch, scripted):
    import ssl
    import subprocess

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = scripted([OK, OK], tls=context)
    url = server.url.replace("http://127.0.0.1", "https://localhost")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    endpoint = Endpoint(url)
    trusted = Connection(endpoint)
    assert trusted.post(endpoint.path, b"{}", {}, time.monotonic() + 5) == 200
    monkeypatch.delenv("SSL_CERT_FILE")
    with pytest.raises(ExportError, match="CERTIFICATE_VERIFY_FAILED"):
        Connection(endpoint).post(endpoint.path, b"{}", {}, time.monotonic() + 5)


def test_send_mode_reads_the_answers_only_once_enough_await_theirs(scripted):
    server = scripted([OK] * 4)
    exporter = exporter_for(server.url, wait=False, max_in_flight=3, metrics_interval_s=3600)
    exporter._metrics_at = time.monotonic() + 3600  # spans only
    for name in "abc":
        exporter.add(spans(name))
        exporter.flush(1.0)  # one write each, no read
    assert exporter.sent == 0 and len(exporter._traces_link.in_flight) == 3
    time.sleep(0.1)
    exporter.add(spans("d"))
    exporter.flush(1.0)  # three answers read at once, then "d" written
    assert exporter.sent == 3 and len(exporter._traces_link.in_flight) == 1
    deadline = time.monotonic() + 5
    while len(server.requests) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.requests[-1].endswith(b'["d"]')
