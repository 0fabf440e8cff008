"""The function's configuration, read once at cold start from the platform's variables."""

from __future__ import annotations

import os
from collections import namedtuple

TYPE_CHECKING = False  # typing's own constant would import typing (3-7 ms, before the worker)
SIGNATURES = ("raw", "cloudevent", "http")  # what a handler receives: ort_core/signatures.py

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import NamedTuple

    class _Fields(NamedTuple):
        handler: str
        task_root: str
        language: str | None = None
        function_name: str | None = None
        function_version: str | None = None
        memory_limit_in_mb: str | None = None
        log_group_name: str | None = None
        log_stream_name: str | None = None
        region: str | None = None
        timeout_margin_ms: int = 100
        # What the handler receives (ort_core/signatures.py). ORT_SIGNATURE unset means
        # "cloudevent"; a FunctionConfig built in code passes events as they are unless told.
        signature: str = "raw"

else:
    # The same class as typing.NamedTuple makes, without importing typing on the way to the
    # worker's start (and without compiling each string annotation: 2.7 ms here).
    _Fields = namedtuple(
        "FunctionConfig",
        "handler task_root language function_name function_version memory_limit_in_mb "
        "log_group_name log_stream_name region timeout_margin_ms signature",
        defaults=(None, None, None, None, None, None, None, 100, "raw"),
    )


class FunctionConfig(_Fields):
    """What the platform says about the function (``_HANDLER``, ``AWS_LAMBDA_*``, ``ORT_*``).

    String fields stay strings, as in AWS's runtime clients, so handlers ported from them
    see the same values.
    """

    __slots__ = ()

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, handler: str | None = None
    ) -> FunctionConfig:
        env = os.environ if environ is None else environ
        return cls(
            handler=handler or env.get("_HANDLER", ""),
            task_root=env.get("LAMBDA_TASK_ROOT") or os.getcwd(),
            language=env.get("ORT_LANGUAGE") or None,
            function_name=env.get("AWS_LAMBDA_FUNCTION_NAME"),
            function_version=env.get("AWS_LAMBDA_FUNCTION_VERSION"),
            memory_limit_in_mb=env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
            log_group_name=env.get("AWS_LAMBDA_LOG_GROUP_NAME"),
            log_stream_name=env.get("AWS_LAMBDA_LOG_STREAM_NAME"),
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
            timeout_margin_ms=int(env.get("ORT_TIMEOUT_MARGIN_MS", "100")),
            signature=env.get("ORT_SIGNATURE") or "cloudevent",
        )


def with_lambda_defaults(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with the variables Lambda always sets filled in, for local runs."""
    name = env.get("AWS_LAMBDA_FUNCTION_NAME", "function")
    defaults = {
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_TIMEOUT": "300",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "$LATEST",
        "AWS_REGION": env.get("AWS_DEFAULT_REGION", "us-east-1"),
        "LAMBDA_TASK_ROOT": os.getcwd(),
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
    }
    return {**defaults, **env}
