"""Fuzzing what parses untrusted bytes: the event mapper, the worker protocol's decoder,
middlewares' answers and the gateway's requests.

Properties: a clear error (FunctionError, ProtocolError, an HTTP 4xx) or an answer, never
another exception; round trips where there are some. Derandomized, no example database and
few examples: the same cases on every run, in seconds.
"""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ort_core.errors import FunctionError
from ort_core.middleware import UNCHANGED, parse_output
from ort_core.pipeline import decode_event
from ort_core.signatures import adapt, http_answer
from ort_core.workers.protocol import MAX_PART, ProtocolError, read_message, write_message

FUZZ = settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
# Keys of the AWS events the mapper recognises, so that fuzzed events reach its branches.
AWS_KEYS = [
    "Records",
    "eventSource",
    "EventSource",
    "requestContext",
    "httpMethod",
    "routeKey",
    "version",
    "rawPath",
    "headers",
    "body",
    "isBase64Encoded",
    "detail-type",
    "source",
    "awslogs",
    "Sns",
    "s3",
    "dynamodb",
    "kinesis",
    "elb",
    "messageId",
    "receiptHandle",
    "eventSourceARN",
    "data",
    "specversion",
    "id",
    "type",
]
SOURCES = st.sampled_from(
    ["aws:sqs", "aws:sns", "aws:s3", "aws:dynamodb", "aws:kinesis", "aws.events", "x"]
)
aws_like = st.recursive(
    json_values | SOURCES,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(AWS_KEYS) | st.text(max_size=6), inner, max_size=6)
    ),
    max_leaves=25,
)


# -- the event mapper ------------------------------------------------------------------------


@FUZZ
@given(event=aws_like, signature=st.sampled_from(["cloudevent", "http"]))
def test_the_event_mapper_maps_or_refuses_any_event(event: Any, signature: str) -> None:
    try:
        adapted = adapt(event, signature, "req-1", None, "arn:aws:lambda:eu-west-1:1:function:f")
    except FunctionError as error:
        assert error.error_type.startswith("Runtime."), error
        return
    assert isinstance(adapted.inputs, list) and adapted.inputs
    for item in adapted.inputs:
        json.dumps(item, default=str)  # what a worker is sent can be encoded


