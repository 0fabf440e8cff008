"""ORT's testing kit for plugin authors: a pytest plugin that ships with ort-core.

pytest loads it in every run of an environment where ort-core is installed (entry point
``pytest11``), so this module imports nothing of ORT until a test asks for a fixture.

- ``ort_function``: start a function through ORT's whole pipeline (plugins, middlewares,
  bridge, deadline) with only the plugins the test names, then invoke it with raw events,
  CloudEvents or HTTP requests (the gateway's event), and read the answer's bytes, Lambda's
  error JSON and every hook call each plugin saw.
- ``ort_emulator``: the embedded Lambda emulator (``ort emulate``) on a free port of
  127.0.0.1, with ORT's bootstrap (or any runtime command) as its sandbox.

docs/writing-plugins.md shows both at work.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ort_core.config import FunctionConfig
    from ort_core.context import Context
    from ort_core.errors import FunctionError
    from ort_core.pipeline import Pipeline
    from ort_core.plugins import HookCall

__all__ = ["EmulatedFunction", "Function", "HTTPResponse", "Invocation", "InvokeResponse"]

# What ORT and the platform read from the environment: a test's function sees only its own.
_ORT_VARIABLES = ("ORT_", "AWS_LAMBDA_", "_HANDLER", "LAMBDA_TASK_ROOT", "SLSMIDDLEWARES")
_BUILT_IN = ("executable", "scaleway")  # ort-core's own language plugins
ACCOUNT_ID = "012345678912"


def _outside_environ() -> dict[str, str]:
    return {
        name: value for name, value in os.environ.items() if not name.startswith(_ORT_VARIABLES)
    }


def _write_files(root: Path, files: Mapping[str, str | bytes] | None) -> None:
    for name, content in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content).lstrip("\n"))


class _Environment:
    """``os.environ`` as the function's while ORT runs for it (start, invoke, close): plugins
    and bridges read it (worker environments, modes, binaries), and two functions of one test
    may differ."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self._saved: dict[str, str] | None = None

    def __enter__(self) -> None:
        self._saved = dict(os.environ)
        for name in list(os.environ):
            if name.startswith(_ORT_VARIABLES):
                del os.environ[name]
        os.environ.update(self.env)

    def __exit__(self, *exc: object) -> None:
        assert self._saved is not None
        os.environ.clear()
        os.environ.update(self._saved)
        self._saved = None


class Invocation:
    """One invocation's outcome: the answer's bytes or the error Lambda would receive, and the
    hook calls it caused, in call order."""

    def __init__(
        self,
        context: Context,
        body: bytes | None,
        error: FunctionError | None,
        calls: list[HookCall],
    ) -> None:
        self.context = context
        self.request_id = context.aws_request_id
        self.body = body
        self.error = error
        self.calls = calls

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def error_json(self) -> dict[str, Any] | None:
        """Lambda's error JSON (``errorType``, ``errorMessage``, ``requestId``,
        ``stackTrace``), or None when the invocation answered."""
        return None if self.error is None else self.error.to_dict(self.request_id)

    def json(self) -> Any:
        """The answer, decoded; a failed invocation fails the test with its error JSON."""
        if self.error is not None:
            raise AssertionError(f"the invocation failed: {json.dumps(self.error_json)}")
        assert self.body is not None
        return json.loads(self.body)

    def seen(self, plugin: str | None = None, hook: str | None = None) -> list[HookCall]:
        """The hook calls of one plugin and/or one hook (``call.arguments``, ``.result``,
        ``.error``): what the plugin saw and what it answered."""
        return [
            call
            for call in self.calls
            if (plugin is None or call.plugin == plugin) and (hook is None or call.hook == hook)
        ]

    def __repr__(self) -> str:
        outcome = self.body if self.error is None else self.error_json
        return f"Invocation({self.request_id!r}, {outcome!r})"


class HTTPResponse:
    """What the gateway (``ort serve``) would answer an HTTP request."""

    def __init__(
        self, status: int, headers: dict[str, str], body: bytes, invocation: Invocation
    ) -> None:
        self.status = status
        self.headers = headers  # lower-case names
        self.body = body
        self.invocation = invocation

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"HTTPResponse({self.status}, {self.body[:200]!r})"


