"""ORT's Python worker: loads the handler as the in-process mode does, then serves ORT's worker
protocol (docs/worker-protocol.md) on the Unix socket named in ``ORT_WORKER_SOCKET``.

Run as a script, by any Python interpreter (``ORT_PYTHON_BINARY``): it imports only the
standard library and ``loading.py``, its sibling, so ORT and its dependencies need not be
installed where it runs. Where they are (ORT's own interpreter, the default), it also takes
``ort_core.invocation_env``, so that the per-invocation variables do not leak. stdout and
stderr stay the function's: ORT tags their lines with the request id in flight.
"""

from __future__ import annotations

import builtins
import json
import os
import socket
import sys
import time
from collections.abc import Mapping
from typing import Any, BinaryIO

_HERE = os.path.dirname(os.path.abspath(__file__))


def _import_from(folder: str, name: str) -> Any:
    """``name.py`` from ``folder``, then out of the user's way: the folder leaves
    ``sys.path`` and the module ``sys.modules``, so a handler module may have the same name
    (``loading``, ``plugin``...)."""
    sys.path.insert(0, folder)
    try:
        return __import__(name)
    finally:
        while folder in sys.path:
            sys.path.remove(folder)
        sys.modules.pop(name, None)


loading = _import_from(_HERE, "loading")


class _EnvironVariable:
    """``os.environ`` itself, where ORT's ``InvocationVariable`` is not installed: each value
    set stays in glibc's memory."""

    owned = False

    def __init__(self, name: str) -> None:
        self.name = name

    def own(self) -> None:
        pass

    def set(self, value: str | None) -> None:
        if value is None:
            os.environ.pop(self.name, None)
        else:
            os.environ[self.name] = value


def _invocation_variable() -> Any:
    """``ort_core/invocation_env.py``'s class, read from where this interpreter would find
    ``ort_core`` (the finders' answer, not an import): the handler's process never holds
    ORT's package, only this one standard-library module, under no name of its own.
    importlib.util.find_spec walks the same finders, but importing it costs up to 5 ms where
    site has not already."""
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        spec = find_spec("ort_core", None) if find_spec is not None else None
        if spec is not None and spec.submodule_search_locations:
            try:
                folder = next(iter(spec.submodule_search_locations))
                return _import_from(folder, "invocation_env").InvocationVariable
            except (ImportError, AttributeError, SyntaxError):  # another ORT's, too new
                break
    return _EnvironVariable


InvocationVariable = _invocation_variable()
TRACE_ID = InvocationVariable("_X_AMZN_TRACE_ID")
TRACEPARENT = InvocationVariable("TRACEPARENT")  # each invocation's own, set while it runs

MAX_PART = 64 * 1024 * 1024  # as ORT's side: far above Lambda's 6 MB
MARKS = ((50, "F"), (40, "E"), (30, "W"), (20, "I"), (10, "D"))  # below DEBUG: "T", TRACE
CLOSED = "ORT closed the channel"


# -- the protocol ----------------------------------------------------------------------------


class ChannelClosed(Exception):
    """ORT closed the socket (the sandbox is ending), or broke the protocol."""


def send(channel: socket.socket, header: Mapping[str, Any], body: bytes = b"") -> None:
    head = json.dumps(header).encode()
    channel.sendall(len(head).to_bytes(4, "big") + head + len(body).to_bytes(4, "big"))
    if body:
        channel.sendall(body)


