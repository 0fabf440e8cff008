"""Executable handlers in any language: one process per invocation, as in Lambda's shell
custom-runtime tutorials, with the event on stdin and the answer on stdout.

``_HANDLER`` is a file under the task root (``handler.sh``, ``bin/handler``). When that file
does not exist, ``file.function`` runs ``file`` with ``function`` as its first argument
(``handler.sh.hello`` runs ``handler.sh hello``). Languages: ``executable`` (alias ``exec``)
runs the file itself (a shebang or a binary); ``php``, ``bash`` (alias ``shell``) and ``sh``
run it with that interpreter, so it needs neither a shebang nor the exec bit. With no
language set, a ``.php`` handler is claimed as ``php`` and any other file with the exec bit as
``executable``. docs/languages.md has the whole contract.

This module is imported at every cold start: it imports nothing that the first invocation of
another language would not.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ort_core.errors import FunctionError
from ort_core.plugins import hookimpl

if TYPE_CHECKING:
    from ort_core.config import FunctionConfig
    from ort_core.context import Context
    from ort_core.workers.oneshot import OneShot

EXECUTABLE = ("executable", "exec")
INTERPRETERS: dict[str, tuple[str, ...]] = {
    # PHP's errors and warnings go to stderr (once), never into the answer on stdout.
    "php": ("php", "-d", "display_errors=stderr", "-d", "log_errors=0"),
    "bash": ("bash",),
    "shell": ("bash",),
    "sh": ("sh",),
}
LOG_NAME = "executable"
# Per-invocation variables; any of them inherited from ORT's own environment is dropped.
CONTEXT_VARIABLES = (
    "ORT_REQUEST_ID",
    "AWS_REQUEST_ID",
    "ORT_DEADLINE_MS",
    "ORT_REMAINING_MS",
    "ORT_FUNCTION_ARN",
    "_X_AMZN_TRACE_ID",
)


@hookimpl
def launch_language(config: FunctionConfig) -> ExecutableBridge | None:
    language = config.language
    if language is None:
        found = find_handler(config)
        if found is None:
            return None
        path = found[0]
        if path.endswith(".php"):
            language = "php"
        elif os.access(path, os.X_OK):
            language = "executable"
        else:
            return None
    elif language not in EXECUTABLE and language not in INTERPRETERS:
        return None
    return ExecutableBridge(config, language)


def find_handler(config: FunctionConfig) -> tuple[str, list[str]] | None:
    """(the file to run, its arguments) for ``config.handler``, or None if no file matches.

    The handler names a file under the task root; when it does not, a ``.function`` suffix
    is split off and passed as the first argument: ``handler.sh.hello`` is ``handler.sh``
    with ``hello``.
    """
    whole = os.path.join(config.task_root, config.handler)
    if os.path.isfile(whole):
        return whole, []
    directory, _, name = config.handler.rpartition("/")
    stem, dot, function = name.rpartition(".")
    if dot and stem and function:
        path = os.path.join(config.task_root, directory, stem)
        if os.path.isfile(path):
            return path, [function]
    return None


def context_environ(context: Context) -> dict[str, str]:
    """The invocation's variables, beside the function's environment."""
    env = {"ORT_REQUEST_ID": context.aws_request_id, "AWS_REQUEST_ID": context.aws_request_id}
    if context.deadline_ms:
        env["ORT_DEADLINE_MS"] = str(context.deadline_ms)
        env["ORT_REMAINING_MS"] = str(context.get_remaining_time_in_millis())
    if context.invoked_function_arn:
        env["ORT_FUNCTION_ARN"] = context.invoked_function_arn
    if context.trace_id:
        env["_X_AMZN_TRACE_ID"] = context.trace_id
    return env


class ExecutableBridge:
    """Runs the handler's file once per invocation (``ort_core.workers.oneshot``)."""

    def __init__(self, config: FunctionConfig, language: str) -> None:
        self.config = config
        self.language = language
        self.command: list[str] = []
        self.env: dict[str, str] = {}
        self._running: OneShot | None = None

    def start(self) -> None:
        """Find the file and its interpreter; nothing runs until the first event."""
        found = find_handler(self.config)
        if found is None:
            raise FunctionError(
                "Runtime.InvalidEntrypoint",
                f"no file {self.config.handler!r} under {self.config.task_root} "
                "(nor a file named by its part before the last '.')",
            )
        path, arguments = found
        if self.language in INTERPRETERS:
            import shutil

            program, *options = INTERPRETERS[self.language]
            interpreter = shutil.which(program)
            if interpreter is None:
                raise FunctionError(
                    "Runtime.InvalidEntrypoint",
                    f"{program!r} is not on PATH: install it to run {self.config.handler!r}",
                )
            self.command = [interpreter, *options, path, *arguments]
        elif not os.access(path, os.X_OK):
            raise FunctionError(
                "Runtime.InvalidEntrypoint",
                f"{path} is not executable: `chmod +x` it, or set ORT_LANGUAGE to its "
                "interpreter (bash, sh, php)",
            )
        else:
            self.command = [path, *arguments]
        self.env = {
            **{name: value for name, value in os.environ.items() if name not in CONTEXT_VARIABLES},
            "_HANDLER": self.config.handler,
            "LAMBDA_TASK_ROOT": self.config.task_root,
        }

    def invoke(self, event: Any, context: Context) -> Any:
        import errno
        import json
        import time

        from ort_core.pipeline import JSONBytes, timeout_error
        from ort_core.workers.oneshot import OneShot, json_answer

        started_ms = time.time() * 1000
        body = event if isinstance(event, JSONBytes) else json.dumps(event).encode()
        timeout = context.get_remaining_time_in_millis() / 1000 if context.deadline_ms else None
        try:
            process = OneShot(
                self.command,
                {**self.env, **context_environ(context)},
                cwd=self.config.task_root,
                log=LOG_NAME,
            )
        except OSError as exc:
            hint = " (add a shebang line, e.g. #!/bin/sh)" if exc.errno == errno.ENOEXEC else ""
            raise FunctionError(
                "Runtime.InvalidEntrypoint",
                f"cannot run {self.command[0]}: {exc.strerror or exc}{hint}",
            ) from None
        self._running = process
        try:
            result = process.communicate(body, timeout)
        finally:
            self._running = None
        if result.ended_by == "deadline":
            raise timeout_error(context, started_ms)
        if result.ended_by == "output limit":
            raise FunctionError(
                "Function.ResponseSizeTooLarge",
                f"{self.config.handler} wrote more than {process.max_output} bytes on stdout",
            )
        if result.ended_by is not None or result.returncode != 0:
            how = "was stopped (the sandbox is ending):" if result.ended_by else "exited with"
            tail = result.stderr_tail.rstrip("\n")
            raise FunctionError(
                "Runtime.ExitError",
                f"RequestId: {context.aws_request_id} Error: {self.config.handler} {how} "
                f"{result.exit_description()}"
                + (f"; its stderr ends with:\n{tail}" if tail else ""),
            )
        return json_answer(result.stdout)

    def cancel(self) -> bool:
        """Kill the invocation in flight (it reached its deadline)."""
        running = self._running
        if running is not None:
            running.kill("deadline")
        return True

    def stop(self) -> None:
        """Kill the invocation in flight, if any (SIGTERM: the sandbox is ending)."""
        running = self._running
        if running is not None:
            running.kill("stop")