class Function:
    """A function started through ORT's pipeline; ``ort_function`` makes them."""

    def __init__(
        self,
        pipeline: Pipeline,
        config: FunctionConfig,
        environment: _Environment,
        calls: list[HookCall],
        timeout: float,
    ) -> None:
        self.pipeline = pipeline
        self.config = config
        self.task_root = Path(config.task_root)
        self.env = environment.env
        self.timeout = timeout
        self.calls = calls  # every hook call, init included
        self.init_calls = list(calls)  # launch_language and on_init
        self._environment = environment
        self._closed = False
        self._modules_before: set[str] = set()
        self._path_before: list[str] = []

    def invoke(
        self,
        event: Any = None,
        *,
        request_id: str | None = None,
        timeout: float | None = None,
        signature: str | None = None,
        trace_id: str | None = None,
    ) -> Invocation:
        """Invoke with a raw event: a JSON value (default ``{}``), or ``bytes`` sent as they
        are (a body that is not JSON gives ``Runtime.UnmarshalError``, as on Lambda)."""
        if event is None:
            event = {}
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        return self._run(body, request_id, timeout, signature, trace_id)

    def cloudevent(
        self,
        data: Any = None,
        *,
        type: str = "com.example.test",
        source: str = "/ort/testing",
        id: str | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
        **attributes: Any,
    ) -> Invocation:
        """Invoke with a CloudEvent (structured mode); the handler receives it as a CloudEvent
        whatever the function's signature, as the gateway hands one over. ``bytes`` data go
        as ``data_base64``."""
        import base64

        event: dict[str, Any] = {
            "specversion": "1.0",
            "id": id or str(uuid.uuid4()),
            "source": source,
            "type": type,
            **attributes,
        }
        if isinstance(data, bytes):
            event["data_base64"] = base64.b64encode(data).decode()
            event.setdefault("datacontenttype", "application/octet-stream")
        elif data is not None:
            event["data"] = data
            event.setdefault("datacontenttype", "application/json")
        body = json.dumps(event).encode()
        return self._run(body, request_id, timeout, "cloudevent", None)

    def http(
        self,
        method: str = "GET",
        path: str = "/",
        *,
        query: str | Mapping[str, str] = "",
        headers: Mapping[str, str] | None = None,
        body: bytes | str = b"",
        json_body: Any = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> HTTPResponse:
        """Invoke with an HTTP request, as ``ort serve`` turns it into an event (Scaleway's,
        docs/gateway.md), and shape the answer into the HTTP response the gateway sends."""
        from urllib.parse import urlencode

        from ort_core.gateway.http_event import request_event, response_parts
        from ort_core.pipeline import Decoded
        from ort_core.signatures import http_answer

        lowered = {name.lower(): value for name, value in (headers or {}).items()}
        if json_body is not None:
            body = json.dumps(json_body)
            lowered.setdefault("content-type", "application/json")
        raw = body.encode() if isinstance(body, str) else body
        query_bytes = (query if isinstance(query, str) else urlencode(query)).encode()
        event = request_event(method.upper(), path, query_bytes, lowered, raw)
        signature = None
        carries = "ce-specversion" in lowered or lowered.get("content-type", "").startswith(
            "application/cloudevents+json"
        )
        if self.config.signature == "raw" and carries:
            signature = "cloudevent"  # a CloudEvent arrives as that CloudEvent
        invocation = self._run(Decoded(event), request_id, timeout, signature, None)
        if invocation.error is not None:
            status = {"Sandbox.Timedout": 504, "Runtime.ExitError": 502}.get(
                invocation.error.error_type, 500
            )
            error = {"errorType": invocation.error.error_type}
            error["errorMessage"] = invocation.error.message
            error["requestId"] = invocation.request_id
            content = json.dumps(error).encode()
            return HTTPResponse(status, {"content-type": "application/json"}, content, invocation)
        assert invocation.body is not None
        try:
            status, pairs, payload = response_parts(http_answer(json.loads(invocation.body)))
        except (ValueError, TypeError) as exc:
            message = f"the function's answer is not an HTTP response: {exc}"
            content = json.dumps({"errorType": "Gateway.BadAnswer", "errorMessage": message})
            return HTTPResponse(502, {}, content.encode(), invocation)
        response_headers = {name.decode().lower(): value.decode() for name, value in pairs}
        response_headers.setdefault("access-control-allow-origin", "*")
        return HTTPResponse(status, response_headers, payload, invocation)

    def _run(
        self,
        body: Any,
        request_id: str | None,
        timeout: float | None,
        signature: str | None,
        trace_id: str | None,
    ) -> Invocation:
        from ort_core.context import Context
        from ort_core.errors import FunctionError

        seconds = self.timeout if timeout is None else timeout
        context = Context(
            request_id or str(uuid.uuid4()),
            int(time.time() * 1000 + seconds * 1000),
            self.config,
            invoked_function_arn=(
                f"arn:aws:lambda:{self.config.region}:{ACCOUNT_ID}:function:"
                f"{self.config.function_name}"
            ),
            trace_id=trace_id,
        )
        if signature is not None:
            context.signature = signature
        first = len(self.calls)
        answer: bytes | None = None
        error: FunctionError | None = None
        with self._environment:
            try:
                answer = self.pipeline.invoke(body, context)
            except FunctionError as raised:
                error = raised
            self.pipeline.answered(context)
        return Invocation(context, answer, error, self.calls[first:])

    def close(self) -> None:
        """End the sandbox: ``on_shutdown`` hooks, then the bridge and its worker stop."""
        if self._closed:
            return
        self._closed = True
        with self._environment:
            self.pipeline.close()
        _forget_handler_modules(str(self.task_root), self._modules_before, self._path_before)


def _forget_handler_modules(root: str, modules_before: set[str], path_before: list[str]) -> None:
    """Undo what a handler run in this interpreter (ort-python in process) left behind: the
    task root on ``sys.path`` and the modules imported from it since the function started."""
    if root not in path_before:
        while root in sys.path:
            sys.path.remove(root)
    for name, module in list(sys.modules.items()):
        if name in modules_before:
            continue
        files = [getattr(module, "__file__", None) or ""]
        files.extend(getattr(module, "__path__", None) or [])
        if any(str(file).startswith(root + os.sep) for file in files):
            del sys.modules[name]
    if "asyncio" in sys.modules:  # ...and the event loop it set for async handlers
        sys.modules["asyncio"].set_event_loop(None)


def _record(calls: list[HookCall]) -> Callable[[HookCall], None]:
    """An observer keeping each call, with copies of the events and responses as the plugin
    saw them (a later plugin may change the very same objects)."""
    import copy

    def record(call: HookCall) -> None:
        for name in ("event", "response"):
            if name in call.arguments:
                try:
                    call.arguments[name] = copy.deepcopy(call.arguments[name])
                except Exception:
                    pass
        calls.append(call)

    return record


def _plugin_selection(plugins: Sequence[object]) -> tuple[dict[str, str], list[object]]:
    """ORT_PLUGINS and ORT_DISABLE_PLUGINS for the named distributions, and the objects to
    register as they are; nothing installed loads unless named."""
    names = [plugin for plugin in plugins if isinstance(plugin, str)]
    objects = [plugin for plugin in plugins if not isinstance(plugin, str)]
    distributions = [name for name in names if name not in _BUILT_IN]
    blocked = [name for name in _BUILT_IN if name not in names]
    env = {"ORT_PLUGINS": ",".join(distributions)}
    if blocked:
        env["ORT_DISABLE_PLUGINS"] = ",".join(blocked)
    return env, objects


@pytest.fixture
def ort_function(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Function]]:
    """Start functions through ORT's pipeline: ``ort_function(files, handler=..., plugins=...)``.

    - ``files``: ``{"app.py": source}`` written (dedented) into a fresh task root, or
      ``task_root=`` an existing folder;
    - ``plugins``: distribution names (``"ort-python"``, as ``ORT_PLUGINS`` takes them; the
      built-in ``"executable"`` and ``"scaleway"``) and plugin objects (modules, instances)
      registered as they are. Nothing else loads: not even what is installed;
    - ``language``, ``signature`` (default ``raw``; ``cloudevent`` is Lambda's default),
      ``timeout`` (seconds, default 30), ``env`` (more variables: ``SLSMIDDLEWARES``...).

    Init failures raise ``FunctionError`` (``pytest.raises``). Every function is closed at the
    end of the test (``on_shutdown``, workers stopped).
    """
    from ort_core.config import FunctionConfig, with_lambda_defaults
    from ort_core.startup import start_function

    started: list[Function] = []

    def start(
        files: Mapping[str, str | bytes] | None = None,
        *,
        handler: str,
        plugins: Sequence[object] = (),
        task_root: str | Path | None = None,
        language: str | None = None,
        signature: str = "raw",
        timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
    ) -> Function:
        if isinstance(plugins, str):
            plugins = [plugins]
        root = Path(task_root) if task_root is not None else tmp_path_factory.mktemp("function")
        _write_files(root, files)
        selection, objects = _plugin_selection(plugins)
        variables = {
            **_outside_environ(),
            "_HANDLER": handler,
            "LAMBDA_TASK_ROOT": str(root),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(timeout),
            "ORT_SIGNATURE": signature,
            **selection,
            **({"ORT_LANGUAGE": language} if language else {}),
            **(env or {}),
        }
        environment = _Environment(with_lambda_defaults(variables))
        config = FunctionConfig.from_environ(environment.env, handler=handler)
        calls: list[HookCall] = []
        modules_before, path_before = set(sys.modules), list(sys.path)
        with environment:
            try:
                pipeline = start_function(
                    config, environment.env, extra_plugins=objects, observer=_record(calls)
                )
            except BaseException:
                _forget_handler_modules(str(root), modules_before, path_before)
                raise
        function = Function(pipeline, config, environment, calls, timeout)
        function._modules_before, function._path_before = modules_before, path_before
        started.append(function)
        return function

    yield start
    for function in reversed(started):
        function.close()


