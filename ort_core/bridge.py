"""What a language plugin hands the core: the object that runs the user's handler."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ort_core.context import Context


class Bridge(Protocol):
    """Runs one handler for one language, from init until the sandbox ends.

    ``start`` loads the handler (import the module, start the worker) and raises
    :class:`~ort_core.errors.FunctionError` with a ``Runtime.*`` type when it cannot.
    ``invoke`` returns the handler's answer as a JSON-serialisable value, or raises: a
    ``FunctionError`` is sent as is, any other exception is described by its class name,
    message and stack.
    """

    language: str

    def start(self) -> None: ...

    def invoke(self, event: Any, context: Context) -> Any: ...

    def stop(self) -> None: ...
