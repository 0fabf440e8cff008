"""ORT_SIGNATURE: CloudEvents per record with partial batch answers, HTTP answers, requests."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ort_core import Context, FunctionConfig, FunctionError
from ort_core.startup import start_function

SQS_BATCH = {
    "Records": [
        {
            "messageId": f"msg-{n}",
            "receiptHandle": "handle",
            "body": json.dumps({"order": n}),
            "attributes": {"SentTimestamp": "1700000000000", "ApproximateReceiveCount": "1"},
            "messageAttributes": {},
            "md5OfBody": "x",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:eu-west-1:111122223333:orders",
            "awsRegion": "eu-west-1",
        }
        for n in range(3)
    ]
}

HTTP_V2 = {
    "version": "2.0",
    "routeKey": "POST /orders",
    "rawPath": "/orders",
    "rawQueryString": "",
    "headers": {"content-type": "application/json"},
    "requestContext": {
        "requestId": "req-http",
        "domainName": "api.example.com",
        "http": {"method": "POST", "path": "/orders", "sourceIp": "203.0.113.1"},
        "timeEpoch": 1700000000000,
    },
    "body": json.dumps({"answer": "plain"}),
    "isBase64Encoded": False,
}

PYTHON = """
from cloudevents.core.v1.event import CloudEvent

def handler(event, context):
    assert isinstance(event, CloudEvent), type(event)
    data = event.get_data()
    if event.get_type() == "com.amazonaws.sqs.message":
        if data["order"] == 1:
            raise ValueError("order 1 is broken")
        return None
    request = data
    wanted = __import__("json").loads(request["body"])["answer"]
    if wanted == "plain":
        return {"seen": event.get_type(), "method": request["method"]}
    if wanted == "response":
        return {"statusCode": 201, "headers": {"x-made": "here"}, "body": {"created": True}}
    return CloudEvent(
        attributes={"id": "answer-1", "source": "/orders", "type": "order.created",
                    "specversion": "1.0", "datacontenttype": "application/json"},
        data={"order": 7},
    )
"""


def start(tmp_path: Path, source: str, signature: str, handler: str, language: str):
    """In-process Python caches modules by name: each test names its own module."""
    extension = {"python": ".py", "node": ".js"}[language]
    (tmp_path / (handler.rpartition(".")[0] + extension)).write_text(source)
    config = FunctionConfig(
        handler=handler, task_root=str(tmp_path), language=language, signature=signature
    )
    return config, start_function(config, {"ORT_PLUGINS": f"ort-{language}"})


def invoke(pipeline, config, event) -> object:
    context = Context("req-1", int(time.time() * 1000) + 30_000, config)
    return json.loads(pipeline.invoke(json.dumps(event).encode(), context))


@pytest.fixture
def python_cloudevents(tmp_path):
    config, pipeline = start(tmp_path, PYTHON, "cloudevent", "cloudevent_app.handler", "python")
    yield config, pipeline
    pipeline.close()


def test_an_sqs_batch_answers_with_exactly_the_failed_record(python_cloudevents):
    config, pipeline = python_cloudevents
    assert invoke(pipeline, config, SQS_BATCH) == {
        "batchItemFailures": [{"itemIdentifier": "msg-1"}]
    }


def test_plain_data_from_an_http_trigger_is_a_200_json_response(python_cloudevents):
    config, pipeline = python_cloudevents
    response = invoke(pipeline, config, HTTP_V2)
    assert response["statusCode"] == 200
    assert response["headers"]["content-type"] == "application/json"
    assert json.loads(response["body"]) == {
        "seen": "com.amazonaws.apigateway.request",
        "method": "POST",
    }


def test_an_http_response_passes_with_its_status_and_a_string_body(python_cloudevents):
    config, pipeline = python_cloudevents
    event = {**HTTP_V2, "body": json.dumps({"answer": "response"})}
    response = invoke(pipeline, config, event)
    assert (response["statusCode"], response["headers"]) == (201, {"x-made": "here"})
    assert json.loads(response["body"]) == {"created": True}


def test_a_cloudevent_answer_goes_back_in_binary_mode(python_cloudevents):
    config, pipeline = python_cloudevents
    event = {**HTTP_V2, "body": json.dumps({"answer": "cloudevent"})}
    response = invoke(pipeline, config, event)
    headers = response["headers"]
    assert (headers["ce-id"], headers["ce-source"], headers["ce-type"]) == (
        "answer-1",
        "/orders",
        "order.created",
    )
    assert headers["ce-specversion"] == "1.0"
    assert headers["content-type"] == "application/json"
    assert json.loads(response["body"]) == {"order": 7}


HTTP_HANDLER = """
def handler(request, context):
    return {"got": request["method"] + " " + request["path"]}