class InvokeResponse:
    """The emulator's HTTP answer to one invocation."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def failed(self) -> bool:
        """True for a function error (``X-Amz-Function-Error``), as Lambda's Invoke says."""
        return "x-amz-function-error" in self.headers

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"InvokeResponse({self.status}, {self.body[:200]!r})"


class _Lines:
    """A thread-safe text sink for the emulator's START/END/REPORT lines."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def getvalue(self) -> str:
        with self._lock:
            return "".join(self._parts)


class EmulatedFunction:
    """A function behind the embedded emulator: POST events as AWS's emulator takes them."""

    INVOKE_PATH = "/2015-03-31/functions/function/invocations"

    def __init__(self, emulator: Any, lines: _Lines, timeout: float) -> None:
        self.emulator = emulator
        self.port: int = emulator.port
        self.url = f"http://127.0.0.1:{self.port}{self.INVOKE_PATH}"
        self.timeout = timeout
        self._lines = lines
        self._thread = threading.Thread(target=emulator.serve_forever, daemon=True)
        self._thread.start()

    def invoke(
        self,
        event: Any = None,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> InvokeResponse:
        """POST one event (a JSON value, default ``{}``; or ``body`` bytes as they are)."""
        import http.client

        payload = body if body is not None else json.dumps({} if event is None else event).encode()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout + 30)
        try:
            connection.request("POST", self.INVOKE_PATH, payload, dict(headers or {}))
            response = connection.getresponse()
            answer = response.read()
            names = {name.lower(): value for name, value in response.getheaders()}
            return InvokeResponse(response.status, names, answer)
        finally:
            connection.close()

    @property
    def log(self) -> str:
        """The emulator's START, END and REPORT lines so far."""
        return self._lines.getvalue()

    def report_lines(self) -> list[str]:
        return [line for line in self.log.splitlines() if line.startswith("REPORT RequestId: ")]

    def close(self) -> None:
        self.emulator.server.shutdown()  # serve_forever returns, then closes the sandbox
        self._thread.join(timeout=15)


