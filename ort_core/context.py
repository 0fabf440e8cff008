"""The invocation context, with the fields and types AWS's Python runtime client gives."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from ort_core.config import FunctionConfig
from ort_core.errors import FunctionError


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, identity: Mapping[str, Any] | None = None) -> None:
        identity = identity or {}
        self.cognito_identity_id = identity.get("cognitoIdentityId")
        self.cognito_identity_pool_id = identity.get("cognitoIdentityPoolId")


class MobileClient:
    __slots__ = (
        "app_package_name",
        "app_title",
        "app_version_code",
        "app_version_name",
        "installation_id",
    )

    def __init__(self, client: Mapping[str, Any]) -> None:
        for slot in self.__slots__:
            setattr(self, slot, client.get(slot))


class ClientContext:
    __slots__ = ("client", "custom", "env", "raw")

    def __init__(self, client_context: Mapping[str, Any]) -> None:
        self.raw = dict(client_context)
        client = client_context.get("client")
        self.client = MobileClient(client) if isinstance(client, Mapping) else None
        self.custom = client_context.get("custom")
        self.env = client_context.get("env")


class Context:
    """One invocation's context: request id, deadline, caller and the function's identity."""

    def __init__(
        self,
        aws_request_id: str,
        deadline_ms: int,
        config: FunctionConfig,
        invoked_function_arn: str | None = None,
        trace_id: str | None = None,
        client_context: ClientContext | None = None,
        identity: CognitoIdentity | None = None,
        tenant_id: str | None = None,
    ) -> None:
        self.aws_request_id = aws_request_id
        self.deadline_ms = deadline_ms
        self.invoked_function_arn = invoked_function_arn
        self.trace_id = trace_id
        self.client_context = client_context
        self.identity = identity if identity is not None else CognitoIdentity()
        self.tenant_id = tenant_id
        self.function_name = config.function_name
        self.function_version = config.function_version
        self.memory_limit_in_mb = config.memory_limit_in_mb
        self.log_group_name = config.log_group_name
        self.log_stream_name = config.log_stream_name
        # What the handler receives this time: ORT_SIGNATURE, or the front end's choice per
        # request (the gateway hands a CloudEvent request over as a CloudEvent).
        self.signature = config.signature
        # For telemetry plugins: the steps the pipeline ran (``pipeline.Step``), the W3C
        # trace context a plugin gives the handler, the handler's run as its worker timed it
        # (epoch ns, start and end: a traced invocation's), and the spans a worker sent back.
        self.steps: list[Any] = []
        self.traceparent: str | None = None
        self.handler_ns: tuple[int, int] | None = None
        self.worker_spans: list[dict[str, Any]] = []
        # The event's ``_debugProxy`` (host:port), when ORT_ALLOW_DEBUG=1 lets it through.
        self.debug_proxy: str | None = None
        # The event as the front end received it: (its decoded value, its JSON bytes). A
        # worker bridge handed that very value sends these bytes instead of encoding it again
        # (6 ms for 1 MB); the pipeline sets it only when nothing runs before the bridge.
        self.event_body: tuple[Any, bytes] | None = None

    @classmethod
    def from_runtime_headers(cls, headers: Mapping[str, str], config: FunctionConfig) -> Context:
        """Build from the ``Lambda-Runtime-*`` headers of ``/invocation/next``, lower-cased."""
        client_context = _json_header(headers, "lambda-runtime-client-context")
        identity = _json_header(headers, "lambda-runtime-cognito-identity")
        return cls(
            aws_request_id=headers.get("lambda-runtime-aws-request-id", ""),
            deadline_ms=int(headers.get("lambda-runtime-deadline-ms") or 0),
            config=config,
            invoked_function_arn=headers.get("lambda-runtime-invoked-function-arn"),
            trace_id=headers.get("lambda-runtime-trace-id") or None,
            client_context=ClientContext(client_context) if client_context else None,
            identity=CognitoIdentity(identity),
            tenant_id=headers.get("lambda-runtime-aws-tenant-id"),
        )

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the deadline, never below 0."""
        return max(0, self.deadline_ms - int(time.time() * 1000))

    def __repr__(self) -> str:
        return (
            f"Context(aws_request_id={self.aws_request_id!r}, "
            f"function_name={self.function_name!r}, "
            f"invoked_function_arn={self.invoked_function_arn!r})"
        )


def _json_header(headers: Mapping[str, str], name: str) -> Any:
    raw = headers.get(name)
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise FunctionError(
            "Runtime.LambdaContextUnmarshalError", f"Unable to parse {name} JSON: {exc}"
        ) from None
    return value if isinstance(value, dict) else None
