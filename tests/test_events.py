"""AWS events as CloudEvents (ort_core.events): the mapping table, tracing, the SDK, batches.

The sample events follow the shapes AWS documents for each source (Lambda developer guide,
"Using AWS Lambda with ..."), with values made consistent where AWS's own samples are not.
Mappers run strictly here (`aws._STRICT`): an exception inside one fails the test instead of
turning the event into a generic one.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from cloudevents.core.bindings.http import (
    HTTPMessage,
    from_structured_event,
    to_structured_event,
)
from cloudevents.core.v1.event import CloudEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ort_core.events import aws
from ort_core.events.cloudevent import Mapped, rfc3339, to_datetime
from ort_core.events.tracing import xray_to_traceparent


@pytest.fixture(autouse=True, scope="module")
def strict_mappers():
    aws._STRICT = True
    yield
    aws._STRICT = False


REQUEST_ID = "8476a536-e9f4-11e8-9739-2dfe598c3fcd"
FUNCTION_ARN = "arn:aws:lambda:us-east-2:123456789012:function:my-function"
LAMBDA_TRACE = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
LAMBDA_TRACEPARENT = "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"
SQS_TRACE = "Root=1-5c5d2e6f-4d3b2a1f0e9d8c7b6a5f4e3d;Parent=1a2b3c4d5e6f7a8b;Sampled=0"
SQS_TRACEPARENT = "00-5c5d2e6f4d3b2a1f0e9d8c7b6a5f4e3d-1a2b3c4d5e6f7a8b-00"
NOW = object()  # expected time: the invocation's arrival (the event carries none)
BINARY_BODY = b"\x89PNG\r\n\x1a\n\x00\x00binary"

# -- sample events, one per source -----------------------------------------------------------

APIGATEWAY_V1 = {
    "resource": "/orders/{id}",
    "path": "/orders/42",
    "httpMethod": "POST",
    "headers": {
        "Content-Type": "text/plain",
        "Host": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
        "X-Amzn-Trace-Id": "Root=1-5e66d96f-7491f09e9a4b79d18acf3d05",
        "Accept": "text/plain,application/json",
    },
    "multiValueHeaders": {
        "Content-Type": ["text/plain"],
        "Host": ["a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"],
        "X-Amzn-Trace-Id": ["Root=1-5e66d96f-7491f09e9a4b79d18acf3d05"],
        "Accept": ["text/plain", "application/json"],
    },
    "queryStringParameters": {"page": "2", "tag": "b"},
    "multiValueQueryStringParameters": {"page": ["2"], "tag": ["a", "b"]},
    "pathParameters": {"id": "42"},
    "stageVariables": None,
    "requestContext": {
        "accountId": "123456789012",
        "apiId": "a1b2c3d4e5",
        "domainName": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
        "domainPrefix": "a1b2c3d4e5",
        "extendedRequestId": "JJbxmHc3IAMFZ6w=",
        "httpMethod": "POST",
        "identity": {"sourceIp": "192.0.2.10", "userAgent": "curl/8.4.0"},
        "path": "/prod/orders/42",
        "protocol": "HTTP/1.1",
        "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
        "requestTime": "04/Mar/2020:19:15:17 +0000",
        "requestTimeEpoch": 1583349317135,
        "resourceId": "abc123",
        "resourcePath": "/orders/{id}",
        "stage": "prod",
    },
    "body": "Hello from Lambda!",
    "isBase64Encoded": False,
}

APIGATEWAY_V2 = {
    "version": "2.0",
    "routeKey": "POST /upload",
    "rawPath": "/upload",
    "rawQueryString": "parameter1=value1&parameter1=value2&parameter2=a%2Cb",
    "cookies": ["session=abc", "theme=dark"],
    "headers": {
        "content-type": "image/png",
        "host": "r3pmxmplak.execute-api.us-east-2.amazonaws.com",
        "x-amzn-trace-id": "Root=1-5e6722a7-cc56xmpl46db7ae02d4da47e",
    },
    "queryStringParameters": {"parameter1": "value1,value2", "parameter2": "a,b"},
    "requestContext": {
        "accountId": "123456789012",
        "apiId": "r3pmxmplak",
        "domainName": "r3pmxmplak.execute-api.us-east-2.amazonaws.com",
        "domainPrefix": "r3pmxmplak",
        "http": {
            "method": "POST",
            "path": "/upload",
            "protocol": "HTTP/1.1",
            "sourceIp": "192.0.2.1",
            "userAgent": "agent",
        },
        "requestId": "JKJaXmPLvHcESHA=",
        "routeKey": "POST /upload",
        "stage": "$default",
        "time": "04/Mar/2020:19:03:58 +0000",
        "timeEpoch": 1583348638390,
    },
    "body": base64.b64encode(BINARY_BODY).decode(),
    "isBase64Encoded": True,
}

FUNCTION_URL = {
    "version": "2.0",
    "routeKey": "$default",
    "rawPath": "/my/path",
    "rawQueryString": "",
    "headers": {
        "content-type": "application/json",
        "host": "a3lfquvw6bwo2x5mpmu2kncgba0lgydf.lambda-url.us-west-2.on.aws",
    },
    "requestContext": {
        "accountId": "anonymous",
        "apiId": "a3lfquvw6bwo2x5mpmu2kncgba0lgydf",
        "authentication": None,
        "domainName": "a3lfquvw6bwo2x5mpmu2kncgba0lgydf.lambda-url.us-west-2.on.aws",
        "domainPrefix": "a3lfquvw6bwo2x5mpmu2kncgba0lgydf",
        "http": {
            "method": "POST",
            "path": "/my/path",
            "protocol": "HTTP/1.1",
            "sourceIp": "123.123.123.123",
            "userAgent": "agent",
        },
        "requestId": "id-from-function-url",
        "routeKey": "$default",
        "stage": "$default",
        "time": "09/Mar/2024:16:00:00 +0000",
        "timeEpoch": 1710000000123,
    },
    "body": '{"message": "hi"}',
    "pathParameters": None,
    "isBase64Encoded": False,
    "stageVariables": None,
}

ALB = {
    "requestContext": {
        "elb": {
            "targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:"
            "targetgroup/lambda-279XGJDqGZ5rsrHC2Fjr/49e9d65c45c6791a"
        }
    },
    "httpMethod": "GET",
    "path": "/lambda",
    "queryStringParameters": {"query": "1234ABCD", "q": "a%20b+c"},
    "headers": {
        "accept": "text/html",
        "host": "lambda-alb-123578498.us-east-1.elb.amazonaws.com",
        "user-agent": "Mozilla/5.0",
        "x-amzn-trace-id": "Root=1-5c536348-3d683b8b04734faae651f476",
        "x-forwarded-for": "72.12.164.125",
        "x-forwarded-port": "80",
        "x-forwarded-proto": "http",
    },
    "body": "",
    "isBase64Encoded": False,
}

SQS = {
    "Records": [
        {
            "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
            "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
            "body": "test",
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": "1545082649183",
                "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                "ApproximateFirstReceiveTimestamp": "1545082649185",
            },
            "messageAttributes": {},
            "md5OfBody": "098f6bcd4621d373cade4e832627b4f6",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:my-queue",
            "awsRegion": "us-east-2",
        },
        {
            "messageId": "2e1424d4-f796-459a-8184-9c92662be6da",
            "receiptHandle": "AQEBzWwaftRI0KuVm4tP+/7q1rGgNqicHq...",
            "body": '{"order": 1, "items": ["a"]}',
            "attributes": {
                "ApproximateReceiveCount": "1",
                "AWSTraceHeader": SQS_TRACE,
                "SentTimestamp": "1545082650636",
                "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                "ApproximateFirstReceiveTimestamp": "1545082650649",
            },
            "messageAttributes": {
                "tenant": {"stringValue": "acme", "dataType": "String"},
            },
            "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:my-queue",
            "awsRegion": "us-east-2",
        },
    ]
}

SNS = {
    "Records": [
        {
            "EventVersion": "1.0",
            "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:sns-lambda:"
            "21be56ed-a058-49f5-8c98-aedd2564c486",
            "EventSource": "aws:sns",
            "Sns": {
                "SignatureVersion": "1",
                "Timestamp": "2019-01-02T12:45:07.000Z",
                "Signature": "tcc6faL2yUC6dgZdmrwh1Y4cGa/ebXEkAi6RibDsvpi+tE/1+82j...65r==",
                "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/"
                "SimpleNotificationService-ac565b8b1a6c5d002d285f9598aa1d9b.pem",
                "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
                "Message": "Hello from SNS!",
                "MessageAttributes": {"Test": {"Type": "String", "Value": "TestString"}},
                "Type": "Notification",
                "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
                "TopicArn": "arn:aws:sns:us-east-1:123456789012:sns-lambda",
                "Subject": "TestInvoke",
            },
        }
    ]
}

S3 = {
    "Records": [
        {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "us-east-1",
            "eventTime": "2019-09-03T19:37:27.192Z",
            "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": "AWS:AIDAINPONIXQXHT3IKHL2"},
            "requestParameters": {"sourceIPAddress": "205.255.255.255"},
            "responseElements": {
                "x-amz-request-id": "D82B88E5F771F645",
                "x-amz-id-2": "vlR7PnpV2Ce81l0PRw6jlUpck7Jo5ZsQjryTjKlc5aLWGVHPZLj5NeC6qMa0emYB",
            },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "828aa6fc-f7b5-4305-8584-487c791949c1",
                "bucket": {
                    "name": "DOC-EXAMPLE-BUCKET",
                    "ownerIdentity": {"principalId": "A3I5XTEXAMAI3E"},
                    "arn": "arn:aws:s3:::lambda-artifacts-deafc19498e3f2df",
                },
                "object": {
                    "key": "photos/b21b84d653bb07b05b1e6b33684dc11b",
                    "size": 1305107,
                    "eTag": "b21b84d653bb07b05b1e6b33684dc11b",
                    "sequencer": "0C0F6F405D6ED209E1",
                },
            },
        }
    ]
}

EVENTBRIDGE = {
    "version": "0",
    "id": "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111",
    "detail-type": "Order Placed",
    "source": "com.example.orders",
    "account": "123456789012",
    "time": "2024-03-09T16:00:00Z",
    "region": "us-east-1",
    "resources": [],
    "detail": {"orderId": "o-42", "total": 19.5, "items": [{"sku": "x", "qty": 2}]},
}

SCHEDULED = {
    "version": "0",
    "account": "123456789012",
    "region": "us-east-2",
    "detail": {},
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "time": "2019-03-01T01:23:45Z",
    "id": "cdc73f9d-aea9-11e3-9d5a-835b769c0d9c",
    "resources": ["arn:aws:events:us-east-2:123456789012:rule/my-schedule"],
}

DYNAMODB = {
    "Records": [
        {
            "eventID": "1",
            "eventVersion": "1.0",
            "dynamodb": {
                "Keys": {"Id": {"N": "101"}},
                "NewImage": {"Message": {"S": "New item!"}, "Id": {"N": "101"}},
                "ApproximateCreationDateTime": 1428537600,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
                "SequenceNumber": "111",
                "SizeBytes": 26,
            },
            "awsRegion": "us-west-2",
            "eventName": "INSERT",
            "eventSourceARN": "arn:aws:dynamodb:us-west-2:123456789012:"
            "table/ExampleTableWithStream/stream/2015-06-27T00:48:05.899",
            "eventSource": "aws:dynamodb",
        },
        {
            "eventID": "2",
            "eventVersion": "1.0",
            "dynamodb": {
                "OldImage": {"Message": {"S": "New item!"}, "Id": {"N": "101"}},
                "SequenceNumber": "222",
                "Keys": {"Id": {"N": "101"}},
                "SizeBytes": 59,
                "NewImage": {"Message": {"S": "This item has changed"}, "Id": {"N": "101"}},
                "ApproximateCreationDateTime": 1428537700,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            },
            "awsRegion": "us-west-2",
            "eventName": "MODIFY",
            "eventSourceARN": "arn:aws:dynamodb:us-west-2:123456789012:"
            "table/ExampleTableWithStream/stream/2015-06-27T00:48:05.899",
            "eventSource": "aws:dynamodb",
        },
    ]
}

KINESIS_BLOB = b"\x00\x01\x02 not json \xff"
KINESIS = {
    "Records": [
        {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": "1",
                "sequenceNumber": "49590338271490256608559692538361571095921575989136588898",
                "data": base64.b64encode(b'{"temperature": 21.5, "sensor": "s1"}').decode(),
                "approximateArrivalTimestamp": 1545084650.987,
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": "shardId-000000000006:"
            "49590338271490256608559692538361571095921575989136588898",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
            "awsRegion": "us-east-2",
            "eventSourceARN": "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream",
        },
        {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": "2",
                "sequenceNumber": "49590338271490256608559692540925702759324208523137515618",
                "data": base64.b64encode(KINESIS_BLOB).decode(),
                "approximateArrivalTimestamp": 1545084711.166,
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": "shardId-000000000006:"
            "49590338271490256608559692540925702759324208523137515618",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
            "awsRegion": "us-east-2",
            "eventSourceARN": "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream",
        },
    ]
}

LOGS_PAYLOAD = {
    "messageType": "DATA_MESSAGE",
    "owner": "123456789012",
    "logGroup": "/aws/lambda/echo-nodejs",
    "logStream": "2019/03/13/[$LATEST]94fa867e5374431291a7fc14e2f56ae7",
    "subscriptionFilters": ["LambdaStream_cloudwatchlogs-node"],
    "logEvents": [
        {
            "id": "34622316099697884706540976068822859012661220141643892546",
            "timestamp": 1552518348220,
            "message": "REPORT RequestId: 6234bffe-149a-b642-81ff-2e8e376d8aff\tDuration: 46.84 ms",
        },
        {
            "id": "34622316099697884706540976068822859012661220141643892547",
            "timestamp": 1552518348221,
            "message": "END RequestId: 6234bffe-149a-b642-81ff-2e8e376d8aff",
        },
    ],
}


def awslogs(payload: Any) -> dict[str, Any]:
    """What CloudWatch Logs sends a subscribed function: gzip, then base64."""
    raw = gzip.compress(json.dumps(payload).encode())
    return {"awslogs": {"data": base64.b64encode(raw).decode()}}


LOGS = awslogs(LOGS_PAYLOAD)

CLOUDEVENT = {
    "specversion": "1.0",
    "id": "A234-1234-1234",
    "source": "https://github.com/cloudevents/spec/pull",
    "type": "com.github.pull_request.opened",
    "subject": "123",
    "time": "2018-04-05T17:31:00Z",
    "comexampleextension1": "value",
    "comexampleothervalue": 5,
    "datacontenttype": "application/json",
    "data": {"appinfoA": "abc", "appinfoB": 123, "appinfoC": True},
}

CLOUDEVENT_BINARY = {
    "specversion": "1.0",
    "id": "B234-1234-1234",
    "source": "/mycontext",
    "type": "com.example.someevent",
    "datacontenttype": "application/octet-stream",
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "data_base64": base64.b64encode(b"\x00\x01\x02").decode(),
}

WEBSOCKET = {  # API Gateway WebSocket: not a source ORT maps
    "requestContext": {"routeKey": "$connect", "eventType": "CONNECT", "connectionId": "abc="},
    "isBase64Encoded": False,
}


def http(event: dict[str, Any], **fields: Any) -> dict[str, Any]:
    request = {
        "query": {},
        "body": None,
        "isBase64Encoded": False,
        "pathParameters": {},
        "requestContext": event["requestContext"],
    }
    request.update(fields)
    return request


# (name, event, kind, [expected per CloudEvent])
CASES: list[tuple[str, Any, str, list[dict[str, Any]]]] = [
    (
        "apigateway-v1",
        APIGATEWAY_V1,
        "apigateway.v1",
        [
            {
                "id": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "source": "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
                "type": "com.amazonaws.apigateway.request",
                "subject": "/orders/42",
                "time": "2020-03-04T19:15:17.135Z",
                "datacontenttype": "application/json",
                # the X-Amzn-Trace-Id header has no Parent: the invocation's trace is used
                "traceparent": LAMBDA_TRACEPARENT,
                "data": http(
                    APIGATEWAY_V1,
                    method="POST",
                    path="/orders/42",
                    query={"page": ["2"], "tag": ["a", "b"]},
                    headers={
                        "content-type": "text/plain",
                        "host": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
                        "x-amzn-trace-id": "Root=1-5e66d96f-7491f09e9a4b79d18acf3d05",
                        "accept": "text/plain, application/json",
                    },
                    body="Hello from Lambda!",
                    pathParameters={"id": "42"},
                ),
            }
        ],
    ),
    (
        "apigateway-v2",
        APIGATEWAY_V2,
        "apigateway.v2",
        [
            {
                "id": "JKJaXmPLvHcESHA=",
                "source": "https://r3pmxmplak.execute-api.us-east-2.amazonaws.com",
                "type": "com.amazonaws.apigateway.request",
                "subject": "/upload",
                "time": "2020-03-04T19:03:58.390Z",
                "datacontenttype": "application/json",
                "traceparent": LAMBDA_TRACEPARENT,
                "data": http(
                    APIGATEWAY_V2,
                    method="POST",
                    path="/upload",
                    query={"parameter1": ["value1", "value2"], "parameter2": ["a,b"]},
                    headers={
                        "content-type": "image/png",
                        "host": "r3pmxmplak.execute-api.us-east-2.amazonaws.com",
                        "x-amzn-trace-id": "Root=1-5e6722a7-cc56xmpl46db7ae02d4da47e",
                        "cookie": "session=abc; theme=dark",
                    },
                    body=BINARY_BODY,
                    isBase64Encoded=True,
                ),
            }
        ],
    ),
    (
        "function-url",
        FUNCTION_URL,
        "lambda.url",
        [
            {
                "id": "id-from-function-url",
                "source": "https://a3lfquvw6bwo2x5mpmu2kncgba0lgydf.lambda-url.us-west-2.on.aws",
                "type": "com.amazonaws.lambda.url.request",
                "subject": "/my/path",
                "time": "2024-03-09T16:00:00.123Z",
                "datacontenttype": "application/json",
                "traceparent": LAMBDA_TRACEPARENT,
                "data": http(
                    FUNCTION_URL,
                    method="POST",
                    path="/my/path",
                    headers={
                        "content-type": "application/json",
                        "host": "a3lfquvw6bwo2x5mpmu2kncgba0lgydf.lambda-url.us-west-2.on.aws",
                    },
                    body='{"message": "hi"}',  # an HTTP body stays as sent
                ),
            }
        ],
    ),
    (
        "alb",
        ALB,
        "alb",
        [
            {
                "id": "1-5c536348-3d683b8b04734faae651f476",
                "source": ALB["requestContext"]["elb"]["targetGroupArn"],
                "type": "com.amazonaws.elasticloadbalancing.request",
                "subject": "/lambda",
                "time": NOW,
                "datacontenttype": "application/json",
                "traceparent": LAMBDA_TRACEPARENT,
                "data": http(
                    ALB,
                    method="GET",
                    path="/lambda",
                    query={"query": ["1234ABCD"], "q": ["a b c"]},  # ALB does not decode it
                    headers=ALB["headers"],
                    body="",
                ),
            }
        ],
    ),
    (
        "sqs-batch",
        SQS,
        "sqs",
        [
            {
                "id": "059f36b4-87a3-44ab-83d2-661975830a7d",
                "source": "arn:aws:sqs:us-east-2:123456789012:my-queue",
                "type": "com.amazonaws.sqs.message",
                "subject": None,
                "time": "2018-12-17T21:37:29.183Z",
                "datacontenttype": "text/plain",
                "traceparent": LAMBDA_TRACEPARENT,
                "data": "test",
            },
            {
                "id": "2e1424d4-f796-459a-8184-9c92662be6da",
                "source": "arn:aws:sqs:us-east-2:123456789012:my-queue",
                "type": "com.amazonaws.sqs.message",
                "subject": None,
                "time": "2018-12-17T21:37:30.636Z",
                "datacontenttype": "application/json",
                "traceparent": SQS_TRACEPARENT,  # the message's own trace header wins
                "data": {"order": 1, "items": ["a"]},
            },
        ],
    ),
    (
        "sns",
        SNS,
        "sns",
        [
            {
                "id": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
                # the published adapter: a Notification's source is the subscription ARN
                "source": SNS["Records"][0]["EventSubscriptionArn"],
                "type": "com.amazonaws.sns.Notification",
                "subject": "TestInvoke",
                "time": "2019-01-02T12:45:07.000Z",
                "datacontenttype": "text/plain",
                "traceparent": LAMBDA_TRACEPARENT,
                "data": "Hello from SNS!",
            }
        ],
    ),
    (
        "s3-put",
        S3,
        "s3",
        [
            {
                "id": "D82B88E5F771F645."
                "vlR7PnpV2Ce81l0PRw6jlUpck7Jo5ZsQjryTjKlc5aLWGVHPZLj5NeC6qMa0emYB",
                "source": "aws:s3.us-east-1.DOC-EXAMPLE-BUCKET",
                "type": "com.amazonaws.s3.ObjectCreated:Put",
                "subject": "photos/b21b84d653bb07b05b1e6b33684dc11b",
                "time": "2019-09-03T19:37:27.192Z",
                "datacontenttype": "application/json",
                "traceparent": LAMBDA_TRACEPARENT,
                "data": S3["Records"][0],
            }
        ],
    ),
    (
        "eventbridge-custom",
        EVENTBRIDGE,
        "eventbridge",
        [
            {
                "id": "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111",
                "source": "com.example.orders",
                "type": "Order Placed",
                "subject": None,
                "time": "2024-03-09T16:00:00Z",
                "datacontenttype": "application/json",
                "traceparent": LAMBDA_TRACEPARENT,
                "data": EVENTBRIDGE["detail"],
            }
        ],
    ),
    (
        "cloudwatch-scheduled",
        SCHEDULED,
        "scheduled",
        [
            {
                "id": "cdc73f9d-aea9-11e3-9d5a-835b769c0d9c",
                "source": "aws.events",
                "type": "Scheduled Event",
                "subject": "arn:aws:events:us-east-2:123456789012:rule/my-schedule",
                "time": "2019-03-01T01:23:45Z",
                "datacontenttype": "application/json",
                "traceparent": LAMBDA_TRACEPARENT,
                "data": {},
            }
        ],
    ),
    (
        "dynamodb-batch",
        DYNAMODB,
        "dynamodb",
        [
            {
                "id": "1",
                "source": "arn:aws:dynamodb:us-west-2:123456789012:table/ExampleTableWithStream",
                "type": "com.amazonaws.dynamodb.INSERT",
                "subject": None,
                "time": "2015-04-09T00:00:00.000Z",
                "datacontenttype": "application/json",
                "traceparent": LAMBDA_TRACEPARENT,
                "data": DYNAMODB["Records"][0]["dynamodb"],
            },
            {
                "id": "2",
                "source": "arn:aws:dynamodb:us-west-2:123456789012:table/ExampleTableWithStream",
                "type": "com.amazonaws.dynamodb.MODIFY",
                "subject": None,
                "time": "2015-04-09T00:01:40.000Z",
                "datacontenttype": "application/json",
                "traceparent": LAMBDA_TRACEPARENT,
                "data": DYNAMODB["Records"][1]["dynamodb"],
            },
        ],
    ),
    (
        "kinesis-batch",
        KINESIS,
        "kinesis",
        [
            {
                "id": KINESIS["Records"][0]["eventID"],
                "source": "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream",
                "type": "com.amazonaws.kinesis.record",
                "subject": "1",
                "time": "2018-12-17T22:10:50.987Z",
                "datacontenttype": "application/json",
                "traceparent": LAMBDA_TRACEPARENT,
                "data": {"temperature": 21.5, "sensor": "s1"},
            },
            {
                "id": KINESIS["Records"][1]["eventID"],
                "source": "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream",
                "type": "com.amazonaws.kinesis.record",
                "subject": "2",
                "time": "2018-12-17T22:11:51.166Z",
                "datacontenttype": "application/octet-stream",
                "traceparent": LAMBDA_TRACEPARENT,
                "data": KINESIS_BLOB,
            },
        ],
    ),
    (
        "cloudwatch-logs",
        LOGS,
        "logs",
        [
            {
                "id": "34622316099697884706540976068822859012661220141643892546",
                "source": "/aws/lambda/echo-nodejs",
                "type": "com.amazonaws.logs.DATA_MESSAGE",
                "subject": "2019/03/13/[$LATEST]94fa867e5374431291a7fc14e2f56ae7",
                "time": "2019-03-13T23:05:48.220Z",
                "datacontenttype": "application/json",
                "traceparent": LAMBDA_TRACEPARENT,
                "data": LOGS_PAYLOAD,
            }
        ],
    ),
    (
        "cloudevent-json",
        CLOUDEVENT,
        "cloudevent",
        [
            {
                "id": "A234-1234-1234",
                "source": "https://github.com/cloudevents/spec/pull",
                "type": "com.github.pull_request.opened",
                "subject": "123",
                "time": "2018-04-05T17:31:00Z",
                "datacontenttype": "application/json",
                "traceparent": None,  # passes through unchanged
                "comexampleextension1": "value",
                "comexampleothervalue": 5,
                "data": CLOUDEVENT["data"],
            }
        ],
    ),
    (
        "cloudevent-base64",
        CLOUDEVENT_BINARY,
        "cloudevent",
        [
            {
                "id": "B234-1234-1234",
                "source": "/mycontext",
                "type": "com.example.someevent",
                "subject": None,
                "time": None,
                "datacontenttype": "application/octet-stream",
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "data": b"\x00\x01\x02",
            }
        ],
    ),
    *[
        (
            f"unknown-{name}",
            event,
            "unknown",
            [
                {
                    "id": REQUEST_ID,
                    "source": FUNCTION_ARN,
                    "type": "com.amazonaws.lambda.invoke",
                    "subject": None,
                    "time": NOW,
                    "datacontenttype": None if event is None else "application/json",
                    "traceparent": LAMBDA_TRACEPARENT,
                    "data": event,
                }
            ],
        )
        for name, event in [
            ("object", {"hello": "world"}),
            ("list", [1, "two", {"three": 3}]),
            ("string", "ping"),
            ("number", 42.5),
            ("bool", True),
            ("null", None),
            ("empty-records", {"Records": []}),
            ("websocket", WEBSOCKET),
            ("corrupt-logs", {"awslogs": {"data": "bm90IGd6aXA="}}),  # base64, not gzip
            ("cloudevent-0.3", {**CLOUDEVENT, "specversion": "0.3"}),
            ("cloudevent-bad-extension", {**CLOUDEVENT, "Bad-Name": "x"}),
            ("cloudevent-both-data", {**CLOUDEVENT_BINARY, "data": "x"}),
        ]
    ],
]


def map_case(event: Any) -> tuple[str, list[Mapped]]:
    return aws.to_cloudevents(
        copy.deepcopy(event),
        trace_id=LAMBDA_TRACE,
        request_id=REQUEST_ID,
        function_arn=FUNCTION_ARN,
    )


def all_mapped() -> list[tuple[str, Mapped]]:
    return [
        (f"{name}[{i}]", mapped)
        for name, event, _, _ in CASES
        for i, mapped in enumerate(map_case(event)[1])
    ]


def assert_now(text: str) -> None:
    moment = to_datetime(text)
    assert abs(moment - datetime.now(timezone.utc)) < timedelta(seconds=30)


@pytest.mark.parametrize(("name", "event", "kind", "expected"), CASES, ids=[c[0] for c in CASES])
def test_the_mapping_table(name, event, kind, expected):
    original = copy.deepcopy(event)
    got_kind, mapped = map_case(event)
    assert got_kind == kind
    assert len(mapped) == len(expected)
    for (attributes, data), want in zip(mapped, expected, strict=True):
        want = dict(want)
        want_time, want_data = want.pop("time"), want.pop("data")
        assert attributes["specversion"] == "1.0"
        if want_time is NOW:
            assert_now(attributes["time"])
        else:
            assert attributes.get("time") == want_time
        assert data == want_data
        assert type(data) is type(want_data)
        for attribute, value in want.items():
            assert attributes.get(attribute) == value, attribute
        extra = set(attributes) - set(want) - {"specversion", "time"}
        assert not extra, extra
    assert event == original  # the event is not modified


def test_unknown_events_without_a_request_id_get_a_random_uuid():
    first = aws.to_cloudevents({"x": 1})[1][0].attributes
    second = aws.to_cloudevents({"x": 1})[1][0].attributes
    assert first["id"] != second["id"]
    assert len(first["id"]) == 36 and first["id"][14] == "4"  # version 4
    assert first["source"] == "aws:lambda"
    assert "traceparent" not in first


def test_records_without_ids_get_distinct_ids():
    event = {"Records": [{"eventSource": "aws:sqs", "body": "a"}, "junk", {"eventSource": 5}]}
    kind, mapped = aws.to_cloudevents(event, request_id="req")
    assert kind == "sqs"
    assert [m.attributes["id"] for m in mapped] == ["req:0", "req:1", "req:2"]
    assert [m.data for m in mapped] == ["a", None, None]
    assert aws.record_ids(kind, event) == ["", "", ""]


@pytest.mark.parametrize(
    ("header", "traceparent"),
    [
        (LAMBDA_TRACE, LAMBDA_TRACEPARENT),
        (LAMBDA_TRACE + ";Lineage=a87bd80c:1|68fd508a:5", LAMBDA_TRACEPARENT),
        (
            "Sampled=1; Parent=53995C3F42CD8AD8 ;Root=1-5759E988-BD862E3FE1BE46A994272793",
            LAMBDA_TRACEPARENT,
        ),
        (LAMBDA_TRACE.replace("Sampled=1", "Sampled=0"), LAMBDA_TRACEPARENT[:-2] + "00"),
        (LAMBDA_TRACE.replace(";Sampled=1", ""), LAMBDA_TRACEPARENT[:-2] + "00"),
        (LAMBDA_TRACE.replace("Sampled=1", "Sampled=?"), LAMBDA_TRACEPARENT[:-2] + "00"),
        ("Root=1-5759e988-bd862e3fe1be46a994272793", None),  # no parent span
        ("Root=1-5759e988-bd862e3fe1be46a99427279;Parent=53995c3f42cd8ad8", None),  # short
        ("Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8", None),
        ("Root=1-5759e988-bd862e3fe1be46a99427279x;Parent=53995c3f42cd8ad8", None),
        ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad", None),
        ("Root=1-00000000-000000000000000000000000;Parent=53995c3f42cd8ad8", None),
        ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=0000000000000000", None),
        ("", None),
        ("garbage", None),
        (None, None),
        (42, None),
    ],
)
def test_xray_to_traceparent(header, traceparent):
    assert xray_to_traceparent(header) == traceparent


def test_a_malformed_invocation_trace_adds_no_extension():
    for trace in (None, "", "Root=1-5759e988-bd862e3fe1be46a994272793", "nonsense"):
        (attributes, _), *_ = aws.to_cloudevents({"a": 1}, trace_id=trace)[1]
        assert "traceparent" not in attributes


@pytest.mark.parametrize(("name", "mapped"), all_mapped(), ids=[n for n, _ in all_mapped()])
def test_to_cloudevent_gives_the_sdk_event_with_the_same_attributes(name, mapped):
    event = aws.to_cloudevent(mapped)
    assert isinstance(event, CloudEvent)
    attributes = event.get_attributes()
    if "time" not in mapped.attributes:  # only a passed-through CloudEvent may lack one
        assert aws.to_cloudevents(mapped.attributes)[0] == "cloudevent"
        assert_now(attributes.pop("time").isoformat())  # the SDK insists on a time
    assert set(attributes) == set(mapped.attributes)
    for key, value in mapped.attributes.items():
        if key == "time":
            assert attributes["time"] == to_datetime(value)
            assert attributes["time"].tzinfo is not None
        else:
            assert attributes[key] == value
    assert event.get_data() is mapped.data


def same_attributes(read: Any, expected: Any, mapped: Mapped) -> None:
    """The SDK events' attributes are equal, but for the `time` the SDK adds when none is set."""
    ours, theirs = dict(read.get_attributes()), dict(expected.get_attributes())
    if "time" not in mapped.attributes:
        ours.pop("time"), theirs.pop("time")
    assert ours == theirs


