"""ort-ruby: Ruby handlers under ORT, tested with ORT's testing kit as any plugin author would.

``ort_emulator`` runs ``ort emulate``'s embedded Lambda with ORT's bootstrap as the runtime
and only this plugin loaded; ``ort_function`` runs the pipeline in the test's process.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PLUGINS = ["ort-ruby"]
HANDLER = {
    "handler.rb": """
        module Orders
          class OrderError < StandardError; end
        end

        def handler(event:, context:)
          puts "looking up order #{event['order']}"
          raise Orders::OrderError, "order #{event['order']} not found" if event["missing"]
          sleep(event["sleep"]) if event["sleep"]
          { "order" => event["order"], "pid" => Process.pid }
        end
    """
}


def test_a_ruby_handler_answers_under_the_emulator(ort_emulator) -> None:
    function = ort_emulator(HANDLER, handler="handler.handler", plugins=PLUGINS)

    response = function.invoke({"order": 7})

    assert response.status == 200
    assert not response.failed
    assert response.json() == {"order": 7, "pid": response.json()["pid"]}
    assert len(function.report_lines()) == 1


def test_a_raised_exception_is_lambdas_error_json(ort_emulator) -> None:
    function = ort_emulator(HANDLER, handler="handler.handler", plugins=PLUGINS)

    response = function.invoke({"order": 7, "missing": True})

    assert response.status == 200
    assert response.failed  # X-Amz-Function-Error: Unhandled
    error = response.json()
    assert error["errorType"] == "Orders::OrderError"
    assert error["errorMessage"] == "order 7 not found"
    assert error["requestId"]
    assert error["stackTrace"]
    assert all("handler.rb" in frame for frame in error["stackTrace"])  # no worker frames
    assert "handler.rb:7:in " in error["stackTrace"][0]  # the line that raised


def test_a_timeout_kills_the_worker_and_the_next_event_gets_a_fresh_one(ort_emulator) -> None:
    function = ort_emulator(HANDLER, handler="handler.handler", plugins=PLUGINS, timeout=1)
    first_pid = function.invoke({"order": 1}).json()["pid"]

    timed_out = function.invoke({"order": 2, "sleep": 30})
    after = function.invoke({"order": 3})

    assert timed_out.failed
    assert timed_out.json()["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after" in timed_out.json()["errorMessage"]
    assert after.status == 200 and not after.failed
    assert after.json()["order"] == 3
    assert after.json()["pid"] != first_pid  # the sleeping worker was killed, not reused


def test_the_context_has_lambdas_ruby_fields(ort_function) -> None:
    function = ort_function(
        {
            "ctx.rb": """
                def handler(event:, context:)
                  {
                    "id" => context.aws_request_id,
                    "left" => context.get_remaining_time_in_millis,
                    "deadline" => context.deadline_ms,
                    "name" => context.function_name,
                    "arn" => context.invoked_function_arn,
                    "memory" => context.memory_limit_in_mb,
                    "version" => context.function_version,
                    "group" => context.log_group_name,
                  }
                end
            """
        },
        handler="ctx.handler",
        plugins=PLUGINS,
        timeout=20,
        env={"AWS_LAMBDA_FUNCTION_NAME": "orders"},
    )

    invocation = function.invoke({}, request_id="req-ctx")
    answer = invocation.json()

    assert answer["id"] == "req-ctx"
    assert 0 < answer["left"] <= 20_000
    assert answer["deadline"] == invocation.context.deadline_ms
    assert answer["name"] == "orders"
    assert answer["arn"] == "arn:aws:lambda:us-east-1:012345678912:function:orders"
    assert (answer["memory"], answer["version"]) == ("128", "$LATEST")
    assert answer["group"] == "/aws/lambda/orders"


def test_class_method_handlers_in_subfolders_and_cloudevents(ort_function) -> None:
    function = ort_function(
        {
            "lib/orders.rb": """
                module Orders
                  class Api
                    def self.create(event:, context:)
                      { "type" => event["type"], "data" => event["data"],
                        "encoding" => event["data"].encoding.to_s }
                    end
                  end
                end
            """
        },
        handler="lib/orders.Orders::Api.create",
        plugins=PLUGINS,
    )

    answer = function.cloudevent(b"raw bytes", type="com.example.order").json()

    assert answer == {"type": "com.example.order", "data": "raw bytes", "encoding": "ASCII-8BIT"}


@pytest.mark.parametrize(
    ("files", "handler", "error_type", "message"),
    [
        ({}, "handler.handler", "Runtime.ImportModuleError", "Cannot load handler.rb"),
        ({"handler.rb": "x = 1\n"}, "handler.nope", "Runtime.HandlerNotFound", "no method nope"),
        ({"handler.rb": "def handler(\n"}, "handler.handler", "Runtime.UserCodeSyntaxError", ""),
        ({"handler.rb": "raise 'no cfg'\n"}, "handler.x", "Runtime.ImportModuleError", "no cfg"),
        ({"handler.rb": "x = 1\n"}, "handler", "Runtime.MalformedHandlerName", "Bad handler"),
        ({}, "../up.handler", "Runtime.MalformedHandlerName", "not allowed"),
    ],
    ids=["missing-file", "missing-method", "syntax-error", "raising-file", "malformed", "dotdot"],
)
def test_init_errors_have_lambdas_types(
    ort_function, files: dict[str, str], handler: str, error_type: str, message: str
) -> None:
    from ort_core.plugin import FunctionError

    with pytest.raises(FunctionError) as raised:
        ort_function(files, handler=handler, plugins=PLUGINS, language="ruby")

    assert raised.value.error_type == error_type
    assert message in raised.value.message


def test_exit_in_a_handler_fails_that_event_only(ort_function) -> None:
    function = ort_function(
        {"bye.rb": "def handler(event:, context:)\n  exit(3) if event['bye']\n  'here'\nend\n"},
        handler="bye.handler",
        plugins=PLUGINS,
    )

    gone = function.invoke({"bye": True})
    back = function.invoke({})

    assert gone.error_json["errorType"] == "SystemExit"
    assert back.json() == "here"


def test_the_plugin_imports_only_ort_public_api() -> None:
    source = Path(__file__).parent.parent / "ort_ruby"
    imported = set()
    for path in source.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
    assert {name for name in imported if name.startswith("ort_core")} == {"ort_core.plugin"}
