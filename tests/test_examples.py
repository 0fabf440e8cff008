"""Every example in examples/ answers through `ort invoke` and through `ort emulate`."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from conftest import PYTHON, clean_environ

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# folder, handler, language, extra environment
CASES = {
    "python in-process": ("hello", "app.handler", "python", {}),
    "python subprocess": ("hello", "app.handler", "python", {"ORT_PYTHON_MODE": "subprocess"}),
    "node commonjs": ("hello-node", "index.handler", "node", {}),
    "node esm": ("hello-node-esm", "index.handler", "node", {}),
    "deno persistent": ("hello-deno", "hello.handler", "deno", {"ORT_DENO_MODE": "persistent"}),
    "deno per-invocation": (
        "hello-deno",
        "hello.handler",
        "deno",
        {"ORT_DENO_MODE": "per-invocation"},
    ),
    "bash": ("hello-bash", "handler.sh", "executable", {}),
    "php": ("hello-php", "handler.php", "php", {}),
    "scaleway sub-runtime": (
        "hello-scaleway",
        "handler.handle",
        "scaleway",
        {
            "SCW_RUNTIME_BINARY": "node",
            "SCW_RUNTIME_BRIDGE": str(EXAMPLES / "hello-scaleway" / "server.js"),
        },
    ),
}


def greeting(answer: object) -> str:
    """The greeting, wherever the example puts it (Scaleway's answer is an HTTP response)."""
    if isinstance(answer, dict) and "statusCode" in answer:
        body = answer["body"]
        answer = json.loads(body) if isinstance(body, str) else body
    assert isinstance(answer, dict), answer
    return answer["message"]


@pytest.mark.parametrize("case", CASES)
def test_example_through_ort_invoke(case, tmp_path):
    folder, handler, language, env = CASES[case]
    extra = {"SCW_UPSTREAM_PORT": str(free_port())} if language == "scaleway" else {}
    result = subprocess.run(
        [
            PYTHON,
            "-m",
            "ort_core",
            "invoke",
            "--handler",
            handler,
            "--language",
            language,
            "--event",
            "event.json",
        ],
        cwd=EXAMPLES / folder,
        env=clean_environ(ORT_SIGNATURE="", **env, **extra),  # ORT's default: CloudEvents
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert greeting(json.loads(result.stdout)) == "Hello, ORT!"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("case", CASES)
def test_example_through_ort_emulate(case, tmp_path):
    folder, handler, language, env = CASES[case]
    port = free_port()
    extra = {"SCW_UPSTREAM_PORT": str(free_port())} if language == "scaleway" else {}
    emulator = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "ort_core",
            "emulate",
            "--port",
            str(port),
            "--handler",
            handler,
            "--language",
            language,
        ],
        cwd=EXAMPLES / folder,
        env=clean_environ(ORT_SIGNATURE="", **env, **extra),  # ORT's default: CloudEvents
        stdout=(tmp_path / "emulator.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/2015-03-31/functions/function/invocations"
    try:
        event = (EXAMPLES / folder / "event.json").read_bytes()
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.post(url, content=event, timeout=30)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, (tmp_path / "emulator.log").read_text()
                time.sleep(0.1)
        assert response.status_code == 200
        assert "X-Amz-Function-Error" not in response.headers, response.text
        assert greeting(response.json()) == "Hello, ORT!"
        assert "REPORT RequestId:" in (tmp_path / "emulator.log").read_text()
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)


def test_the_http_example_answers_through_ort_serve(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [PYTHON, "-m", "ort_core", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=EXAMPLES / "hello-http",
        env=clean_environ(
            _HANDLER="handler.handle", SCW_PUBLIC="true", SCW_APPLICATION_NAME="hello-http"
        ),
        stdout=open(tmp_path / "serve.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/hello?name=ORT", timeout=10)
                break
            except httpx.TransportError:
                assert server.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline, "ort serve did not listen within 30 s"
                time.sleep(0.1)
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert response.text == "Hello, ORT! (GET /hello, hello-http)"
    finally:
        server.terminate()
        assert server.wait(timeout=10) == 0