@pytest.fixture
def ort_emulator(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., EmulatedFunction]]:
    """Start the embedded emulator (``ort emulate``) on 127.0.0.1 and a free port:
    ``ort_emulator(files, handler=..., plugins=[...])``.

    The sandbox runs ``command`` (default ORT's own bootstrap, in this interpreter), with
    ``LAMBDA_TASK_ROOT`` the task root and ``ORT_PLUGINS`` the distributions named in
    ``plugins`` (installed ones: the runtime is another process). ``timeout`` is the
    function's, in seconds (default 30); ``env`` adds variables.
    """
    from ort_core.emulator import Emulator

    started: list[EmulatedFunction] = []

    def start(
        files: Mapping[str, str | bytes] | None = None,
        *,
        handler: str | None = None,
        plugins: Sequence[str] = (),
        task_root: str | Path | None = None,
        command: Sequence[str] | None = None,
        language: str | None = None,
        signature: str = "raw",
        timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
    ) -> EmulatedFunction:
        if isinstance(plugins, str):
            plugins = [plugins]
        if not all(isinstance(plugin, str) for plugin in plugins):
            raise TypeError("ort_emulator takes distribution names: the runtime is a process")
        root = Path(task_root) if task_root is not None else tmp_path_factory.mktemp("function")
        _write_files(root, files)
        selection, _ = _plugin_selection(plugins)
        variables = {
            **_outside_environ(),
            "LAMBDA_TASK_ROOT": str(root),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(timeout),
            "ORT_SIGNATURE": signature,
            **selection,
            **({"_HANDLER": handler} if handler else {}),
            **({"ORT_LANGUAGE": language} if language else {}),
            **(env or {}),
        }
        lines = _Lines()
        runtime = list(command or [sys.executable, "-m", "ort_core", "bootstrap"])
        emulator = Emulator(runtime, variables, host="127.0.0.1", port=0, log=lines)
        function = EmulatedFunction(emulator, lines, timeout)
        started.append(function)
        return function

    yield start
    for function in reversed(started):
        function.close()
