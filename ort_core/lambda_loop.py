"""The Lambda Runtime API loop: init, then events until the platform ends the sandbox."""

from __future__ import annotations

import _signal  # the signal module's enums cost 1 ms at every cold start
import gc
import logging
import os
import sys

from ort_core.config import FunctionConfig
from ort_core.context import Context
from ort_core.errors import FunctionError
from ort_core.invocation_env import InvocationVariable
from ort_core.logs import set_request_id, setup_function_logging
from ort_core.runtime_api import RuntimeAPI, RuntimeAPIError
from ort_core.startup import start_function

log = logging.getLogger("ort")
RESPONSE_TOO_LARGE = 413


def serve(address: str, env: dict[str, str]) -> int:
    """Init, then answer events until the platform ends the sandbox."""
    # Lambda's stdout is a pipe: without this, prints would wait for a full buffer.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    setup_function_logging(env)
    try:
        api = RuntimeAPI(address)
        return run(api, FunctionConfig.from_environ(env), env)
    except RuntimeAPIError as exc:
        print(f"ort bootstrap: {exc}", file=sys.stderr)
        return 1


def run(api: RuntimeAPI, config: FunctionConfig, env: dict[str, str]) -> int:
    def send_timeout(error: FunctionError, context: Context) -> None:
        """The handler is still running: answer for it, then end the sandbox as Lambda does."""
        log_failure(error)
        api.post_error(context.aws_request_id, error)
        pipeline.close()
        sys.stdout.flush()
        os._exit(1)

    try:
        pipeline = start_function(config, env, on_expiry=send_timeout)
    except FunctionError as error:
        gc.enable()
        log_failure(error)
        api.post_init_error(error)
        return 1
    gc.enable()  # bin/bootstrap turns it off while ORT imports and starts

    def shut_down(signum: int, frame: object) -> None:
        """SIGTERM from the platform: stop the workers, then leave."""
        pipeline.close()
        sys.stdout.flush()
        os._exit(0)

    _signal.signal(_signal.SIGTERM, shut_down)
    trace_variable = InvocationVariable("_X_AMZN_TRACE_ID")  # as Lambda's runtimes export it

    while True:
        invocation = api.next_invocation()
        request_id = invocation.request_id
        set_request_id(request_id)
        trace_variable.set(invocation.headers.get("lambda-runtime-trace-id") or None)
        context = None
        try:
            context = Context.from_runtime_headers(invocation.headers, config)
            body = pipeline.invoke(invocation.body, context)
            sys.stdout.flush()  # an unfinished print line goes out with its request id
        except FunctionError as error:
            log_failure(error)
            api.post_error(request_id, error)
        else:
            if api.post_response(request_id, body) == RESPONSE_TOO_LARGE:
                error = FunctionError(
                    "Function.ResponseSizeTooLarge",
                    f"Response payload size ({len(body)} bytes) exceeded maximum allowed "
                    "payload size (6291556 bytes).",
                )
                log_failure(error)
                api.post_error(request_id, error)
        if context is not None:  # before the next /next, when Lambda may freeze the sandbox
            pipeline.answered(context)
        trace_variable.own()  # once, after the first answer: off the cold start


def log_failure(error: FunctionError) -> None:
    trace = "".join(error.stack_trace)
    log.error(
        "%s: %s%s",
        error.error_type,
        error.message,
        f"\nTraceback (most recent call last):\n{trace}" if trace else "",
    )
