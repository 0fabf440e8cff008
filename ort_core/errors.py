"""The one error shape every front end sends and every bridge raises."""

from __future__ import annotations

import traceback
from typing import Any


class FunctionError(Exception):
    """An invocation or init failure, as Lambda shapes it.

    ``error_type`` is the user's exception class name (``ValueError``) or one of Lambda's
    ``Runtime.*`` types; ``stack_trace`` is a list of strings like Python's
    ``traceback.format_list``.
    """

    def __init__(self, error_type: str, message: str, stack_trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack_trace = stack_trace or []

    @classmethod
    def from_exception(cls, exc: BaseException, skip_frames: int = 0) -> FunctionError:
        """Describe a user exception; ``skip_frames`` drops ORT's own frames on top."""
        if isinstance(exc, FunctionError):
            return exc
        frames = traceback.extract_tb(exc.__traceback__)[skip_frames:]
        return cls(type(exc).__name__, str(exc), traceback.format_list(frames))

    def to_dict(self, request_id: str = "") -> dict[str, Any]:
        return {
            "errorMessage": self.message,
            "errorType": self.error_type,
            "requestId": request_id,
            "stackTrace": self.stack_trace,
        }

    def __repr__(self) -> str:
        return f"FunctionError({self.error_type!r}, {self.message!r})"