def structured_data(data: Any) -> Any:
    """What the structured form carries for `data`: nested bytes become base64 strings."""
    if isinstance(data, dict):
        return {
            k: base64.b64encode(v).decode() if isinstance(v, bytes) else v for k, v in data.items()
        }
    return data


@pytest.mark.parametrize(("name", "mapped"), all_mapped(), ids=[n for n, _ in all_mapped()])
def test_structured_json_round_trips_through_the_sdk_http_binding(name, mapped):
    document = aws.to_structured_json(mapped)
    assert ("data_base64" in document) == isinstance(mapped.data, bytes)
    body = json.dumps(document, allow_nan=False).encode()
    message = HTTPMessage(headers={"content-type": "application/cloudevents+json"}, body=body)
    read = from_structured_event(message)
    same_attributes(read, aws.to_cloudevent(mapped), mapped)
    assert read.get_data() == structured_data(mapped.data)

    if not (isinstance(mapped.data, dict) and document.get("data") != mapped.data):
        # and the other way: the SDK's own structured writer, read back by the SDK
        written = to_structured_event(aws.to_cloudevent(mapped))
        again = from_structured_event(written)
        same_attributes(again, read, mapped)
        assert again.get_data() == read.get_data()


def test_structured_json_writes_binary_data_as_data_base64():
    (mapped,) = aws.to_cloudevents(CLOUDEVENT_BINARY)[1]
    document = aws.to_structured_json(mapped)
    assert "data" not in document
    assert document["data_base64"] == CLOUDEVENT_BINARY["data_base64"]
    assert document == CLOUDEVENT_BINARY  # a structured CloudEvent passes through unchanged

    (http_event,) = aws.to_cloudevents(APIGATEWAY_V2)[1]
    assert aws.to_structured_json(http_event)["data"]["body"] == APIGATEWAY_V2["body"]
    assert aws.to_structured_json(http_event)["data"]["isBase64Encoded"] is True