def receive(reader: BinaryIO) -> tuple[dict[str, Any], bytes]:
    try:
        header = json.loads(_read_part(reader))
    except ValueError as exc:
        raise ChannelClosed(f"a message header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ChannelClosed(f"a message header is not an object: {header!r}")
    return header, _read_part(reader)


def _read_part(reader: BinaryIO) -> bytes:
    try:
        prefix = reader.read(4)
    except OSError as exc:
        raise ChannelClosed(f"the channel failed: {exc}") from None
    if len(prefix) < 4:
        raise ChannelClosed(CLOSED)
    size = int.from_bytes(prefix, "big")
    if size > MAX_PART:
        raise ChannelClosed(f"a message part of {size} bytes is over the {MAX_PART} limit")
    try:
        data = reader.read(size)
    except OSError as exc:
        raise ChannelClosed(f"the channel failed: {exc}") from None
    if len(data) < size:
        raise ChannelClosed("ORT closed the channel in the middle of a message")
    return data


# -- the context: the attributes and types of AWS's Python runtime client (and in-process) ----


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
    """One invocation's context, from the protocol's camelCase ``context``."""

    def __init__(self, fields: Mapping[str, Any]) -> None:
        client_context = fields.get("clientContext")
        identity = fields.get("identity")
        self.aws_request_id = fields.get("awsRequestId") or ""
        self.deadline_ms = int(fields.get("deadlineMs") or 0)
        self.invoked_function_arn = fields.get("invokedFunctionArn")
        self.trace_id = fields.get("traceId")
        self.client_context = (
            ClientContext(client_context) if isinstance(client_context, Mapping) else None
        )
        self.identity = CognitoIdentity(identity if isinstance(identity, Mapping) else None)
        self.tenant_id = fields.get("tenantId")
        self.function_name = fields.get("functionName")
        self.function_version = fields.get("functionVersion")
        self.memory_limit_in_mb = fields.get("memoryLimitInMB")
        self.log_group_name = fields.get("logGroupName")
        self.log_stream_name = fields.get("logStreamName")
        # The W3C trace context of the handler's span, when a telemetry plugin traces it.
        self.traceparent = fields.get("traceparent")

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the deadline, never below 0."""
        return max(0, self.deadline_ms - int(time.time() * 1000))

    def __repr__(self) -> str:
        return (
            f"Context(aws_request_id={self.aws_request_id!r}, "
            f"function_name={self.function_name!r}, "
            f"invoked_function_arn={self.invoked_function_arn!r})"
        )


# -- invoking ----------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    """Decimals as numbers, as ORT's pipeline encodes in-process answers."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def invoke(
    caller: Any,
    body: bytes,
    fields: Mapping[str, Any],
    cloudevent: bool = False,
    timing: list[int] | None = None,
) -> tuple[bool, bytes]:
    """(ok, the body of the result): the answer as JSON (bytes as they are), or the error.
    ``timing``, when given, gets the handler's start and end on the monotonic clock."""
    try:
        event = json.loads(body)
    except ValueError as exc:
        return False, _error("Runtime.UnmarshalError", f"Unable to unmarshal input: {exc}")
    if cloudevent:
        try:
            event = sdk_cloudevent(event)
        except ImportError:
            return False, _error(
                "Runtime.ImportModuleError",
                "ORT_SIGNATURE=cloudevent needs the cloudevents package in the worker's "
                "interpreter (ORT_PYTHON_BINARY)",
            )
    context = Context(fields)
    TRACE_ID.set(context.trace_id or None)
    traceparent = context.traceparent if isinstance(context.traceparent, str) else None
    if traceparent:  # for code with its own OpenTelemetry SDK, while the handler runs
        TRACEPARENT.set(traceparent)
    # The seam for an instrumenting preload: it calls ``call`` and returns what it returns.
    around = getattr(builtins, "__ort_around_handler__", None)
    if timing is not None:
        timing.append(time.monotonic_ns())
    try:
        if around is None:
            result = caller.call(event, context)
        else:
            result = around(context, lambda: caller.call(event, context))
    except loading.HandlerError as error:
        return False, json.dumps(error.to_dict()).encode()
    except Exception as exc:  # the preload's own failure
        return False, json.dumps(loading.describe_exception(exc).to_dict()).encode()
    finally:
        if timing is not None:
            timing.append(time.monotonic_ns())
        if traceparent:
            TRACEPARENT.set(None)
    if isinstance(result, bytes):
        return True, result  # as in-process: bytes pass unchanged
    if cloudevent and callable(getattr(result, "get_attributes", None)):
        result = structured_cloudevent(result)
    try:
        return True, json.dumps(result, default=_json_default).encode()
    except (TypeError, ValueError) as exc:
        return False, _error("Runtime.MarshalError", f"Unable to marshal response: {exc}")


def sdk_cloudevent(document: Any) -> Any:
    """The cloudevents SDK's CloudEvent for a structured-mode document, as in-process mode
    gives (ort_core.events.cloudevent, which this interpreter may not have)."""
    from datetime import datetime

    from cloudevents.core.v1.event import CloudEvent

    attributes = {k: v for k, v in document.items() if k not in ("data", "data_base64")}
    if isinstance(attributes.get("time"), str):
        attributes["time"] = datetime.fromisoformat(attributes["time"].replace("Z", "+00:00"))
    if "data_base64" in document:
        import base64

        return CloudEvent(attributes=attributes, data=base64.b64decode(document["data_base64"]))
    return CloudEvent(attributes=attributes, data=document.get("data"))


def structured_cloudevent(event: Any) -> dict[str, Any]:
    """An SDK CloudEvent answer in its structured-mode JSON form."""
    document = {
        name: value.isoformat().replace("+00:00", "Z") if hasattr(value, "isoformat") else value
        for name, value in event.get_attributes().items()
    }
    data = event.get_data()
    if isinstance(data, bytes):
        import base64

        document["data_base64"] = base64.b64encode(data).decode()
    elif data is not None:
        document["data"] = data
    return document


def _error(error_type: str, message: str) -> bytes:
    return json.dumps(loading.HandlerError(error_type, message).to_dict()).encode()


