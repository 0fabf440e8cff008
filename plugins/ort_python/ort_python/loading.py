"""Loading a Python handler and calling it, with Lambda's error types: shared by both modes.

Handler loading follows AWS's Python runtime client, so its init errors read the same:
``Runtime.MalformedHandlerName``, ``Runtime.BuiltInModuleConflict``,
``Runtime.ImportModuleError``, ``Runtime.UserCodeSyntaxError``, ``Runtime.HandlerNotFound``;
an exception raised while importing, or by the handler, is described by its class name, its
message and the user's frames only.

Standard library only, and never ``ort_core``: ``in_process.py`` imports this module as
``ort_python.loading``, and ``worker.py`` imports it as a sibling file, in an interpreter
where neither ORT nor its dependencies need be installed. Errors are :class:`HandlerError`;
the in-process bridge turns them into ``ort_core.FunctionError``, the worker into the
protocol's error JSON.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

# ort-python's own files (the bridges, the worker, this module), and importlib's
# (``import_module`` sits on top of every import-time error).
_ORT_FRAMES = (
    os.path.dirname(os.path.abspath(__file__)) + os.sep,
    os.path.dirname(importlib.__file__) + os.sep,
)


class HandlerError(Exception):
    """A handler that cannot be loaded, or that raised: Lambda's error type, message, stack.

    ``stack_trace`` is a list of strings like :func:`traceback.format_list`'s.
    """

    def __init__(self, error_type: str, message: str, stack_trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack_trace = stack_trace or []

    def to_dict(self) -> dict[str, Any]:
        """The error JSON of ORT's worker protocol."""
        return {
            "errorType": self.error_type,
            "errorMessage": self.message,
            "stackTrace": self.stack_trace,
        }


def load_handler(handler: str) -> Callable[..., Any]:
    """Import ``module.function`` (``dir/module.function`` too) or raise Lambda's init error.

    The task root must already be on ``sys.path``.
    """
    try:
        module_name, function_name = handler.rsplit(".", 1)
    except ValueError as exc:
        raise HandlerError(
            "Runtime.MalformedHandlerName", f"Bad handler '{handler}': {exc}"
        ) from None
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise HandlerError(
            "Runtime.BuiltInModuleConflict",
            f"Cannot use built-in module {module_name} as a handler module",
        )
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as exc:
        raise HandlerError(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}"
        ) from None
    except SyntaxError as exc:
        raise HandlerError(
            "Runtime.UserCodeSyntaxError",
            f"Syntax error in module '{module_name}': {exc}",
            [f'  File "{exc.filename}" Line {exc.lineno}\n    {exc.text}'],
        ) from None
    except Exception as exc:
        raise describe_exception(exc) from None
    function = getattr(module, function_name, None)
    if function is None:
        raise HandlerError(
            "Runtime.HandlerNotFound",
            f"Handler '{function_name}' missing on module '{module_name}'",
        )
    if not callable(function):
        raise HandlerError(
            "Runtime.HandlerNotFound",
            f"Handler '{function_name}' on module '{module_name}' is not callable",
        )
    return function


class HandlerCaller:
    """Calls a loaded handler. Sync handlers are called directly; what async ones return is
    awaited on one event loop, kept from the first async call until :meth:`close`."""

    def __init__(self, handler: Callable[..., Any]) -> None:
        self.handler = handler
        self._loop: asyncio.AbstractEventLoop | None = None

    def call(self, event: Any, context: Any) -> Any:
        """The handler's answer, or :class:`HandlerError` describing what it raised."""
        try:
            result = self.handler(event, context)
            if isinstance(result, Awaitable):  # inspect's own check costs 8 ms of imports
                result = self._event_loop().run_until_complete(result)
        except Exception as exc:
            failure = describe_exception(exc)
        else:
            return result
        # Raised outside the except block: with no __context__, the error does not keep the
        # handler's frames alive (a MemoryError's hog, until a garbage collection).
        raise failure

    def close(self) -> None:
        if self._loop is not None:
            import asyncio

            asyncio.set_event_loop(None)
            self._loop.close()
            self._loop = None

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            import asyncio  # only functions with async handlers pay for it

            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
        return self._loop


def describe_exception(exc: BaseException) -> HandlerError:
    """The exception with only the user's frames, not ORT's, importlib's or asyncio's."""
    import traceback  # only failures pay for it

    frames = [
        frame for frame in traceback.extract_tb(exc.__traceback__) if is_user_frame(frame.filename)
    ]
    return HandlerError(type(exc).__name__, str(exc), traceback.format_list(frames))


def is_user_frame(filename: str) -> bool:
    return not (
        filename.startswith(_ORT_FRAMES)
        or filename.startswith("<frozen importlib")
        or f"{os.sep}asyncio{os.sep}" in filename
    )
