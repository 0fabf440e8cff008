"""``ort serve`` end to end: the real CLI in a subprocess, called over HTTP like Scaleway's
core runtime.

Each server is ``python -m ort_core serve`` on a free port of 127.0.0.1, with a function folder
as its working directory and its stdout and stderr in one file; tests wait for
``GET /_ort/ready``, then check with httpx what a user sees: status, headers, body bytes and
the error JSON. The Python handler records every event it gets (a JSON line in a file, and on
its stdout) so a test can tell what reached the function.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cloudevents.core.bindings.http import (
    HTTPMessage,
    from_http_event,
    to_binary_event,
    to_structured_event,
)
from cloudevents.core.v1.event import CloudEvent
from conftest import alive, clean_environ, descendants
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

START_LIMIT = 30.0  # seconds for a server to be ready (Node workers start side by side)
STOP_LIMIT = 15.0
BINARY = bytes(range(256))  # not UTF-8: arrives base64-encoded
NAMESPACE_ID = "ns-0001"
APPLICATION_ID = "app-0001"

PY_APP = """
import base64
import json
import os
import time


def record(event):
    line = json.dumps(event)
    print("event: " + line, flush=True)
    with open(os.environ["RECORD_FILE"], "a") as file:
        file.write(line + "\\n")


def describe(event):
    attributes = {
        name: value.isoformat() if hasattr(value, "isoformat") else value
        for name, value in event.get_attributes().items()
    }
    return {"class": type(event).__module__ + "." + type(event).__name__, "attributes": attributes}


def handler(event, context):
    if callable(getattr(event, "get_attributes", None)):  # a CloudEvent request
        from cloudevents.core.v1.event import CloudEvent

        record({"cloudevent": describe(event), "data": event.get_data()})
        return CloudEvent(
            attributes={
                "type": "com.example.reply",
                "source": "/ort/tests",
                "id": "reply-" + event.get_id(),
                "subject": event.get_type(),
                "traceparent": event.get_extension("traceparent"),
                "datacontenttype": "application/json",
            },
            data={"received": event.get_data()},
        )
    record(event)
    if not isinstance(event, dict) or "httpMethod" not in event:  # a non-HTTP trigger
        return {"ignored": "a trigger's answer is a plain 200"}
    path = event["path"]
    if path == "/sleep":
        time.sleep(float(event["queryStringParameters"]["seconds"]))
        return {"slept": True}
    if path == "/response":
        return {
            "statusCode": 201,
            "headers": {"Content-Type": "text/plain", "X-Created-By": "ort"},
            "body": "created",
            "isBase64Encoded": False,
        }
    if path == "/binary":
        return {
            "statusCode": 200,
            "headers": {"content-type": "application/octet-stream"},
            "body": base64.b64encode(bytes(range(256))).decode(),
            "isBase64Encoded": True,
        }
    if path == "/data":
        return {"hello": "world", "numbers": [1, 2, 3], "nothing": None}
    if path == "/cloudevent":
        return {
            "specversion": "1.0",
            "id": "answer-1",
            "source": "/ort/tests",
            "type": "com.example.answer",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "datacontenttype": "application/json",
            "data": {"answered": True},
        }
    return {
        "event": event,
        "context": {
            "functionName": context.function_name,
            "functionVersion": context.function_version,
            "memoryLimitInMb": context.memory_limit_in_mb,
        },
    }
"""

NODE_APP = """
const fs = require('fs');
const path = require('path');