def log_records() -> None:
    """The root logger as in ORT's own process: at ``AWS_LAMBDA_LOG_LEVEL`` (default INFO),
    set before the handler loads, each record one line on stdout marked with its level for
    ORT (docs/worker-protocol.md, "Logs"), written at once so no print splits it."""
    import logging

    class MarkedLines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                level = record.levelno
                mark = next((letter for floor, letter in MARKS if level >= floor), "T")
                text = self.format(record).replace("\n", "\r")
                data = f"\x1f{mark}{text}\n".encode(errors="backslashreplace")
                while data:
                    data = data[os.write(1, data) :]
            except Exception:
                self.handleError(record)

    levels = {"TRACE": 5, "WARN": 30, "FATAL": 50}
    name = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    level = levels.get(name, logging.getLevelName(name))
    root = logging.getLogger()
    root.addHandler(MarkedLines())
    root.setLevel(level if isinstance(level, int) else logging.INFO)


def load_preloads(value: str) -> None:
    """Run the ``ORT_PRELOAD`` files (separated by ``os.pathsep``), in order, each as a module
    of its own; HandlerError (``Runtime.InitError``) naming the first that fails."""
    for index, entry in enumerate(filter(None, value.split(os.pathsep))):
        path = os.path.abspath(entry)
        try:
            import importlib.util

            spec = importlib.util.spec_from_file_location(f"__ort_preload_{index}__", path)
            if spec is None or spec.loader is None:
                raise ImportError("not a Python file (.py)")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        except Exception as exc:
            described = loading.describe_exception(exc)
            raise loading.HandlerError(
                "Runtime.InitError",
                f"ORT_PRELOAD {path} failed to load: {type(exc).__name__}: {exc}",
                described.stack_trace,
            ) from None


def spans_json(spans: list[Any]) -> bytes:
    """The spans' message body; ``[]`` when a preload recorded something that is not JSON
    (the result said they follow, so the message goes regardless)."""
    try:
        return json.dumps(spans).encode()
    except (TypeError, ValueError) as exc:
        print(f"ort-python worker: spans dropped: {exc}", file=sys.stderr)
        return b"[]"


def take_spans() -> list[Any] | None:
    """What a preload recorded during the invocation, out of ``builtins.__ort_spans__`` (a
    list, emptied in place: the preload may keep a reference to it)."""
    spans = getattr(builtins, "__ort_spans__", None)
    if not spans or not isinstance(spans, list):
        return None
    taken = spans[:]
    spans.clear()
    return taken


def _flush_logs() -> None:
    """The invocation's prints reach ORT before its result, so they carry its request id."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def main() -> int:
    # stdout is a pipe: without this, prints would wait for a full buffer.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    log_records()
    address = os.environ.get("ORT_WORKER_SOCKET")
    if not address:
        print(
            "ort-python worker: ORT_WORKER_SOCKET is not set; ORT starts this worker",
            file=sys.stderr,
        )
        return 2
    channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    channel.connect(address)
    reader = channel.makefile("rb")

    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    if task_root not in sys.path:
        sys.path.insert(0, task_root)
    TRACEPARENT.set(None)  # each invocation's own, set only while it runs
    try:
        load_preloads(os.environ.get("ORT_PRELOAD", ""))
        caller = loading.HandlerCaller(loading.load_handler(os.environ.get("_HANDLER", "")))
    except loading.HandlerError as error:
        _flush_logs()
        send(channel, {"type": "init_error"}, json.dumps(error.to_dict()).encode())
        channel.close()
        return 1
    _flush_logs()
    send(channel, {"type": "ready"})

    while True:
        try:
            header, body = receive(reader)
        except ChannelClosed as closed:
            if str(closed) == CLOSED:
                return 0
            print(f"ort-python worker: {closed}", file=sys.stderr)
            return 1
        if header.get("type") != "invoke":
            continue  # unknown types are for later versions of the protocol
        context = header.get("context")
        timing: list[int] | None = [] if header.get("time_handler") else None
        ok, answer = invoke(
            caller,
            body,
            context if isinstance(context, Mapping) else {},
            cloudevent=header.get("signature") == "cloudevent",
            timing=timing,
        )
        _flush_logs()
        result: dict[str, Any] = {"type": "result", "id": header.get("id"), "ok": ok}
        if timing:
            result["handler_ns"] = timing
        spans = take_spans()
        if spans:
            result["spans_follow"] = True  # encoded after the answer went out
        try:
            send(channel, result, answer)
            if spans:
                send(channel, {"type": "spans", "id": header.get("id")}, spans_json(spans))
        except OSError:
            return 0  # ORT stopped waiting (the sandbox is ending)
        TRACE_ID.own()  # once, after the first answer: ctypes' import is off the cold start
        TRACEPARENT.own()


if __name__ == "__main__":
    sys.exit(main())