"""


def test_the_http_signature_hands_over_the_request(tmp_path):
    source = HTTP_HANDLER
    config, pipeline = start(tmp_path, source, "http", "http_app.handler", "python")
    try:
        response = invoke(pipeline, config, HTTP_V2)
        assert json.loads(response["body"]) == {"got": "POST /orders"}
    finally:
        pipeline.close()


NODE = """
exports.handler = async (event) => ({
  specversion: event.specversion, id: event.id, type: event.type, source: event.source,
  isBuffer: Buffer.isBuffer(event.data),
  data: Buffer.isBuffer(event.data) ? [...event.data] : event.data,
});
"""


def test_node_handlers_get_the_spec_attributes_and_decoded_data(tmp_path):
    kinesis = {
        "Records": [
            {
                "kinesis": {
                    "partitionKey": "k",
                    "sequenceNumber": "495",
                    "data": "AAEC",
                    "approximateArrivalTimestamp": 1700000000.5,
                    "kinesisSchemaVersion": "1.0",
                },
                "eventSource": "aws:kinesis",
                "eventID": "shardId-0:495",
                "eventName": "aws:kinesis:record",
                "eventSourceARN": "arn:aws:kinesis:eu-west-1:111122223333:stream/clicks",
                "awsRegion": "eu-west-1",
                "eventVersion": "1.0",
            }
        ]
    }
    config, pipeline = start(tmp_path, NODE, "cloudevent", "index.handler", "node")
    try:
        assert invoke(pipeline, config, kinesis) == {"batchItemFailures": []}
        sns = {
            "Records": [
                {
                    "EventSource": "aws:sns",
                    "EventSubscriptionArn": "arn:sub",
                    "Sns": {
                        "Type": "Notification",
                        "MessageId": "m-1",
                        "TopicArn": "arn:topic",
                        "Message": '{"hello": "node"}',
                        "Timestamp": "2024-01-01T00:00:00.000Z",
                    },
                }
            ]
        }
        answer = invoke(pipeline, config, sns)
        assert (answer["specversion"], answer["id"], answer["type"]) == (
            "1.0",
            "m-1",
            "com.amazonaws.sns.Notification",
        )
        assert (answer["isBuffer"], answer["data"]) == (False, {"hello": "node"})
    finally:
        pipeline.close()


def test_an_unknown_signature_is_an_init_error(tmp_path):
    with pytest.raises(FunctionError) as raised:
        start(tmp_path, PYTHON, "xml", "xml_app.handler", "python")
    assert raised.value.error_type == "Runtime.InvalidEntrypoint"
    assert "ORT_SIGNATURE='xml'" in raised.value.message


ECHO = "def handler(event, context):\n    return event\n"


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_sdk_cloudevents_round_trip_through_an_http_triggered_function(tmp_path, mode):
    from cloudevents.core.bindings.http import (
        HTTPMessage,
        from_binary_event,
        to_binary_event,
        to_structured_event,
    )
    from cloudevents.core.v1.event import CloudEvent

    sent = CloudEvent(
        attributes={
            "id": "evt-42",
            "source": "/shop",
            "type": "order.placed",
            "specversion": "1.0",
            "subject": "order/42",
            "datacontenttype": "application/json",
            "traceparent": "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01",
        },
        data={"order": 42, "items": ["é", 1.5]},
    )
    message = (to_binary_event if mode == "binary" else to_structured_event)(sent)
    request = {
        **HTTP_V2,
        "headers": {name.lower(): value for name, value in message.headers.items()},
        "body": message.body.decode(),
    }
    config, pipeline = start(tmp_path, ECHO, "cloudevent", f"echo_{mode}.handler", "python")
    try:
        response = invoke(pipeline, config, request)
    finally:
        pipeline.close()
    assert response["statusCode"] == 200
    received = from_binary_event(HTTPMessage(response["headers"], response["body"].encode()))
    for name in ("id", "source", "type", "specversion", "subject", "datacontenttype"):
        assert received.get_attributes()[name] == sent.get_attributes()[name]
    assert received.get_extension("traceparent") == sent.get_extension("traceparent")
    assert received.get_data() == sent.get_data()


def test_a_workers_answer_passes_byte_exact_with_cloudevents(tmp_path):
    source = "exports.handler = async () => ({compact: [1, 2], text: 'é'});\n"
    config, pipeline = start(tmp_path, source, "cloudevent", "exact.handler", "node")
    try:
        context = Context("req-1", int(time.time() * 1000) + 30_000, config)
        answer = pipeline.invoke(json.dumps({"any": "event"}).encode(), context)
    finally:
        pipeline.close()
    assert answer == '{"compact":[1,2],"text":"é"}'.encode()