exports.handler = async (event, context) => {
  const query = event.queryStringParameters || {};
  if (event.path === '/exit') {
    process.exit(1);
  }
  if (event.path === '/sleep') {
    if (query.marker) {
      fs.writeFileSync(path.join(process.env.MARKER_DIR, query.marker), String(process.pid));
    }
    await new Promise((resolve) => setTimeout(resolve, Number(query.ms)));
    return { slept: Number(query.ms), pid: process.pid };
  }
  if (event.path === '/response') {
    return { statusCode: 202, headers: { 'X-From': 'node' }, body: 'accepted' };
  }
  return {
    event,
    context: {
      functionName: context.functionName,
      functionVersion: context.functionVersion,
      memoryLimitInMB: context.memoryLimitInMB,
    },
    pid: process.pid,
  };
};
"""

IDENTITY = {
    "SCW_APPLICATION_NAME": "gateway-tests",
    "SCW_APPLICATION_VERSION": "7",
    "SCW_APPLICATION_MEMORY": "256",
}


# -- servers ----------------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    folder: Path
    log_path: Path
    client: httpx.Client
    files: list[Any] = field(default_factory=list)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def request(self, method: str, path: str = "/", **options: Any) -> httpx.Response:
        return self.client.request(method, self.url(path), **options)

    def get(self, path: str = "/", **options: Any) -> httpx.Response:
        return self.request("GET", path, **options)

    def post(self, path: str = "/", **options: Any) -> httpx.Response:
        return self.request("POST", path, **options)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def diagnostics(self) -> str:
        return f"--- ort serve (exit {self.process.poll()}) output ---\n{self.log()}"

    def recorded(self) -> list[Any]:
        """The events the Python handler has recorded, oldest first."""
        path = self.folder / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_ready(server: Server, limit: float = START_LIMIT) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"ort serve exited early\n{server.diagnostics()}")
        try:
            if server.get("/_ort/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"ort serve was not ready in {limit}s\n{server.diagnostics()}")


def start_server(
    folder: Path,
    handler: str | None,
    *options: str,
    env: dict[str, str] | None = None,
    log_path: Path,
) -> Server:
    """Without a handler, neither --handler nor --port: the environment names both (PORT)."""
    port = free_port()
    command = [sys.executable, "-m", "ort_core", "serve", "--host", "127.0.0.1"]
    if handler is not None:
        command += ["--handler", handler, "--port", str(port)]
    command += options
    environ = {
        name: value
        for name, value in clean_environ(ORT_SIGNATURE="").items()  # ort serve's own default
        if not name.startswith(("SCW_", "PORT"))
    }
    environ.update(
        LAMBDA_TASK_ROOT=str(folder),
        PYTHONPATH=str(folder),
        RECORD_FILE=str(folder / "events.jsonl"),
        MARKER_DIR=str(folder),
        **(env or {}),
    )
    if handler is None:
        environ["PORT"] = str(port)
    output = open(log_path, "wb")  # closed in stop_server()
    process = subprocess.Popen(
        command,
        cwd=folder,
        env=environ,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    server = Server(process, port, folder, log_path, httpx.Client(timeout=30), [output])
    try:
        wait_until_ready(server)
    except BaseException:
        stop_server(server)
        raise
    return server


def stop_server(server: Server) -> None:
    """SIGTERM, wait, then SIGKILL; then end any worker it left behind."""
    server.client.close()
    process = server.process
    workers = descendants(process.pid) if process.poll() is None else []
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_LIMIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for pid in workers:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for handle in server.files:
        handle.close()


class Servers:
    """Starts servers in fresh function folders; ``close`` stops every one of them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[Server] = []

    def __call__(
        self,
        files: dict[str, str],
        handler: str | None,
        *options: str,
        env: dict[str, str] | None = None,
    ) -> Server:
        number = len(self.started)
        folder = self.root / f"function-{number}"
        folder.mkdir(parents=True)
        for name, source in files.items():
            (folder / name).write_text(textwrap.dedent(source))
        log_path = self.root / f"server-{number}.log"
        server = start_server(folder, handler, *options, env=env, log_path=log_path)
        self.started.append(server)
        return server

    def close(self) -> None:
        for server in self.started:
            stop_server(server)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Servers]:
    """``serve(files, handler, *options, env=...)``: a server stopped after the test."""
    servers = Servers(tmp_path)
    try:
        yield servers
    finally:
        servers.close()


@pytest.fixture(scope="module")
def module_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    servers = Servers(tmp_path_factory.mktemp("gateway"))
    try:
        yield servers
    finally:
        servers.close()


@pytest.fixture(scope="module")
def python_server(module_servers: Servers) -> Server:
    """A public Python function, two pipelines."""
    env = {"SCW_PUBLIC": "true", "ORT_CONCURRENCY": "2", **IDENTITY}
    return module_servers({"app.py": PY_APP}, "app.handler", env=env)


