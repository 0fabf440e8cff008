"""Runs a Python handler inside ORT's process: the fastest bridge, with Lambda's error types.

Handler loading follows AWS's Python runtime client, so its init errors read the same:
``Runtime.MalformedHandlerName``, ``Runtime.ImportModuleError``,
``Runtime.UserCodeSyntaxError``, ``Runtime.HandlerNotFound``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ort_core import Context, FunctionConfig, FunctionError

if TYPE_CHECKING:
    import asyncio

# ORT's own files, and importlib's (``import_module`` sits on top of every import-time error).
_ORT_FRAMES = (os.path.dirname(__file__) + os.sep, os.path.dirname(importlib.__file__) + os.sep)


class InProcessBridge:
    """Sync handlers are called directly; async ones run on one event loop kept for the sandbox."""

    language = "python"

    def __init__(self, config: FunctionConfig) -> None:
        self.config = config
        self.handler: Callable[[Any, Context], Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        if self.config.task_root not in sys.path:
            sys.path.insert(0, self.config.task_root)
        self.handler = load_handler(self.config.handler)

    def invoke(self, event: Any, context: Context) -> Any:
        assert self.handler is not None, "InProcessBridge.invoke before start"
        try:
            result = self.handler(event, context)
            if inspect.isawaitable(result):
                result = self._event_loop().run_until_complete(result)
        except Exception as exc:
            raise describe_user_exception(exc) from None
        return result

    def stop(self) -> None:
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


def load_handler(handler: str) -> Callable[[Any, Context], Any]:
    """Import ``module.function`` (``dir/module.function`` too) or raise Lambda's init error."""
    try:
        module_name, function_name = handler.rsplit(".", 1)
    except ValueError as exc:
        raise FunctionError(
            "Runtime.MalformedHandlerName", f"Bad handler '{handler}': {exc}"
        ) from None
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise FunctionError(
            "Runtime.BuiltInModuleConflict",
            f"Cannot use built-in module {module_name} as a handler module",
        )
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as exc:
        raise FunctionError(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}"
        ) from None
    except SyntaxError as exc:
        raise FunctionError(
            "Runtime.UserCodeSyntaxError",
            f"Syntax error in module '{module_name}': {exc}",
            [f'  File "{exc.filename}" Line {exc.lineno}\n    {exc.text}'],
        ) from None
    except Exception as exc:
        raise describe_user_exception(exc) from None
    function = getattr(module, function_name, None)
    if function is None:
        raise FunctionError(
            "Runtime.HandlerNotFound",
            f"Handler '{function_name}' missing on module '{module_name}'",
        )
    if not callable(function):
        raise FunctionError(
            "Runtime.HandlerNotFound",
            f"Handler '{function_name}' on module '{module_name}' is not callable",
        )
    return function


def describe_user_exception(exc: BaseException) -> FunctionError:
    """The exception with only the user's frames, not ORT's, importlib's or asyncio's."""
    frames = [
        frame for frame in traceback.extract_tb(exc.__traceback__) if _is_user_frame(frame.filename)
    ]
    return FunctionError(type(exc).__name__, str(exc), traceback.format_list(frames))


def _is_user_frame(filename: str) -> bool:
    return not (
        filename.startswith(_ORT_FRAMES)
        or filename.startswith("<frozen importlib")
        or f"{os.sep}asyncio{os.sep}" in filename
    )