def test_structured_json_omits_absent_data():
    (mapped,) = aws.to_cloudevents(None)[1]
    assert "data" not in aws.to_structured_json(mapped)
    assert "data_base64" not in aws.to_structured_json(mapped)


def test_record_ids_and_batch_response():
    assert aws.record_ids("sqs", SQS) == [
        "059f36b4-87a3-44ab-83d2-661975830a7d",
        "2e1424d4-f796-459a-8184-9c92662be6da",
    ]
    assert aws.record_ids("kinesis", KINESIS) == [
        "49590338271490256608559692538361571095921575989136588898",
        "49590338271490256608559692540925702759324208523137515618",
    ]
    assert aws.record_ids("dynamodb", DYNAMODB) == ["111", "222"]
    for kind, event in [("sns", SNS), ("s3", S3), ("unknown", {"a": 1}), ("sqs", None)]:
        assert aws.record_ids(kind, event) == []
    assert aws.BATCH_KINDS == {"sqs", "kinesis", "dynamodb"}
    assert aws.batch_response(["111"]) == {"batchItemFailures": [{"itemIdentifier": "111"}]}
    assert aws.batch_response([]) == {"batchItemFailures": []}


def test_every_kind_has_a_faas_trigger():
    kinds = {kind for kind, _ in aws.SOURCES} | {"unknown"}
    assert set(aws.FAAS_TRIGGER) == kinds
    assert set(aws.FAAS_TRIGGER.values()) <= {"datasource", "http", "pubsub", "timer", "other"}