@pytest.fixture(scope="module")
def node_server(module_servers: Servers) -> Server:
    env = {"SCW_PUBLIC": "true", "ORT_LANGUAGE": "node", "ORT_CONCURRENCY": "1", **IDENTITY}
    return module_servers({"index.js": NODE_APP}, "index.handler", env=env)


@pytest.fixture(scope="module")
def keys() -> tuple[Any, str]:
    """An RSA private key and the PEM of its public half."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, pem


@pytest.fixture(scope="module")
def private_server(module_servers: Servers, keys: tuple[Any, str]) -> Server:
    env = {
        "SCW_PUBLIC_KEY": keys[1],
        "SCW_NAMESPACE_ID": NAMESPACE_ID,
        "SCW_APPLICATION_ID": APPLICATION_ID,
        "ORT_CONCURRENCY": "1",
    }
    return module_servers({"app.py": PY_APP}, "app.handler", env=env)


def error_of(response: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["errorType"] == error_type, body
    assert isinstance(body["errorMessage"], str) and body["errorMessage"], body
    assert "stackTrace" not in body, body
    return body


# -- events -----------------------------------------------------------------------------------


def test_a_text_request_becomes_scaleways_event(python_server):
    response = python_server.post(
        "/some/path",
        params={"name": "ort", "empty": ""},
        headers={"X-Mixed-Case": "Value", "Content-Type": "text/plain; charset=utf-8"},
        content="héllo wörld".encode(),
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["access-control-allow-origin"] == "*"
    event = response.json()["event"]
    assert event["path"] == "/some/path"
    assert event["httpMethod"] == "POST"
    assert event["headers"]["x-mixed-case"] == "Value"
    assert event["headers"]["content-type"] == "text/plain; charset=utf-8"
    assert all(name == name.lower() for name in event["headers"]), event["headers"]
    assert event["queryStringParameters"] == {"name": "ort", "empty": ""}
    assert event["body"] == "héllo wörld"
    assert event["isBase64Encoded"] is False
    assert event["requestContext"] == {"httpMethod": "POST", "path": "/some/path", "stage": ""}
    assert event["multiValueHeaders"] is None
    assert event["multiValueQueryStringParameters"] is None


def test_a_binary_body_arrives_base64_encoded(python_server):
    response = python_server.request(
        "PUT", "/upload", content=BINARY, headers={"content-type": "application/octet-stream"}
    )

    assert response.status_code == 200, response.text
    event = response.json()["event"]
    assert event["httpMethod"] == "PUT"
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == BINARY


def test_a_get_without_body_or_query(python_server):
    response = python_server.get("/")

    assert response.status_code == 200, response.text
    event = response.json()["event"]
    assert event["httpMethod"] == "GET"
    assert event["body"] == ""
    assert event["isBase64Encoded"] is False
    assert event["queryStringParameters"] == {}


def test_port_and_handler_come_from_scaleways_variables(serve):
    env = {"SCW_PUBLIC": "true", "SCW_HANDLER_PATH": "app.py", "SCW_HANDLER_NAME": "handler"}
    server = serve({"app.py": PY_APP}, None, env=env)

    response = server.get("/data")

    assert response.status_code == 200, response.text
    assert response.json()["hello"] == "world"


def test_the_context_names_the_function_from_scaleways_variables(python_server):
    context = python_server.get("/").json()["context"]

    assert context["functionName"] == "gateway-tests"
    assert context["functionVersion"] == "7"
    assert str(context["memoryLimitInMb"]) == "256"


def test_a_node_handler_gets_the_same_event_and_context(node_server):
    response = node_server.post(
        "/node/path",
        params={"q": "1"},
        headers={"X-Mixed-Case": "Value"},
        content=b"from node",
    )

    assert response.status_code == 200, response.text
    answer = response.json()
    event = answer["event"]
    assert event["path"] == "/node/path"
    assert event["httpMethod"] == "POST"
    assert event["headers"]["x-mixed-case"] == "Value"
    assert event["queryStringParameters"] == {"q": "1"}
    assert event["body"] == "from node"
    assert event["isBase64Encoded"] is False
    assert event["requestContext"] == {"httpMethod": "POST", "path": "/node/path", "stage": ""}
    assert answer["context"]["functionName"] == "gateway-tests"
    assert answer["context"]["functionVersion"] == "7"
    assert str(answer["context"]["memoryLimitInMB"]) == "256"

    binary = node_server.post("/", content=BINARY).json()["event"]
    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == BINARY


def test_a_node_status_code_answer_is_the_response(node_server):
    response = node_server.get("/response")

    assert response.status_code == 202, response.text
    assert response.headers["x-from"] == "node"
    assert response.content == b"accepted"


# -- answers ----------------------------------------------------------------------------------


def test_a_status_code_answer_is_the_http_response(python_server):
    response = python_server.post("/response", content=b"{}")

    assert response.status_code == 201
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["x-created-by"] == "ort"
    assert response.headers["content-length"] == str(len(b"created"))
    assert response.content == b"created"


def test_a_base64_answer_is_sent_as_bytes(python_server):
    response = python_server.get("/binary")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content == BINARY


def test_plain_data_is_200_json(python_server):
    response = python_server.get("/data")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"hello": "world", "numbers": [1, 2, 3], "nothing": None}


def test_a_cloudevent_answer_goes_out_in_binary_mode(python_server):
    response = python_server.get("/cloudevent")

    assert response.status_code == 200, response.text
    assert response.headers["ce-specversion"] == "1.0"
    assert response.headers["ce-id"] == "answer-1"
    assert response.headers["ce-type"] == "com.example.answer"
    event = from_http_event(HTTPMessage(headers=dict(response.headers), body=response.content))
    assert event.get_id() == "answer-1"
    assert event.get_source() == "/ort/tests"
    assert event.get_type() == "com.example.answer"
    assert event.get_extension("traceparent") == (
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    )
    assert event.get_data() == {"answered": True}


# -- CloudEvents in --------------------------------------------------------------------------


def request_cloudevent() -> CloudEvent:
    return CloudEvent(
        attributes={
            "type": "com.example.order.created",
            "source": "/shop/orders",
            "id": "order-42",
            "subject": "orders/42",
            "time": datetime.datetime(2026, 3, 4, 5, 6, 7, tzinfo=datetime.timezone.utc),
            "datacontenttype": "application/json",
            "dataschema": "https://example.com/order.json",
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        },
        data={"order": 42, "items": ["book", "pen"], "note": "ünïcode"},
    )


def assert_handler_got(server: Server, sent: CloudEvent) -> None:
    got = server.recorded()[-1]
    assert got["cloudevent"]["class"] == "cloudevents.core.v1.event.CloudEvent", got
    attributes = got["cloudevent"]["attributes"]
    assert attributes["specversion"] == "1.0"
    assert attributes["type"] == sent.get_type()
    assert attributes["source"] == sent.get_source()
    assert attributes["id"] == sent.get_id()
    assert attributes["subject"] == sent.get_subject()
    assert attributes["datacontenttype"] == "application/json"
    assert attributes["dataschema"] == sent.get_dataschema()
    assert attributes["traceparent"] == sent.get_extension("traceparent")
    assert datetime.datetime.fromisoformat(attributes["time"]) == sent.get_time()
    assert got["data"] == sent.get_data()


def assert_binary_reply(response: httpx.Response, sent: CloudEvent) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["ce-specversion"] == "1.0"
    assert response.headers["content-type"] == "application/json"
    reply = from_http_event(HTTPMessage(headers=dict(response.headers), body=response.content))
    assert reply.get_type() == "com.example.reply"
    assert reply.get_source() == "/ort/tests"
    assert reply.get_id() == f"reply-{sent.get_id()}"
    assert reply.get_subject() == sent.get_type()
    assert reply.get_extension("traceparent") == sent.get_extension("traceparent")
    assert reply.get_data() == {"received": sent.get_data()}


def test_a_binary_mode_cloudevent_reaches_the_handler_as_the_sdks_cloudevent(python_server):
    sent = request_cloudevent()
    message = to_binary_event(sent)
    assert "ce-traceparent" in message.headers

    response = python_server.post("/", headers=message.headers, content=message.body)

    assert_binary_reply(response, sent)
    assert_handler_got(python_server, sent)


def test_a_structured_mode_cloudevent_reaches_the_handler_as_the_sdks_cloudevent(python_server):
    sent = request_cloudevent()
    message = to_structured_event(sent)
    assert message.headers["content-type"].startswith("application/cloudevents+json")

    response = python_server.post("/", headers=message.headers, content=message.body)

    assert_binary_reply(response, sent)
    assert_handler_got(python_server, sent)


# -- private functions ------------------------------------------------------------------------


def token(private_key: Any, **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iat": now,
        "exp": now + 600,
        "application_claim": [{"namespace_id": NAMESPACE_ID, "application_id": APPLICATION_ID}],
        **claims,
    }
    return jwt.encode(payload, private_key, algorithm="RS256")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with_public_pem(pem: str) -> str:
    """Algorithm confusion: HMAC with the public key's PEM as the secret (PyJWT refuses to
    make such a token, so it is made by hand)."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    now = int(time.time())
    claims = {
        "exp": now + 600,
        "application_claim": [{"namespace_id": NAMESPACE_ID, "application_id": APPLICATION_ID}],
    }
    payload = b64url(json.dumps(claims).encode())
    signature = hmac.new(pem.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(signature)}"


