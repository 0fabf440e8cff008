"""`ort bootstrap` against an independent Runtime API (tests/runtime_api_peer.py)."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import PYTHON, clean_environ
from runtime_api_peer import ARN, start_peer

APP = """
import json, os, time

def handler(event, context):
    action = event.get("action") if isinstance(event, dict) else None
    if action == "raise":
        raise ValueError("boom")
    if action == "set":
        return {1, 2}
    if action == "sleep":
        time.sleep(event["seconds"])
    if action == "big":
        return "x" * event["size"]
    if action == "log":
        import logging
        logging.getLogger("app").warning("careful")
        print("printed by the handler")
    return {
        "event": event,
        "request_id": context.aws_request_id,
        "arn": context.invoked_function_arn,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "function_name": context.function_name,
        "memory": context.memory_limit_in_mb,
        "version": context.function_version,
        "log_group": context.log_group_name,
        "trace_env": os.environ.get("_X_AMZN_TRACE_ID"),
        "custom": context.client_context.custom if context.client_context else None,
        "app_title": context.client_context.client.app_title if context.client_context else None,
        "cognito_id": context.identity.cognito_identity_id,
        "tenant_id": context.tenant_id,
    }
"""


@pytest.fixture
def start_runtime(function_dir, tmp_path):
    processes: list[subprocess.Popen] = []

    def start(
        address: str,
        handler: str = "app.handler",
        source: str = APP,
        command: tuple[str, ...] = (PYTHON, "-m", "ort_core", "bootstrap"),
        **env: str,
    ):
        folder = function_dir({"app.py": source})
        process = subprocess.Popen(
            list(command),
            env=clean_environ(
                AWS_LAMBDA_RUNTIME_API=address,
                _HANDLER=handler,
                LAMBDA_TASK_ROOT=str(folder),
                AWS_LAMBDA_FUNCTION_NAME="peer-fn",
                AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256",
                AWS_LAMBDA_FUNCTION_VERSION="7",
                AWS_LAMBDA_LOG_GROUP_NAME="/aws/lambda/peer-fn",
                **env,
            ),
            stdout=open(tmp_path / "runtime.log", "wb"),
            stderr=subprocess.STDOUT,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.kill()
        process.wait()
        process.stdout and process.stdout.close()


def runtime_log(tmp_path) -> str:
    return (tmp_path / "runtime.log").read_text()


def test_answers_with_the_context_lambda_sends(peer, start_runtime):
    start_runtime(peer.address)
    client_context = {"custom": {"tenant": "a"}, "client": {"app_title": "demo"}}
    result = peer.invoke(
        {"hello": "world"},
        {
            "Lambda-Runtime-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
            "Lambda-Runtime-Client-Context": json.dumps(client_context),
            "Lambda-Runtime-Cognito-Identity": json.dumps(
                {"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"}
            ),
            "Lambda-Runtime-Aws-Tenant-Id": "tenant-42",
        },
    )
    assert result.kind == "response"
    answer = result.json()
    assert answer["event"] == {"hello": "world"}
    assert answer["arn"] == ARN
    assert 0 < answer["remaining_ms"] <= 60_000
    assert (answer["function_name"], answer["memory"], answer["version"]) == ("peer-fn", "256", "7")
    assert answer["log_group"] == "/aws/lambda/peer-fn"
    assert answer["trace_env"] == "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
    assert (answer["custom"], answer["app_title"]) == ({"tenant": "a"}, "demo")
    assert (answer["cognito_id"], answer["tenant_id"]) == ("id-1", "tenant-42")

    # The next invocation carries no trace id: the variable must not leak from the last one.
    assert peer.invoke({}).json()["trace_env"] is None


def test_the_bootstrap_executable_serves_lambda(peer, start_runtime):
    """bin/bootstrap is what Lambda runs from /var/task or /opt."""
    bootstrap = str(Path(__file__).resolve().parent.parent / "bin" / "bootstrap")
    start_runtime(peer.address, command=(bootstrap,), ORT_PYTHON=PYTHON)
    assert peer.invoke({"via": "bin/bootstrap"}).json()["event"] == {"via": "bin/bootstrap"}


def test_a_thousand_sequential_invocations_without_an_error(peer, start_runtime):
    start_runtime(peer.address)
    for number in range(1000):
        result = peer.invoke({"n": number})
        assert result.kind == "response", result.body
        assert result.json()["event"] == {"n": number}


@pytest.mark.parametrize(
    ("body", "error_type", "message"),
    [
        ({"action": "raise"}, "ValueError", "boom"),
        (b"{not json", "Runtime.UnmarshalError", "Unable to unmarshal input"),
        ({"action": "set"}, "Runtime.MarshalError", "Unable to marshal response"),
    ],
)
def test_failed_invocations_post_lambdas_error_shape_and_the_loop_goes_on(
    peer, start_runtime, body, error_type, message
):
    start_runtime(peer.address)
    result = peer.invoke(body)
    assert result.kind == "error"
    assert result.headers["Lambda-Runtime-Function-Error-Type"] == error_type
    error = result.json()
    assert set(error) == {"errorMessage", "errorType", "requestId", "stackTrace"}
    assert error["errorType"] == error_type
    assert message in error["errorMessage"]
    assert error["requestId"]
    if error_type == "ValueError":
        assert any("app.py" in line and "handler" in line for line in error["stackTrace"])
        assert not any("ort_core" in line for line in error["stackTrace"])
    assert peer.invoke({"after": "failure"}).kind == "response"


@pytest.mark.parametrize(
    ("handler", "source", "error_type", "message"),
    [
        ("missing.handler", APP, "Runtime.ImportModuleError", "Unable to import module 'missing'"),
        ("app.nope", APP, "Runtime.HandlerNotFound", "Handler 'nope' missing on module 'app'"),
        ("app.handler", "raise RuntimeError('no config')\n", "RuntimeError", "no config"),
        ("app.handler", "def handler(:\n", "Runtime.UserCodeSyntaxError", "Syntax error"),
    ],
)
def test_init_errors_reach_init_error_and_the_process_exits_non_zero(
    peer, start_runtime, handler, source, error_type, message
):
    process = start_runtime(peer.address, handler=handler, source=source)
    assert process.wait(timeout=30) == 1
    [init_error] = peer.init_errors
    assert init_error.headers["Lambda-Runtime-Function-Error-Type"] == error_type
    assert init_error.json()["errorType"] == error_type
    assert message in init_error.json()["errorMessage"]


def test_a_broken_plugin_fails_init_with_its_name(peer, start_runtime):
    process = start_runtime(peer.address, ORT_PLUGIN_MODULES="no_such_plugin_module")
    assert process.wait(timeout=30) == 1
    [init_error] = peer.init_errors
    assert init_error.json()["errorType"] == "Runtime.PluginError"
    assert "no_such_plugin_module" in init_error.json()["errorMessage"]


def test_a_refusing_runtime_api_gets_bounded_retries_then_a_clear_exit(start_runtime, tmp_path):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{unused.getsockname()[1]}"
    started = time.monotonic()
    process = start_runtime(address)
    assert process.wait(timeout=30) == 1
    assert time.monotonic() - started < 20
    log = runtime_log(tmp_path)
    assert f"cannot reach the Lambda Runtime API at {address} after 10 attempts" in log


def test_an_unexpected_status_is_logged_with_the_request_id(peer, start_runtime, tmp_path):
    start_runtime(peer.address)
    peer.refuse_responses_with = 500
    peer.events.put(("req-refused", b"{}", {}))
    expected = "Runtime API refused the response of request req-refused: HTTP 500"
    deadline = time.monotonic() + 10
    while expected not in runtime_log(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert expected in runtime_log(tmp_path)
    peer.refuse_responses_with = None
    assert peer.invoke({}).kind == "response"


def test_a_response_over_the_limit_becomes_a_function_error(peer, start_runtime):
    start_runtime(peer.address)
    peer.refuse_responses_with = 413
    result = peer.invoke({"action": "big", "size": 7_000_000})
    assert result.kind == "error"
    assert result.json()["errorType"] == "Function.ResponseSizeTooLarge"
    peer.refuse_responses_with = None
    assert peer.invoke({}).kind == "response"


def test_logging_lines_carry_the_request_id(peer, start_runtime, tmp_path):
    start_runtime(peer.address)
    request_id = peer.invoke({"action": "log"}).json()["request_id"]
    lines = runtime_log(tmp_path).splitlines()  # read while the runtime still runs
    assert "printed by the handler" in lines
    line = next(line for line in lines if "careful" in line)
    level, timestamp, logged_id, message = line.split("\t")
    assert (level, logged_id, message) == ("[WARNING]", request_id, "careful")
    assert timestamp.endswith("Z")


def test_json_log_format(peer, start_runtime, tmp_path):
    start_runtime(peer.address, AWS_LAMBDA_LOG_FORMAT="JSON")
    request_id = peer.invoke({"action": "log"}).json()["request_id"]
    line = next(line for line in runtime_log(tmp_path).splitlines() if "careful" in line)
    record = json.loads(line)
    assert record["level"] == "WARNING"
    assert record["message"] == "careful"
    assert record["requestId"] == request_id
    assert record["logger"] == "app"


def test_a_handler_past_its_deadline_gets_a_timeout_error_before_the_platform_cuts(
    function_dir, start_runtime, tmp_path
):
    hook = function_dir(
        {
            "timeout_plugin.py": """
            import sys
            from ort_core import hookimpl

            @hookimpl
            def on_timeout(event, context):
                print("on_timeout fired for", context.aws_request_id, file=sys.stderr)
            """
        }
    )
    peer = start_peer(deadline_ms=500)
    try:
        process = start_runtime(
            peer.address, ORT_PLUGIN_MODULES="timeout_plugin", PYTHONPATH=str(hook)
        )
        started = time.monotonic()
        result = peer.invoke({"action": "sleep", "seconds": 30})
        assert time.monotonic() - started < 5
        assert result.kind == "error"
        error = result.json()
        assert error["errorType"] == "Sandbox.Timedout"
        assert "Task timed out after" in error["errorMessage"]
        assert process.wait(timeout=10) == 1  # the sandbox is reset, as Lambda does
        assert f"on_timeout fired for {error['requestId']}" in runtime_log(tmp_path)
    finally:
        peer.close()


def test_client_context_that_is_not_json_is_an_invocation_error(peer, start_runtime):
    start_runtime(peer.address)
    result = peer.invoke({}, {"Lambda-Runtime-Client-Context": base64.b64encode(b"x").decode()})
    assert result.kind == "error"
    assert result.json()["errorType"] == "Runtime.LambdaContextUnmarshalError"
    assert peer.invoke({}).kind == "response"


ANSWER_PLUGIN = """
import json, os, time
from ort_core import hookimpl

