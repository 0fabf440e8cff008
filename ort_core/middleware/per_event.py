"""A middleware run once per hook call: ``echo PAYLOAD | /opt/middlewares/NAME before``."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from ort_core.languages.executable import CONTEXT_VARIABLES, context_environ
from ort_core.middleware import UNCHANGED, failure, parse_output
from ort_core.pipeline import encode_response
from ort_core.workers.oneshot import OneShot

if TYPE_CHECKING:
    from ort_core.context import Context


class PerEventMiddleware:
    """Its stdout replaces the payload; stderr goes to the log line by line."""

    def __init__(self, name: str, path: str) -> None:
        self.name = name
        self.path = path
        self.step_names = (f"middleware:{name}:before", f"middleware:{name}:after")
        self.log = logging.getLogger(f"middleware:{name}")
        self.env = {key: value for key, value in os.environ.items() if key not in CONTEXT_VARIABLES}
        self._running: OneShot | None = None

    def before(self, event: Any, context: Context) -> Any:
        return self._run("before", event, context)

    def after(self, response: Any, context: Context) -> Any:
        return self._run("after", response, context)

    def _run(self, hook: str, payload: Any, context: Context) -> Any:
        env = {**self.env, **context_environ(context), "ORT_MIDDLEWARE_HOOK": hook}
        try:
            process = OneShot([self.path, hook], env, log=self.log)
        except OSError as exc:
            raise failure(self.name, hook, f"cannot start {self.path}: {exc.strerror}") from None
        self._running = process
        try:
            result = process.communicate(encode_response(payload))
        finally:
            self._running = None
        if result.ended_by == "deadline":
            what = "it was still running at the invocation's deadline"
        elif result.ended_by == "output limit":
            what = f"it wrote more than {process.max_output} bytes"
        elif result.ended_by is not None or result.returncode != 0:
            what = f"it exited with {result.exit_description()}"
        else:
            answer = parse_output(self.name, hook, result.stdout, result.stderr_tail)
            return payload if answer is UNCHANGED else answer
        raise failure(self.name, hook, what, result.stderr_tail)

    def cancel(self) -> bool:
        """Kill the run in flight (the invocation reached its deadline)."""
        running = self._running
        if running is not None:
            running.kill("deadline")
        return True

    def close(self) -> None:
        self.cancel()