def test_a_mapper_that_raises_gives_the_generic_event(monkeypatch):
    def broken(event, inv):
        raise KeyError("fooled")

    monkeypatch.setattr(aws, "SOURCES", [("broken", broken), *aws.SOURCES])
    with pytest.raises(KeyError):
        aws.to_cloudevents(SQS)
    monkeypatch.setattr(aws, "_STRICT", False)
    assert aws.to_cloudevents(SQS)[0] == "sqs"  # the next mapper gets its turn
    monkeypatch.setattr(aws, "SOURCES", [("broken", broken)])
    kind, (mapped,) = aws.to_cloudevents(SQS, request_id=REQUEST_ID)
    assert kind == "unknown"
    assert mapped.attributes["type"] == aws.UNKNOWN_TYPE
    assert mapped.data == SQS


def test_importing_the_mapper_imports_no_sdk():
    script = (
        "import sys\n"
        "from ort_core.events import aws\n"
        "aws.to_cloudevents({'Records': [{'eventSource': 'aws:sqs', 'body': '{}'}]})\n"
        "heavy = {'cloudevents', 'uuid', 'datetime', 'typing'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("2018-04-05T17:31:00Z", True),
        ("2018-04-05t17:31:00.123456789+05:30", True),
        ("2020-02-29T00:00:00-00:00", True),
        ("2019-02-29T00:00:00Z", False),
        ("2018-04-05T24:00:00Z", False),
        ("2018-04-05T23:59:60Z", False),
        ("2018-04-05 17:31:00Z", False),
        ("2018-04-05T17:31:00", False),
        ("0000-01-01T00:00:00Z", False),
        ("٢٠١٨-04-05T17:31:00Z", False),
        (1522949460, False),
    ],
)
def test_rfc3339(text, valid):
    assert (rfc3339(text) is not None) is valid


