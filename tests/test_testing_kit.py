"""ORT's testing kit (``ort_core.testing``, loaded by pytest through ort-core's ``pytest11``
entry point) and the public plugin API it hands plugin authors."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest
from conftest import PYTHON, clean_environ
from test_plugins import install

from ort_core.plugin import EarlyResponse, FunctionError, hookimpl

APP = {
    "kit_app.py": """
        def handler(event, context):
            if hasattr(event, "get_data"):  # a CloudEvent: the cloudevents SDK's object
                event = {"type": event.get_type(), "id": event.get_id(), "data": event.get_data()}
            if isinstance(event, dict) and event.get("fail"):
                raise LookupError("order 7 not found")
            return {"event": event, "id": context.aws_request_id}
    """
}


def plugin_module(name: str, **hooks: object) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return module


def test_the_named_plugins_see_the_event_and_the_response(ort_function) -> None:
    def before_event(event):
        if event.get("ping"):
            return EarlyResponse({"pong": True})
        return {**event, "tagged": True}

    def after_response(response):
        return {**response, "wrapped": True}

    tagger = plugin_module("tagger", before_event=before_event, after_response=after_response)
    function = ort_function(APP, handler="kit_app.handler", plugins=["ort-python", tagger])

    answer = function.invoke({"order": 7}, request_id="req-1")
    early = function.invoke({"ping": True}, request_id="req-2")

    assert answer.body == (
        b'{"event": {"order": 7, "tagged": true}, "id": "req-1", "wrapped": true}'
    )
    [before] = answer.seen("tagger", "before_event")
    assert before.arguments["event"] == {"order": 7}  # as the plugin received it
    assert before.result == {"order": 7, "tagged": True}
    [after] = answer.seen("tagger", "after_response")
    assert after.arguments["response"] == {"event": {"order": 7, "tagged": True}, "id": "req-1"}
    assert early.json() == {"pong": True, "wrapped": True}
    assert [(call.plugin, call.hook) for call in function.init_calls] == [
        ("python", "launch_language")
    ]


def test_errors_are_lambdas_json_and_a_failing_plugin_is_named(ort_function) -> None:
    def before_event(event):
        if event.get("break"):
            raise RuntimeError("plugin broke")

    fragile = plugin_module("fragile", before_event=before_event)
    function = ort_function(APP, handler="kit_app.handler", plugins=["ort-python", fragile])

    handler_error = function.invoke({"fail": True}, request_id="req-3").error_json
    plugin_error = function.invoke({"break": True}, request_id="req-4").error_json
    not_json = function.invoke(b"{not json", request_id="req-5").error_json

    assert handler_error is not None and plugin_error is not None and not_json is not None
    assert handler_error["errorType"] == "LookupError"
    assert handler_error["errorMessage"] == "order 7 not found"
    assert handler_error["requestId"] == "req-3"
    assert any("kit_app.py" in frame for frame in handler_error["stackTrace"])
    assert plugin_error["errorType"] == "Runtime.PluginError"
    assert plugin_error["errorMessage"] == (
        "plugin 'fragile' failed in before_event: RuntimeError: plugin broke"
    )
    assert not_json["errorType"] == "Runtime.UnmarshalError"


def test_cloudevents_and_http_requests(ort_function) -> None:
    function = ort_function(APP, handler="kit_app.handler", plugins=["ort-python"])

    event = function.cloudevent({"order": 7}, type="com.example.order", id="ce-1")
    response = function.http("POST", "/orders", query={"v": "2"}, json_body={"order": 7})

    handled = event.json()["event"]
    assert (handled["type"], handled["id"], handled["data"]) == (
        "com.example.order",
        "ce-1",
        {"order": 7},
    )
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    request = response.json()["event"]  # the gateway's (Scaleway's) event
    assert (request["httpMethod"], request["path"]) == ("POST", "/orders")
    assert request["queryStringParameters"] == {"v": "2"}
    assert request["body"] == '{"order": 7}'


def test_installed_plugins_that_are_not_named_never_load(
    ort_function, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    install(site, "ort-kit-bomb", "bomb", "ort_kit_bomb", "raise SystemExit('imported')\n")
    monkeypatch.syspath_prepend(str(site))

    function = ort_function(APP, handler="kit_app.handler", plugins=["ort-python"])

    assert function.invoke({}).json()["event"] == {}
    assert "ort_kit_bomb" not in sys.modules


def test_an_init_error_raises_with_lambdas_type(ort_function) -> None:
    with pytest.raises(FunctionError) as raised:
        ort_function({}, handler="nowhere.handler", plugins=["ort-python"], language="python")

    assert raised.value.error_type == "Runtime.ImportModuleError"


def test_the_emulator_fixture_serves_lambdas_invoke_endpoint(ort_emulator) -> None:
    function = ort_emulator(APP, handler="kit_app.handler", plugins=["ort-python"])

    answered = function.invoke({"order": 7})
    failed = function.invoke({"fail": True})

    assert answered.status == 200 and not answered.failed
    assert answered.json()["event"] == {"order": 7}
    assert failed.failed
    assert failed.json()["errorType"] == "LookupError"
    assert len(function.report_lines()) == 2


def test_loading_the_kit_and_the_public_api_imports_nothing_else_of_ort() -> None:
    probe = (
        "import sys, ort_core.testing, ort_core.plugin\n"
        "print(sorted(m for m in sys.modules if m.startswith('ort_core')))\n"
        "from ort_core.plugin import WorkerBridge, WorkerSpec, Bridge, hookimpl\n"
        "import ort_core\n"
        "same = [getattr(ort_core, n) is getattr(ort_core.plugin, n) for n in ort_core.__all__]\n"
        "assert all(same)\n"
        "print(sorted(ort_core.plugin.__all__))\n"
    )
    result = subprocess.run(
        [PYTHON, "-c", probe], env=clean_environ(), capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    loaded, exported = result.stdout.splitlines()
    assert loaded == "['ort_core', 'ort_core.plugin', 'ort_core.testing']"
    assert exported == (
        "['Bridge', 'Context', 'EarlyResponse', 'FunctionConfig', 'FunctionError', "
        "'WorkerBridge', 'WorkerSpec', 'hookimpl']"
    )
