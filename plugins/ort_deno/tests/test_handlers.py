"""Deno handlers through ORT's entry point, in both modes: answers, errors, big payloads.

Each test runs once per mode (``persistent`` and ``per-invocation``) on real Deno
processes; what is asserted is what a function's caller sees: response bytes or Lambda's
error.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Function


def test_typescript_handler_answers_exact_json(function: Function) -> None:
    function.write(
        "hello.ts",
        """
        interface Event { name: string; tags?: string[] }
        interface Answer { message: string; count: number; tags: string[] }
        export function handler(event: Event): Answer {
          const tags: string[] = event.tags ?? [];
          return { message: `Hello, ${event.name}!`, count: tags.length, tags };
        }
        """,
    )
    pipeline = function.start("hello.handler")

    answer = function.invoke(pipeline, {"name": "ORT", "tags": ["a", "é"]})

    assert answer == '{"message":"Hello, ORT!","count":2,"tags":["a","é"]}'.encode()


def test_handler_is_claimed_without_a_language_when_it_is_typescript(function: Function) -> None:
    function.write("app.mts", "export const handler = (event: unknown) => ({ event });\n")
    pipeline = function.start("app.handler", language=None)

    assert function.invoke(pipeline, [1, None]) == b'{"event":[1,null]}'


def test_async_handler(function: Function) -> None:
    function.write(
        "slow.ts",
        """
        const wait = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
        export const handler = async (event: { n: number }): Promise<{ doubled: number }> => {
          await wait(20);
          return { doubled: event.n * 2 };
        };
        """,
    )
    pipeline = function.start("slow.handler")

    assert json.loads(function.invoke(pipeline, {"n": 21})) == {"doubled": 42}


def test_callback_handler_and_undefined_answer(function: Function) -> None:
    function.write(
        "cb.ts",
        """
        export const viaCallback = (event: unknown, context: unknown, callback: Function) => {
          setTimeout(() => callback(null, { called: true }), 5);
        };
        export const nothing = (): void => {};
        """,
    )
    assert function.invoke(function.start("cb.viaCallback"), {}) == b'{"called":true}'
    assert function.invoke(function.start("cb.nothing"), {}) == b"null"


def test_handler_in_a_directory_with_a_nested_export(function: Function) -> None:
    function.write(
        "src/api/routes.ts",
        """
        export const users = { list: (event: { page: number }) => ({ page: event.page }) };
        """,
    )
    pipeline = function.start("src/api/routes.users.list")

    assert function.invoke(pipeline, {"page": 3}) == b'{"page":3}'


def test_context_fields_reach_the_handler(function: Function) -> None:
    function.write(
        "ctx.ts",
        """
        interface Context {
          awsRequestId: string;
          functionName: string;
          functionVersion: string;
          memoryLimitInMB: string;
          getRemainingTimeInMillis(): number;
        }
        export const handler = (event: unknown, context: Context) => ({
          id: context.awsRequestId,
          name: context.functionName,
          version: context.functionVersion,
          memory: context.memoryLimitInMB,
          remaining: context.getRemainingTimeInMillis(),
        });
        """,
    )
    pipeline = function.start("ctx.handler")

    answer = json.loads(function.invoke(pipeline, {}, request_id="req-ctx-7", timeout=30))

    assert answer["id"] == "req-ctx-7"
    assert (answer["name"], answer["version"], answer["memory"]) == ("fn", "$LATEST", "128")
    assert 20_000 < answer["remaining"] <= 30_000


def test_thrown_error_is_a_function_error_with_its_class(function: Function) -> None:
    function.write(
        "boom.ts",
        """
        class PaymentDeclined extends Error {}
        function charge(amount: number): never {
          throw new PaymentDeclined(`card declined for ${amount}`);
        }
        export const handler = (event: { amount: number }) => charge(event.amount);
        export const typeError = () => (null as unknown as { x: () => void }).x();
        """,
    )
    pipeline = function.start("boom.handler")

    error = function.invoke_error(pipeline, {"amount": 12})

    assert error.error_type == "PaymentDeclined"
    assert error.message == "card declined for 12"
    assert any("boom.ts" in frame and "charge" in frame for frame in error.stack_trace)
    assert not any("ort_deno" in frame for frame in error.stack_trace)

    assert function.invoke_error(function.start("boom.typeError"), {}).error_type == "TypeError"


def test_the_function_goes_on_after_a_handler_error(function: Function) -> None:
    function.write(
        "flaky.ts",
        """
        export const handler = (event: { fail: boolean }) => {
          if (event.fail) throw new RangeError("asked to fail");
          return "fine";
        };
        """,
    )
    pipeline = function.start("flaky.handler")

    assert function.invoke_error(pipeline, {"fail": True}).error_type == "RangeError"
    assert function.invoke(pipeline, {"fail": False}) == b'"fine"'


def test_missing_module_is_an_import_module_error(function: Function) -> None:
    error = function.start_error("nothere.handler")

    assert error.error_type == "Runtime.ImportModuleError"
    assert "nothere" in error.message


def test_missing_import_inside_the_module_is_an_import_module_error(function: Function) -> None:
    function.write("imports.ts", 'import "./gone.ts";\nexport const handler = () => 1;\n')

    error = function.start_error("imports.handler")

    assert error.error_type == "Runtime.ImportModuleError"
    assert "gone.ts" in error.message


def test_missing_export_is_handler_not_found(function: Function) -> None:
    function.write("app.ts", "export const other = () => 1;\nexport const notAFunction = 3;\n")

    for handler in ("app.handler", "app.notAFunction"):
        error = function.start_error(handler)
        assert error.error_type == "Runtime.HandlerNotFound"
        assert handler in error.message


def test_syntax_error_is_user_code_syntax_error(function: Function) -> None:
    function.write("broken.ts", "export const handler = (: number) => ;\n")

    error = function.start_error("broken.handler")

    assert error.error_type == "Runtime.UserCodeSyntaxError"


def test_dot_dot_in_the_handler_is_a_malformed_handler_name(function: Function) -> None:
    (function.root.parent / "outside.ts").write_text("export const handler = () => 1;\n")

    error = function.start_error("../outside.handler")

    assert error.error_type == "Runtime.MalformedHandlerName"


def test_error_thrown_at_import_is_an_init_error(function: Function) -> None:
    function.write("init.ts", 'throw new URIError("no config");\nexport const handler = 1;\n')

    error = function.start_error("init.handler")

    assert (error.error_type, error.message) == ("URIError", "no config")


def test_5_mb_event_and_5_mb_response_pass_byte_exact(function: Function) -> None:
    function.write(
        "echo.ts",
        """
        export const handler = (event: { data: string }) =>
          ({ length: event.data.length, echo: event.data });
        """,
    )
    pipeline = function.start("echo.handler")
    data = ('ORT é€ 😀 "quoted" \\ back\n' * 200_000)[: 5 * 1024 * 1024]
    event = json.dumps({"data": data}, ensure_ascii=False).encode()
    assert len(event) > 5 * 1024 * 1024

    started = time.monotonic()
    answer = function.invoke(pipeline, event)
    elapsed = time.monotonic() - started

    expected = json.dumps(
        {"length": len(data.encode("utf-16-le")) // 2, "echo": data},
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()
    assert answer == expected
    assert elapsed < 10


def test_stdout_noise_never_corrupts_the_answer(
    function: Function, caplog: pytest.LogCaptureFixture
) -> None:
    function.write(
        "noisy.ts",
        """
        const ready = new TextEncoder().encode('{"type":"ready"}');
        const frame = new Uint8Array([0, 0, 0, ready.length, ...ready, 0, 0, 0, 0]);
        export const handler = async () => {
          console.log('{"type": "result", "id": "req-1", "ok": true}');
          console.log("ort-result-00000000000000000000000000000000:" + '{"ok":true,"length":2}');
          console.log("x".repeat(1024 * 1024));
          Deno.stdout.writeSync(frame);
          await Deno.stdout.write(new TextEncoder().encode("no newline at the end"));
          console.error("to stderr");
          return { exact: true };
        };
        """,
    )
    pipeline = function.start("noisy.handler")

    with caplog.at_level(logging.INFO, logger="deno"):
        answer = function.invoke(pipeline, {})
        logged = wait_for_log(caplog, "to stderr")

    assert answer == b'{"exact":true}'
    pieces = [line for line in logged if line and not line.strip("x")]
    assert "".join(pieces) == "x" * 1024 * 1024  # whole, maybe in pieces of ORT's MAX_LINE
    assert "to stderr" in logged
    assert '{"type": "result", "id": "req-1", "ok": true}' in logged


def wait_for_log(caplog: pytest.LogCaptureFixture, *lines: str) -> list[str]:
    """The deno logger's lines once all of ``lines`` are among them (a worker's stdout and
    stderr are logged by two threads of their own, maybe after the answer)."""
    deadline = time.monotonic() + 5
    while True:
        logged = [record.getMessage() for record in caplog.records if record.name == "deno"]
        if all(line in logged for line in lines) or time.monotonic() > deadline:
            return logged
        time.sleep(0.01)


def test_deno_exit_mid_invocation_is_an_exit_error_then_the_function_goes_on(
    function: Function,
) -> None:
    function.write(
        "exits.ts",
        """
        export const handler = (event: { exit?: number }) => {
          if (event.exit !== undefined) Deno.exit(event.exit);
          return "alive";
        };
        """,
    )
    pipeline = function.start("exits.handler")

    error = function.invoke_error(pipeline, {"exit": 3})

    assert error.error_type == "Runtime.ExitError"
    assert "exit status 3" in error.message
    assert function.invoke(pipeline, {}) == b'"alive"'
