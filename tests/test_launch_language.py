"""launch_language: a third-party language plugin plugs in beside ort-python."""

from __future__ import annotations

import json
import time

import pytest

from ort_core import Context, FunctionConfig, FunctionError, hookimpl
from ort_core.startup import start_function


class EchoBridge:
    """A toy language: answers with the event and the handler's name."""

    language = "echo"

    def __init__(self, config: FunctionConfig) -> None:
        self.config = config
        self.started = 0

    def start(self) -> None:
        self.started += 1

    def invoke(self, event, context):
        return {"handler": self.config.handler, "event": event, "id": context.aws_request_id}

    def stop(self) -> None:
        pass


class EchoLanguage:
    def __init__(self) -> None:
        self.bridges: list[EchoBridge] = []

    @hookimpl
    def launch_language(self, config):
        if config.language != "echo":
            return None
        self.bridges.append(EchoBridge(config))
        return self.bridges[-1]


def invoke(pipeline, config, event):
    context = Context("req-1", int(time.time() * 1000) + 10_000, config)
    return json.loads(pipeline.invoke(json.dumps(event).encode(), context))


def test_the_plugin_for_the_chosen_language_runs_the_handler(tmp_path):
    config = FunctionConfig(handler="main.run", task_root=str(tmp_path), language="echo")
    echo = EchoLanguage()
    pipeline = start_function(config, {"ORT_PLUGINS": "ort-python"}, [echo])
    assert [bridge.started for bridge in echo.bridges] == [1]
    assert invoke(pipeline, config, {"a": 1}) == {
        "handler": "main.run",
        "event": {"a": 1},
        "id": "req-1",
    }


def test_a_language_nobody_claims_is_an_init_error(tmp_path):
    config = FunctionConfig(handler="main.run", task_root=str(tmp_path), language="cobol")
    with pytest.raises(FunctionError) as raised:
        start_function(config, {"ORT_PLUGINS": "ort-python"}, [EchoLanguage()])
    assert raised.value.error_type == "Runtime.ImportModuleError"
    assert "no plugin found handler 'main.run' for cobol" in raised.value.message


def test_the_first_bridge_returned_wins(tmp_path):
    (tmp_path / "app.py").write_text("def handler(event, context):\n    return 'python'\n")
    config = FunctionConfig(handler="app.handler", task_root=str(tmp_path))

    class Greedy:
        @hookimpl(tryfirst=True)
        def launch_language(self, config):
            return EchoBridge(config)

    pipeline = start_function(config, {"ORT_PLUGINS": "ort-python"}, [Greedy()])
    assert invoke(pipeline, config, {})["handler"] == "app.handler"
