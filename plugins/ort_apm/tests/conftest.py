"""Fixtures for ort-apm's tests: a real OTLP/HTTP receiver, a downstream HTTP server, and
functions run by ``ort bootstrap`` against the tests' Runtime API peer.

The receiver decodes every body with OpenTelemetry's own protobuf messages
(``opentelemetry-proto``) through ``google.protobuf.json_format``, so what ort-apm sends is
proven to be valid OTLP/HTTP JSON, not merely JSON that these tests agree with.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

ROOT = Path(__file__).resolve().parents[3]
# Appended, never first: tests/ must stay the place a bare ``import conftest`` finds.
for folder in (ROOT / "tests", Path(__file__).resolve().parent):  # runtime_api_peer, apm_traces
    if str(folder) not in sys.path:
        sys.path.append(str(folder))

from apm_traces import attributes, hex_ids_to_base64  # noqa: E402
from runtime_api_peer import Peer, start_peer  # noqa: E402

PYTHON = sys.executable

KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
STATUSES = {0: "unset", 1: "ok", 2: "error"}


# -- the OTLP receiver --------------------------------------------------------------------------


class Received:
    """One export: its path, when it arrived (epoch ms, before the answer) and its message."""

    def __init__(self, path: str, received_ms: float, message: Any) -> None:
        self.path = path
        self.received_ms = received_ms
        self.message = message


class Receiver:
    """An OTLP/HTTP collector on 127.0.0.1 answering 200 to ``/v1/traces`` and
    ``/v1/metrics``; ``fail_with`` makes it answer that status instead."""

    def __init__(self) -> None:
        self.exports: list[Received] = []
        self.errors: list[str] = []
        self.fail_with: int | None = None
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received_ms = time.time() * 1000
                try:
                    status = receiver.fail_with or 200
                    if status == 200:  # what is refused is not received
                        receiver.record(self.path, dict(self.headers.items()), body, received_ms)
                except Exception as exc:  # the test sees it in receiver.errors
                    receiver.errors.append(f"{self.path}: {type(exc).__name__}: {exc}")
                    status = 400
                answer = b"{}"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def record(self, path: str, headers: dict[str, str], body: bytes, received_ms: float) -> None:
        assert headers.get("Content-Type") == "application/json", headers
        if headers.get("Content-Encoding") == "gzip":
            import gzip

            body = gzip.decompress(body)
        document = hex_ids_to_base64(json.loads(body))
        kinds = {
            "/v1/traces": ExportTraceServiceRequest,
            "/v1/metrics": ExportMetricsServiceRequest,
        }
        message = json_format.Parse(json.dumps(document), kinds[path]())
        with self.changed:
            self.exports.append(Received(path, received_ms, message))
            self.changed.notify_all()

    def spans(self) -> list[dict[str, Any]]:
        """Every span received so far, flattened, with its resource and arrival time."""
        found = []
        with self.changed:
            exports = [e for e in self.exports if e.path == "/v1/traces"]
        for export in exports:
            for resource_spans in export.message.resource_spans:
                resource = attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found.append(
                            {
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_id": span.parent_span_id.hex() or None,
                                "name": span.name,
                                "kind": KINDS.get(span.kind, span.kind),
                                "start_ns": span.start_time_unix_nano,
                                "end_ns": span.end_time_unix_nano,
                                "attributes": attributes(span.attributes),
                                "status": STATUSES[span.status.code],
                                "message": span.status.message,
                                "events": [e.name for e in span.events],
                                "resource": resource,
                                "scope": scope_spans.scope.name,
                                "received_ms": export.received_ms,
                            }
                        )
        return found

    def metrics(self) -> dict[str, Any]:
        """The latest data points of each metric: counters' values, histograms' (count, sum)."""
        latest: dict[str, Any] = {}
        with self.changed:
            exports = [e for e in self.exports if e.path == "/v1/metrics"]
        for export in exports:
            for resource_metrics in export.message.resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        if metric.HasField("sum"):
                            latest[metric.name] = sum(p.as_int for p in metric.sum.data_points)
                        elif metric.HasField("histogram"):
                            points = metric.histogram.data_points
                            latest[metric.name] = (
                                sum(p.count for p in points),
                                sum(p.sum for p in points),
                            )
        return latest

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10) -> Any:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                value = predicate()
                if value or time.monotonic() > deadline:
                    return value
                self.changed.wait(0.05)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()
    assert not server.errors, server.errors


@pytest.fixture
def silent_collector() -> Iterator[str]:
    """A collector that accepts connections (the kernel's backlog does) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


# -- a downstream HTTP service the handlers call ------------------------------------------------


class Downstream:
    """Answers every GET with 200 and records each request's ``traceparent`` header."""

    def __init__(self) -> None:
        self.traceparents: list[str | None] = []
        downstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                downstream.traceparents.append(self.headers.get("traceparent"))
                status = 404 if self.path.startswith("/missing") else 200
                body = b"downstream says hello"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hello"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def downstream() -> Iterator[Downstream]:
    server = Downstream()
    yield server
    server.close()


# -- functions under `ort bootstrap` ------------------------------------------------------------


def clean_environ(**extra: str) -> dict[str, str]:
    """os.environ without Lambda's, ORT's and OpenTelemetry's variables, plus ``extra``."""
    skipped = ("AWS_", "ORT_", "OTEL_", "_HANDLER", "LAMBDA_", "_X_AMZN", "TRACEPARENT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skipped)}
    env.update(extra)
    return env


class Runtime:
    def __init__(self, process: subprocess.Popen, peer: Peer, log: Path) -> None:
        self.process = process
        self.peer = peer
        self.log_path = log

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait until the runtime asks for its first event: init is over."""
        self.peer.wait_for_next(timeout)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


# A pass-through executable middleware (docs/middlewares.md): empty output keeps the payload.
PASS_THROUGH = f"#!{PYTHON}\nimport sys\n\nsys.stdin.buffer.read()\n"


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    """``start(files, deadline_ms=None, **env)``: the function in a fresh folder under
    ``ort bootstrap`` with its own Runtime API peer; a middleware named ``pass`` is
    available (``SLSMIDDLEWARES=pass``)."""
    started: list[tuple[subprocess.Popen, Peer]] = []
    middlewares = tmp_path / "middlewares"
    middlewares.mkdir()
    (middlewares / "pass").write_text(PASS_THROUGH)
    (middlewares / "pass").chmod(0o755)

    def run(files: dict[str, str], deadline_ms: int | None = None, **env: str) -> Runtime:
        folder = tmp_path / f"function-{len(started)}"
        folder.mkdir()
        for name, source in files.items():
            (folder / name).write_text(textwrap.dedent(source).lstrip())
        peer = start_peer(deadline_ms)  # one per runtime: a killed one's /next must not steal
        log = tmp_path / f"runtime-{len(started)}.log"
        environ = clean_environ(
            AWS_LAMBDA_RUNTIME_API=peer.address,
            LAMBDA_TASK_ROOT=str(folder),
            AWS_LAMBDA_FUNCTION_NAME="traced",
            AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256",
            AWS_LAMBDA_LOG_STREAM_NAME="2026/11/22/[$LATEST]0123456789abcdef",
            AWS_REGION="eu-west-1",
            ORT_MIDDLEWARE_DIR=str(middlewares),
            **{
                "OTEL_METRIC_EXPORT_INTERVAL": "0",  # metrics with every flush, to assert on
                "ORT_SIGNATURE": "raw",
                **env,
            },
        )
        process = subprocess.Popen(
            [PYTHON, "-m", "ort_core", "bootstrap"],
            env=environ,
            stdout=open(log, "wb"),
            stderr=subprocess.STDOUT,
        )
        started.append((process, peer))
        return Runtime(process, peer, log)

    yield run
    for process, peer in started:
        process.kill()
        process.wait()
        peer.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "preloads: needs a worker preload (plugins/ort_apm/ort_apm/preload/) and a worker "
        "that honours ORT_PRELOAD and sends spans back",
    )
