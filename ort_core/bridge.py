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

    A bridge may also define ``cancel() -> bool``. The watchdog calls it from its own thread
    when the invocation in flight reaches its deadline: it ends that work at once (kills the
    worker or the process) so that ``invoke`` returns, and the next ``invoke`` starts afresh.
    It returns False, or is absent, when the handler runs in ORT's own process and cannot be
    stopped: the front end then sends the timeout itself and ends the sandbox.

    A bridge whose worker sends its spans after its result (docs/worker-protocol.md) defines
    ``receive_spans() -> None``, which reads them into that invocation's
    ``context.worker_spans``: the pipeline calls it once the answer is delivered.
    """

    language: str

    def start(self) -> None: ...

    def invoke(self, event: Any, context: Context) -> Any: ...

    def stop(self) -> None: ...