def test_the_jwt_matrix(private_server, keys):
    private_key, pem = keys
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    valid = token(private_key)
    refused = {
        "expired": (token(private_key, iat=now - 600, exp=now - 60), 401),
        "not yet valid": (token(private_key, nbf=now + 600), 401),
        "wrong key": (token(other_key), 401),
        "alg none": (
            jwt.encode(
                {"application_claim": [{"namespace_id": NAMESPACE_ID}], "exp": now + 600},
                None,
                algorithm="none",
            ),
            401,
        ),
        "hs256 with the public key": (hs256_with_public_pem(pem), 401),
        "garbage": ("not.a.token", 401),
        "wrong application": (
            token(private_key, application_claim=[{"namespace_id": "ns-x", "application_id": "x"}]),
            403,
        ),
        "two applications": (
            token(
                private_key,
                application_claim=[
                    {"namespace_id": NAMESPACE_ID, "application_id": APPLICATION_ID},
                    {"namespace_id": "ns-x", "application_id": "x"},
                ],
            ),
            403,
        ),
        "no claim": (token(private_key, application_claim=None), 403),
    }
    before = len(private_server.recorded())

    for name, (bad, status) in refused.items():
        response = private_server.get("/", headers={"SCW-Functions-Token": bad})
        kind = "Gateway.Unauthorized" if status == 401 else "Gateway.Forbidden"
        body = error_of(response, status, kind)
        assert bad not in response.text, name
        assert response.headers["access-control-allow-origin"] == "*", name
        assert "requestId" not in body, name

    error_of(private_server.get("/"), 401, "Gateway.Unauthorized")  # no token at all
    assert len(private_server.recorded()) == before, "a refused request reached the function"

    response = private_server.get("/", headers={"SCW-Functions-Token": valid})
    assert response.status_code == 200, response.text
    event = response.json()["event"]
    assert "scw-functions-token" not in event["headers"]
    assert valid not in response.text

    fallback = token(private_key, application_claim=[{"application_id": APPLICATION_ID}])
    response = private_server.get("/", headers={"SCW_FUNCTIONS_TOKEN": fallback})
    assert response.status_code == 200, response.text
    assert "scw_functions_token" not in response.json()["event"]["headers"]

    by_namespace = token(private_key, application_claim=[{"namespace_id": NAMESPACE_ID}])
    assert private_server.get("/", headers={"SCW-Functions-Token": by_namespace}).is_success

    secrets = [valid, fallback, by_namespace, *(bad for bad, _ in refused.values())]
    seen = private_server.log() + json.dumps(private_server.recorded())
    assert "event: " in private_server.log(), "the handler's output should be in the log"
    for secret in secrets:
        assert secret not in seen
        signature = secret.rpartition(".")[2]
        assert len(signature) < 16 or signature not in seen  # nor its signature alone