LOG = os.environ["HOOK_LOG"]

def record(**entry):
    with open(LOG, "a") as log:
        log.write(json.dumps(entry) + "\\n")

@hookimpl
def after_answer(context):
    time.sleep(0.05)  # the next /next waits for this, the answer does not
    record(hook="after_answer", request_id=context.aws_request_id, ms=time.time() * 1000)

@hookimpl
def on_shutdown():
    record(hook="on_shutdown", ms=time.time() * 1000)
"""


def test_after_answer_runs_after_the_answer_is_posted_and_before_the_next_event(
    peer, start_runtime, function_dir, tmp_path
):
    plugin = function_dir({"answer_plugin.py": ANSWER_PLUGIN})
    hook_log = tmp_path / "hooks.ndjson"
    process = start_runtime(
        peer.address,
        ORT_PLUGIN_MODULES="answer_plugin",
        PYTHONPATH=str(plugin),
        HOOK_LOG=str(hook_log),
    )
    results = [peer.invoke({}), peer.invoke({"action": "raise"})]
    next_ms = [peer.next_request_after(result.received_ms) for result in results]
    process.terminate()
    assert process.wait(10) == 0

    entries = [json.loads(line) for line in hook_log.read_text().splitlines()]
    assert [entry["hook"] for entry in entries] == ["after_answer", "after_answer", "on_shutdown"]
    assert [result.kind for result in results] == ["response", "error"]
    assert entries[0]["request_id"] == results[0].json()["request_id"]
    assert entries[1]["request_id"] not in ("", entries[0]["request_id"])
    for result, entry, asked_ms in zip(results, entries, next_ms, strict=False):
        assert result.received_ms < entry["ms"] <= asked_ms  # answer, then hook, then /next