# -- properties -----------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
# what replaces a value in a shaped event: any scalar or an empty container (cheap to draw)
ODD_VALUES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from([{}, []])
)
# keys whose sample value stays, so that the shape is still recognised
MARKERS = {"eventSource", "EventSource", "version", "specversion", "detail-type", "httpMethod"}


def shaped(sample: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values shaped like `sample`: its keys with, at each leaf, its value or any JSON."""
    if isinstance(sample, dict):
        required = {k: st.just(v) for k, v in sample.items() if k in MARKERS}
        optional = {k: shaped(v, depth + 1) for k, v in sample.items() if k not in MARKERS}
        structure = st.fixed_dictionaries(required, optional=optional)
        return structure if depth == 0 else structure | ODD_VALUES
    if isinstance(sample, list):
        items = shaped(sample[0], depth + 1) if sample else ODD_VALUES
        return st.lists(items, min_size=1 if depth <= 1 else 0, max_size=3) | ODD_VALUES
    return st.just(sample) | ODD_VALUES


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def with_binary_leaves() -> st.SearchStrategy[Any]:
    """Kinesis records and HTTP bodies whose base64 data is arbitrary bytes."""
    kinesis = shaped(KINESIS).flatmap(
        lambda event: st.builds(
            lambda blobs: _put_kinesis_data(event, blobs),
            st.lists(st.binary(max_size=40) | JSON_VALUES.map(lambda v: json.dumps(v).encode())),
        )
    )
    http_body = st.builds(
        lambda event, body: {**event, "body": b64(body), "isBase64Encoded": True},
        st.sampled_from([APIGATEWAY_V1, APIGATEWAY_V2, FUNCTION_URL, ALB]),
        st.binary(max_size=40),
    )
    return kinesis | http_body


def _put_kinesis_data(event: dict[str, Any], blobs: list[bytes]) -> dict[str, Any]:
    records = event.get("Records")
    if isinstance(records, list):
        for record, blob in zip(records, blobs, strict=False):
            if isinstance(record, dict) and isinstance(record.get("kinesis"), dict):
                record["kinesis"]["data"] = b64(blob)
    return event


SHAPED = {
    "apigateway.v1": shaped(APIGATEWAY_V1),
    "apigateway.v2": shaped(APIGATEWAY_V2),
    "lambda.url": shaped(FUNCTION_URL),
    "alb": st.builds(
        lambda rest, ctx: {**rest, "requestContext": ctx},
        shaped(ALB),
        shaped({"elb": {"targetGroupArn": "arn"}}),
    ),
    "sqs": shaped(SQS),
    "sns": shaped(SNS),
    "s3": shaped(S3),
    "eventbridge": shaped(EVENTBRIDGE),
    "scheduled": shaped(SCHEDULED),
    "dynamodb": shaped(DYNAMODB),
    "kinesis": shaped(KINESIS),
    "logs": shaped(LOGS_PAYLOAD).map(awslogs) | shaped(LOGS),
    "cloudevent": shaped(CLOUDEVENT) | shaped(CLOUDEVENT_BINARY),
    "binary": with_binary_leaves(),
}

LOOK_ALIKES = {
    "alb": ["apigateway.v1"],
    "lambda.url": ["apigateway.v2"],
    "apigateway.v2": ["lambda.url"],
    "eventbridge": ["scheduled"],
    "scheduled": ["eventbridge"],
}

PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    database=None,  # a failure prints its example; nothing to replay from a folder
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# 15 shapes: fewer examples each keeps the file at a few seconds (~1,200 shaped events a run)
SHAPED_SETTINGS = settings(PROPERTY_SETTINGS, max_examples=80)


def check_valid(event: Any, trace_id: Any = None, request_id: Any = None) -> tuple[str, list]:
    kind, mapped = aws.to_cloudevents(event, trace_id=trace_id, request_id=request_id)
    assert mapped
    for item in mapped:
        attributes = item.attributes
        for required in ("id", "source", "type"):
            assert isinstance(attributes[required], str) and attributes[required]
        assert attributes["specversion"] == "1.0"
        sdk_event = aws.to_cloudevent(item)  # the SDK validates every attribute
        assert sdk_event.get_specversion() == "1.0"
        body = json.dumps(aws.to_structured_json(item), allow_nan=False).encode()
        read = from_structured_event(HTTPMessage(headers={}, body=body))
        same_attributes(read, sdk_event, item)
    if kind in aws.BATCH_KINDS:
        assert len(mapped) == len(event["Records"]) == len(aws.record_ids(kind, event))
    return kind, mapped


@PROPERTY_SETTINGS
@given(JSON_VALUES, st.none() | st.text(max_size=80), st.none() | st.text(max_size=40))
def test_arbitrary_json_always_maps_to_valid_cloudevents(event, trace_id, request_id):
    check_valid(event, trace_id, request_id)


@pytest.mark.parametrize("source", sorted(SHAPED))
@SHAPED_SETTINGS
@given(data=st.data())
def test_source_shaped_events_always_map_to_valid_cloudevents(source, data):
    event = data.draw(SHAPED[source])
    kind, _ = check_valid(event, LAMBDA_TRACE, REQUEST_ID)
    if source in aws.FAAS_TRIGGER:
        # the markers of the shape stay: the kind is the source's, a look-alike's when a field
        # that tells them apart went missing, or unknown when the detection declined
        assert kind in {source, "unknown", *LOOK_ALIKES.get(source, ())}


@pytest.mark.parametrize(
    "moment",
    [
        "2018-04-05t17:31:00.123456789+05:30",
        "2018-04-05T17:31:00z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59.999999-23:59",
    ],
)
def test_passed_through_times_survive_the_sdk(moment):
    kind, (mapped,) = check_valid({**CLOUDEVENT, "time": moment})
    assert kind == "cloudevent"
    assert mapped.attributes["time"] == moment
    assert aws.to_structured_json(mapped)["time"] == moment
