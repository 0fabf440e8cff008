"""Runs a Python handler inside ORT's process: the fastest bridge, with Lambda's error types.

Loading and calling the handler is :mod:`ort_python.loading`, shared with the subprocess
worker; this bridge turns its errors into ``FunctionError``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from ort_core import Context, FunctionConfig, FunctionError
from ort_python import loading


class InProcessBridge:
    """Sync handlers are called directly; async ones run on one event loop kept for the sandbox."""

    language = "python"

    def __init__(self, config: FunctionConfig) -> None:
        self.config = config
        self.handler: Callable[[Any, Context], Any] | None = None
        self._caller: loading.HandlerCaller | None = None

    def start(self) -> None:
        if self.config.task_root not in sys.path:
            sys.path.insert(0, self.config.task_root)
        self.handler = load_handler(self.config.handler)
        self._caller = loading.HandlerCaller(self.handler)

    def invoke(self, event: Any, context: Context) -> Any:
        assert self._caller is not None, "InProcessBridge.invoke before start"
        cloudevents = context.signature == "cloudevent"
        if cloudevents:
            from ort_core.events.cloudevent import from_structured_json, to_cloudevent

            event = to_cloudevent(from_structured_json(event))  # the SDK's CloudEvent
        try:
            answer = self._caller.call(event, context)
        except loading.HandlerError as error:
            raise function_error(error) from None
        if cloudevents and callable(getattr(answer, "get_attributes", None)):
            from ort_core.events.cloudevent import from_sdk

            return from_sdk(answer)  # a CloudEvent answer, in its structured JSON form
        return answer

    def stop(self) -> None:
        if self._caller is not None:
            self._caller.close()


def load_handler(handler: str) -> Callable[[Any, Context], Any]:
    """Import ``module.function`` (``dir/module.function`` too) or raise Lambda's init error."""
    try:
        return loading.load_handler(handler)
    except loading.HandlerError as error:
        raise function_error(error) from None


def describe_user_exception(exc: BaseException) -> FunctionError:
    """The exception with only the user's frames, not ORT's, importlib's or asyncio's."""
    return function_error(loading.describe_exception(exc))


def function_error(error: loading.HandlerError) -> FunctionError:
    return FunctionError(error.error_type, error.message, error.stack_trace)
