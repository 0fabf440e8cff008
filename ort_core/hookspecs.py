"""The hook contract: every hook ORT calls, and nothing else.

Hooks are grouped by lifecycle phase and always called with keyword arguments, so an
implementation may accept any subset of the arguments below. docs/hooks.md says when each
one fires; tests/test_hook_contract.py fails when a hook lacks documentation or a test.
"""

from __future__ import annotations

from ort_core.markers import hookspec

TYPE_CHECKING = False  # typing's own constant would import typing (3-7 ms)
if TYPE_CHECKING:
    from typing import Any

    from ort_core.bridge import Bridge
    from ort_core.config import FunctionConfig
    from ort_core.context import Context
    from ort_core.errors import FunctionError

# -- Init: once per sandbox --------------------------------------------------------------


@hookspec(firstresult=True)
def launch_language(config: FunctionConfig) -> Bridge | None:
    """Return the bridge that runs ``config.handler`` for ``config.language``.

    :param config: the function's configuration. ``config.language`` is None when the
        user did not choose one; a plugin then claims the handler only if it finds the
        handler's file for its language under ``config.task_root``.

    The first non-None answer wins. The core starts the bridge; a
    :class:`~ort_core.errors.FunctionError` raised from here or from ``Bridge.start``
    becomes a Lambda init error.
    """


@hookspec
def on_init(config: FunctionConfig, bridge: Bridge) -> None:
    """Called once the bridge has started, before the first event is fetched.

    :param config: the function's configuration.
    :param bridge: the bridge ``launch_language`` returned, already started.

    An exception here is an init error (``Runtime.PluginError``).
    """


# -- Invocation: once per event ----------------------------------------------------------


@hookspec
def observe_event(event: Any, context: Context) -> None:
    """Called before the ``before_event`` hooks with the decoded event, to read it.

    :param event: the event as decoded, in the function's signature (each record of a batch).
    :param context: the invocation's context.

    For plugins that only look at the event (telemetry): the event must not be changed here.
    A ``before_event`` implementation may change it in place, so while one is loaded ORT
    encodes the event again for a language worker (2 to 15 ms for 1 MB); an ``observe_event``
    implementation leaves the received bytes to go as they came. Notification only:
    exceptions are logged and the invocation goes on.
    """


@hookspec
def before_event(event: Any, context: Context) -> Any:
    """Called before the handler with the decoded event.

    :param event: the event as the previous ``before_event`` implementation left it.
    :param context: the invocation's context.
    :return: None to keep the event, a replacement event, or
        :class:`~ort_core.pipeline.EarlyResponse` to answer without calling the handler
        or the remaining ``before_event`` hooks; every ``after_response`` hook still runs.

    Implementations run in pluggy's call order (``tryfirst`` first), each seeing the
    previous one's replacement.
    """


@hookspec
def after_response(response: Any, event: Any, context: Context) -> Any:
    """Called after the handler answered, in the reverse order of ``before_event``.

    :param response: the response as the previous ``after_response`` implementation left it.
    :param event: the event the handler received.
    :param context: the invocation's context.
    :return: None to keep the response, or a replacement response.
    """


@hookspec
def on_error(error: FunctionError, event: Any, context: Context) -> None:
    """Called when an invocation fails, before its error is sent.

    :param error: the error that will be sent; its ``error_type`` is the exception's class
        name for handler errors, or a ``Runtime.*`` type for ORT's own.
    :param event: the event as the handler received it (None when it could not be decoded).
    :param context: the invocation's context.

    Notification only: exceptions raised here are logged and do not change the error.
    """


@hookspec
def on_timeout(event: Any, context: Context) -> None:
    """Last words before a timed-out invocation is cut: flush logs and telemetry.

    :param event: the event the handler received.
    :param context: the invocation's context; ``get_remaining_time_in_millis()`` is small.

    Fires on ORT's watchdog, a little before the deadline (``ORT_TIMEOUT_MARGIN_MS``), on a
    thread other than the handler's. Keep it short: the timeout error is sent after every
    implementation returns, then the bridge's work is abandoned.
    """


@hookspec
def after_answer(context: Context) -> None:
    """Called once the invocation's answer (its response or its error) is delivered, before
    the front end takes the next event.

    :param context: the invocation's context.

    On Lambda the sandbox may be frozen once the runtime asks for the next event, not before:
    work here (exporting telemetry, say) still runs, but off the answer's latency. Notification
    only: exceptions are logged. It delays the next invocation, so keep it bounded.
    """


# -- Shutdown: once per sandbox ----------------------------------------------------------


@hookspec
def on_shutdown() -> None:
    """The sandbox is ending (SIGTERM from the platform, the gateway draining, a one-shot
    ``ort invoke`` done): last flush, before the workers are stopped.

    Lambda allows a runtime about 500 ms after SIGTERM (less without extensions): keep it short.
    Notification only: exceptions are logged.
    """