def test_health_ready_and_preflight_need_no_token(private_server):
    assert private_server.get("/_ort/health").json() == {"status": "alive"}
    assert private_server.get("/_ort/ready").json() == {"status": "ready"}
    response = private_server.request(
        "OPTIONS",
        "/anything",
        headers={"Origin": "https://example.com", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 204


def test_a_public_function_needs_no_token(python_server):
    assert python_server.get("/").status_code == 200


def test_a_private_function_without_a_key_is_a_500(serve, keys):
    server = serve({"app.py": PY_APP}, "app.handler", env={"SCW_NAMESPACE_ID": NAMESPACE_ID})

    error_of(server.get("/"), 500, "Gateway.Misconfigured")
    response = server.get("/", headers={"SCW-Functions-Token": token(keys[0])})
    error_of(response, 500, "Gateway.Misconfigured")
    assert server.recorded() == []


# -- triggers ---------------------------------------------------------------------------------


def test_a_cron_trigger_gets_its_arguments_and_answers_a_plain_200(python_server):
    arguments = {"job": "cleanup", "older_than_days": 30, "dry_run": False}

    response = python_server.post(
        "/", headers={"SCW_TRIGGER_TYPE": "cron"}, content=json.dumps(arguments).encode()
    )

    assert response.status_code == 200, response.text
    assert response.content == b""
    assert python_server.recorded()[-1] == arguments


def test_a_queue_trigger_gets_its_text_body(python_server):
    response = python_server.post(
        "/", headers={"SCW_TRIGGER_TYPE": "sqs"}, content=b"a message from the queue"
    )

    assert response.status_code == 200, response.text
    assert response.content == b""
    assert python_server.recorded()[-1] == "a message from the queue"


def test_an_unknown_trigger_is_a_400(python_server):
    before = len(python_server.recorded())

    response = python_server.post("/", headers={"SCW_TRIGGER_TYPE": "carrier-pigeon"}, content=b"")

    body = error_of(response, 400, "Gateway.BadTrigger")
    assert "carrier-pigeon" in body["errorMessage"]
    assert len(python_server.recorded()) == before


# -- limits -----------------------------------------------------------------------------------


def test_bodies_over_the_limit_are_413_declared_or_streamed(serve):
    server = serve(
        {"app.py": PY_APP},
        "app.handler",
        env={"SCW_PUBLIC": "true", "SCW_PAYLOAD_MAX_SIZE": "1000"},
    )

    def chunks(total: int, size: int = 100) -> Iterator[bytes]:
        sent = 0
        while sent < total:
            piece = min(size, total - sent)
            yield b"x" * piece
            sent += piece

    declared = server.post("/", content=b"x" * 1001)
    error_of(declared, 413, "Gateway.PayloadTooLarge")

    streamed = server.post("/", content=chunks(1500))
    error_of(streamed, 413, "Gateway.PayloadTooLarge")
    large = server.post("/", content=b"z" * 500_000)  # answered before it is all read
    error_of(large, 413, "Gateway.PayloadTooLarge")
    large_streamed = server.post("/", content=chunks(500_000, 10_000))
    error_of(large_streamed, 413, "Gateway.PayloadTooLarge")
    assert server.recorded() == []

    at_limit = server.post("/", content=b"y" * 1000)
    assert at_limit.status_code == 200, at_limit.text
    assert at_limit.json()["event"]["body"] == "y" * 1000

    streamed_at_limit = server.post("/", content=chunks(1000))
    assert streamed_at_limit.status_code == 200, streamed_at_limit.text
    event = streamed_at_limit.json()["event"]
    assert event["body"] == "x" * 1000
    assert "content-length" not in event["headers"]
    assert event["headers"]["transfer-encoding"] == "chunked"


# -- concurrency, timeouts, crashes -----------------------------------------------------------


def in_thread(call: Callable[[], httpx.Response]) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def wait_for(condition: Callable[[], bool], what: str, server: Server, limit: float = 15) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen in {limit}s\n{server.diagnostics()}")
        time.sleep(0.02)


def test_a_full_pool_and_queue_is_a_429(serve):
    server = serve(
        {"app.py": PY_APP},
        "app.handler",
        env={"SCW_PUBLIC": "true", "ORT_CONCURRENCY": "1", "ORT_QUEUE_SIZE": "1"},
    )
    slow = {"params": {"seconds": "2"}, "timeout": 30}

    def started() -> int:
        return sum(1 for event in server.recorded() if event.get("path") == "/sleep")

    first, first_outcome = in_thread(lambda: httpx.get(server.url("/sleep"), **slow))
    wait_for(lambda: started() == 1, "the first request", server)
    others = [in_thread(lambda: httpx.get(server.url("/sleep"), **slow)) for _ in range(2)]
    for thread, _ in [(first, first_outcome), *others]:
        thread.join(30)

    responses = [first_outcome[0], *(outcome[0] for _, outcome in others)]
    assert all(isinstance(response, httpx.Response) for response in responses), responses
    assert responses[0].status_code == 200, responses[0].text
    statuses = sorted(response.status_code for response in responses[1:])
    assert statuses == [200, 429], [response.text for response in responses]
    refused = next(response for response in responses if response.status_code == 429)
    error_of(refused, 429, "Gateway.TooManyRequests")
    assert refused.headers["retry-after"] == "1"
    assert started() == 2  # the queued request was served, the refused one never ran


def test_a_python_handler_past_its_timeout_is_a_504_and_its_pipeline_replaced(serve):
    server = serve(
        {"app.py": PY_APP},
        "app.handler",
        "--timeout",
        "1",
        "--concurrency",
        "1",
        env={"SCW_PUBLIC": "true"},
    )

    began = time.monotonic()
    response = server.get("/sleep", params={"seconds": "20"})
    assert time.monotonic() - began < 15
    body = error_of(response, 504, "Sandbox.Timedout")
    assert body["requestId"]

    after = server.get("/data")
    assert after.status_code == 200, after.text
    assert after.json()["hello"] == "world"
    assert server.get("/_ort/ready").status_code == 200


def test_a_node_handler_past_its_timeout_is_a_504_and_its_worker_replaced(serve):
    server = serve(
        {"index.js": NODE_APP},
        "index.handler",
        "--timeout",
        "1",
        env={"SCW_PUBLIC": "true", "ORT_LANGUAGE": "node", "ORT_CONCURRENCY": "1"},
    )
    old_pid = server.get("/").json()["pid"]

    began = time.monotonic()
    response = server.get("/sleep", params={"ms": "20000"})
    assert time.monotonic() - began < 15
    error_of(response, 504, "Sandbox.Timedout")

    after = server.get("/")
    assert after.status_code == 200, after.text
    assert after.json()["pid"] != old_pid
    wait_for(lambda: not alive(old_pid), "the timed-out worker's end", server)


def test_a_crashed_node_worker_is_a_502_then_replaced(serve):
    server = serve(
        {"index.js": NODE_APP},
        "index.handler",
        env={"SCW_PUBLIC": "true", "ORT_LANGUAGE": "node", "ORT_CONCURRENCY": "1"},
    )
    old_pid = server.get("/").json()["pid"]

    body = error_of(server.get("/exit"), 502, "Runtime.ExitError")
    assert body["requestId"]

    after = server.get("/")
    assert after.status_code == 200, after.text
    assert after.json()["pid"] != old_pid
    assert server.get("/response").status_code == 202


def test_sigterm_drains_in_flight_requests_then_exits(serve):
    server = serve(
        {"index.js": NODE_APP},
        "index.handler",
        env={"SCW_PUBLIC": "true", "ORT_LANGUAGE": "node", "ORT_CONCURRENCY": "3"},
    )
    workers = descendants(server.process.pid)
    assert len(workers) >= 3, workers
    markers = [f"in-flight-{n}" for n in range(3)]
    calls = [
        in_thread(
            lambda marker=marker: httpx.get(
                server.url("/sleep"), params={"ms": "1500", "marker": marker}, timeout=30
            )
        )
        for marker in markers
    ]
    wait_for(
        lambda: all((server.folder / marker).exists() for marker in markers),
        "three requests in flight",
        server,
    )

    server.process.send_signal(signal.SIGTERM)
    for thread, _ in calls:
        thread.join(30)

    for _, outcome in calls:
        assert len(outcome) == 1 and isinstance(outcome[0], httpx.Response), outcome
        assert outcome[0].status_code == 200, outcome[0].text
        assert outcome[0].json()["slept"] == 1500
    assert server.process.wait(timeout=STOP_LIMIT) == 0, server.diagnostics()
    assert "Traceback" not in server.log(), server.diagnostics()
    wait_for(lambda: not any(alive(pid) for pid in workers), "the workers' end", server, limit=10)


def test_health_readiness_and_cors(python_server):
    health = python_server.get("/_ort/health")
    assert health.status_code == 200
    assert health.json() == {"status": "alive"}
    ready = python_server.get("/_ort/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}

    preflight = python_server.request(
        "OPTIONS",
        "/api/items",
        headers={
            "Origin": "https://example.com",
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type, x-custom",
        },
    )
    assert preflight.status_code == 204
    assert preflight.content == b""
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert preflight.headers["access-control-allow-methods"]
    assert preflight.headers["access-control-allow-headers"]

    answer = python_server.get("/data", headers={"Origin": "https://example.com"})
    assert answer.headers["access-control-allow-origin"] == "*"


TAGGED_APP = """
import logging
import time

def handler(event, context):
    logging.getLogger("app").info("begun %s", context.aws_request_id)
    time.sleep(0.3)
    logging.getLogger("app").info("ended %s", context.aws_request_id)
    return {"requestId": context.aws_request_id}
"""


def test_concurrent_invocations_log_with_their_own_request_ids(serve):
    server = serve(
        {"app.py": TAGGED_APP}, "app.handler", env={"SCW_PUBLIC": "true", "ORT_CONCURRENCY": "3"}
    )
    calls = [in_thread(lambda: httpx.get(server.url("/"), timeout=30)) for _ in range(6)]
    for thread, _ in calls:
        thread.join(30)
    ids = {outcome[0].json()["requestId"] for _, outcome in calls}
    assert len(ids) == 6
    tagged = [
        line.split("\t")
        for line in server.log().splitlines()
        if line.startswith("[INFO]") and ("\tbegun " in line or "\tended " in line)
    ]
    assert len(tagged) == 12, server.diagnostics()
    for _, _, tag, message in tagged:
        assert message.split()[1] == tag  # the line carries its own invocation's id
    assert {tag for _, _, tag, _ in tagged} == ids


ANSWER_HOOKS = """
import json, os
from ort_core import hookimpl

@hookimpl
def after_answer(context):
    with open(os.environ["HOOK_LOG"], "a") as log:
        log.write(json.dumps(["after_answer", context.aws_request_id]) + "\\n")

@hookimpl
def on_shutdown():
    with open(os.environ["HOOK_LOG"], "a") as log:
        log.write(json.dumps(["on_shutdown"]) + "\\n")
"""


def test_after_answer_follows_each_request_and_on_shutdown_the_drain(serve, tmp_path):
    hook_log = tmp_path / "hooks.ndjson"
    server = serve(
        {
            "handler.py": "def handle(event, context):\n    return {'body': 'hi'}\n",
            "hooks.py": ANSWER_HOOKS,
        },
        "handler.handle",
        env={
            "SCW_PUBLIC": "true",
            "ORT_PLUGIN_MODULES": "hooks",
            "ORT_CONCURRENCY": "1",
            "HOOK_LOG": str(hook_log),
        },
    )
    for _ in range(2):
        assert server.get("/").json() == {"body": "hi"}
    wait_for(
        lambda: hook_log.exists() and len(hook_log.read_text().splitlines()) == 2,
        "two after_answer",
        server,
    )
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=STOP_LIMIT) == 0, server.diagnostics()
    entries = [json.loads(line) for line in hook_log.read_text().splitlines()]
    assert [entry[0] for entry in entries] == ["after_answer", "after_answer", "on_shutdown"]
    assert len({entry[1] for entry in entries[:2]}) == 2  # one per request, each its own id