@FUZZ
@given(body=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_an_event_body_decodes_or_is_an_unmarshal_error(body: bytes) -> None:
    try:
        value = decode_event(body)
    except FunctionError as error:
        assert error.error_type == "Runtime.UnmarshalError"
        return
    assert json.loads(json.dumps(value)) == value or value != value  # NaN never equals


@FUZZ
@given(depth=st.integers(min_value=1, max_value=200_000), opener=st.sampled_from([b"[", b'{"a":']))
def test_deep_nesting_is_an_unmarshal_error_or_a_value(depth: int, opener: bytes) -> None:
    closer = b"]" if opener == b"[" else b"}"
    try:
        decode_event(opener * depth + b"0" * (opener != b"[") + closer * depth)
    except FunctionError as error:
        assert error.error_type == "Runtime.UnmarshalError"


@FUZZ
@given(answer=json_values)
def test_any_answer_shapes_into_an_http_response(answer: Any) -> None:
    from ort_core.gateway.http_event import response_parts

    try:
        status, headers, body = response_parts(http_answer(answer))
    except (ValueError, TypeError):  # the gateway answers 502 Gateway.BadAnswer
        return
    assert 100 <= status <= 599
    assert all(isinstance(n, bytes) and isinstance(v, bytes) for n, v in headers)
    assert isinstance(body, bytes)


# -- the worker protocol -----------------------------------------------------------------------


class Collect:
    def __init__(self) -> None:
        self.data = bytearray()

    def sendall(self, data: bytes) -> None:
        self.data += data


headers = st.dictionaries(st.text(max_size=8), json_values, max_size=4).map(
    lambda extra: {**extra, "type": "invoke"}
)


@FUZZ
@given(header=headers, body=st.binary(max_size=300))
def test_worker_messages_round_trip_byte_exact(header: dict[str, Any], body: bytes) -> None:
    wire = Collect()
    write_message(wire, header, body)  # type: ignore[arg-type]
    reader = io.BytesIO(bytes(wire.data))
    assert read_message(reader) == (header, body)
    assert reader.read() == b""


@FUZZ
@given(data=st.binary(max_size=300))
def test_the_worker_decoder_reads_a_message_or_refuses_the_bytes(data: bytes) -> None:
    try:
        header, body = read_message(io.BytesIO(data))
    except ProtocolError:
        return
    assert isinstance(header, dict) and "type" in header
    assert isinstance(body, bytes)


@FUZZ
@given(size=st.integers(min_value=MAX_PART + 1, max_value=2**32 - 1))
def test_a_length_over_the_limit_is_refused_before_reading(size: int) -> None:
    try:
        read_message(io.BytesIO(size.to_bytes(4, "big") + b"{}"))
    except ProtocolError as error:
        assert "limit" in str(error)
    else:
        raise AssertionError("an oversize part was accepted")


# -- middleware answers --------------------------------------------------------------------------


@FUZZ
@given(output=st.binary(max_size=200))
def test_a_middlewares_output_replaces_keeps_or_fails_the_invocation(output: bytes) -> None:
    try:
        answer = parse_output("m", "before", output)
    except FunctionError as error:
        assert error.error_type == "Runtime.MiddlewareError"
        assert error.message.startswith("middleware 'm' failed in 'before': its output is not JSON")
        return
    assert answer is UNCHANGED or json.loads(output) == answer or answer != answer


@FUZZ
@given(value=json_values)
def test_a_middlewares_json_output_round_trips(value: Any) -> None:
    assert parse_output("m", "after", json.dumps(value).encode() + b"\n") == value


@FUZZ
@given(payload=json_values, request_id=st.text(max_size=20))
def test_a_persistent_middleware_request_is_one_line_that_round_trips(
    payload: Any, request_id: str
) -> None:
    from ort_core.config import FunctionConfig
    from ort_core.context import Context
    from ort_core.middleware.persistent import _request

    line = _request("before", payload, Context(request_id, 0, FunctionConfig.from_environ({})))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    request = json.loads(line)
    assert (request["hook"], request["requestId"], request["payload"]) == (
        "before",
        request_id,
        payload,
    )


# -- the gateway's requests ----------------------------------------------------------------------


class EchoPool:
    """The pool's interface, answering the event it was given: the gateway without workers."""

    size = 1

    async def invoke(self, body: Any, context: Any) -> bytes:
        event = body.value if hasattr(body, "value") else json.loads(body)
        return json.dumps({"statusCode": 200, "body": json.dumps(event)}).encode()


def gateway(max_body: int = 1000) -> Any:
    from ort_core.config import FunctionConfig
    from ort_core.gateway.app import Gateway
    from ort_core.gateway.auth import TokenVerifier

    config = FunctionConfig.from_environ({"ORT_SIGNATURE": "raw"}, handler="app.handler")
    return Gateway(EchoPool(), TokenVerifier({"SCW_PUBLIC": "true"}), config, 5, max_body)  # type: ignore[arg-type]


def call(app: Any, scope: dict[str, Any], chunks: list[bytes]) -> tuple[int, bytes]:
    messages = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks or [b""])
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = sent[0]["status"]
    return status, b"".join(m.get("body", b"") for m in sent[1:])


header_bytes = st.binary(min_size=1, max_size=20)
TRIGGER = st.sampled_from([b"http", b"cron", b"sqs", b"nats", b"mqtt", b""])


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "OPTIONS", "DELETE", "BREW"]),
    path=st.text(max_size=30).map(lambda p: "/" + p),
    query=st.binary(max_size=40),
    raw_headers=st.lists(st.tuples(header_bytes, st.binary(max_size=30)), max_size=5),
    trigger=TRIGGER,
    chunks=st.lists(st.binary(max_size=600), max_size=4),
)
def test_any_request_is_answered_or_refused_with_a_4xx(
    method: str,
    path: str,
    query: bytes,
    raw_headers: list[tuple[bytes, bytes]],
    trigger: bytes,
    chunks: list[bytes],
) -> None:
    request_headers = [(name.lower(), value) for name, value in raw_headers]
    if trigger:
        request_headers.append((b"scw-trigger-type", trigger))
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "headers": request_headers,
    }
    status, body = call(gateway(), scope, chunks)
    size = sum(map(len, chunks))
    if status >= 400:
        error = json.loads(body)
        assert 400 <= status < 500, error
        assert error["errorType"].startswith("Gateway."), error
        assert status != 413 or size > 1000
        return
    assert status in (200, 204)
    if status == 200 and trigger in (b"http", b""):
        event = json.loads(body)
        assert event["httpMethod"] == method and event["path"] == path
        if not event["isBase64Encoded"]:
            assert event["body"] == b"".join(chunks).decode()
