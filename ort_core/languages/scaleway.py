"""Scaleway sub-runtimes: ORT plays the part of Scaleway's core runtime.

Once per sandbox ORT starts ``$SCW_RUNTIME_BINARY $SCW_RUNTIME_BRIDGE`` (or
``$SCW_HANDLER_PATH`` itself when ``SCW_HANDLER_IS_BINARY=true``), an HTTP server listening on
``$SCW_UPSTREAM_PORT``, and for each event POSTs ``{"event", "context", "handlerPath",
"handlerName"}`` to ``http://$SCW_UPSTREAM_HOST:$SCW_UPSTREAM_PORT/``, retrying while it
boots. Claimed for language ``scaleway``, or with no language when ``SCW_RUNTIME_BINARY`` is
set (or ``SCW_HANDLER_IS_BINARY=true``). docs/languages.md has the whole contract.

Imported at every cold start: subprocess, threading and http.client load only when a
Scaleway function starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ort_core.errors import FunctionError
from ort_core.plugins import hookimpl

if TYPE_CHECKING:
    import http.client
    import subprocess
    import threading

    from ort_core.config import FunctionConfig
    from ort_core.context import Context

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8081
BOOT_TIMEOUT = 10.0  # seconds a sub-runtime has to listen, as Scaleway's 200 tries x 50 ms
RETRY_INTERVAL = 0.05
STOP_GRACE = 1.0  # seconds between SIGTERM and SIGKILL
LOG_NAME = "scaleway"


@hookimpl
def launch_language(config: FunctionConfig) -> ScalewayBridge | None:
    env = os.environ
    if config.language == "scaleway" or (
        config.language is None
        and (env.get("SCW_RUNTIME_BINARY") or env.get("SCW_HANDLER_IS_BINARY") == "true")
    ):
        return ScalewayBridge(config, env)
    return None


def upstream(env: Mapping[str, str]) -> tuple[str, int]:
    """(host, port) of the sub-runtime; the host may carry ``http://`` as Scaleway's default."""
    host = env.get("SCW_UPSTREAM_HOST") or DEFAULT_HOST
    host = host.removeprefix("http://").rstrip("/")
    port = env.get("SCW_UPSTREAM_PORT") or str(DEFAULT_PORT)
    try:
        return host, int(port)
    except ValueError:
        raise FunctionError(
            "Runtime.InvalidEntrypoint", f"SCW_UPSTREAM_PORT is not a port: {port!r}"
        ) from None


def handler_location(config: FunctionConfig, env: Mapping[str, str]) -> tuple[str, str]:
    """(handlerPath, handlerName): ``SCW_HANDLER_PATH`` and ``SCW_HANDLER_NAME`` when set,
    else from ``config.handler``.

    A handler naming a file under the task root is that file, with the name ``""``; else
    ``dir/file.fn`` is the name ``fn`` in ``dir/file``, or in the one ``dir/file.*`` there
    (``dir/file.js``; the first in sorted order if several). Paths are absolute, relative ones
    taken from the task root.
    """
    path, name = env.get("SCW_HANDLER_PATH"), env.get("SCW_HANDLER_NAME")
    if path:
        path = os.path.join(config.task_root, path)
    if not path or name is None:
        derived_path, derived_name = _split_handler(config)
        path = path or derived_path
        name = derived_name if name is None else name
    return os.path.abspath(path), name


def _split_handler(config: FunctionConfig) -> tuple[str, str]:
    whole = os.path.join(config.task_root, config.handler)
    directory, _, file_and_name = config.handler.rpartition("/")
    stem, dot, name = file_and_name.rpartition(".")
    if os.path.isfile(whole) or not (dot and stem):
        return whole, ""
    folder = os.path.join(config.task_root, directory)
    base = os.path.join(folder, stem)
    if not os.path.isfile(base):
        try:
            candidates = sorted(
                entry for entry in os.listdir(folder) if entry.startswith(stem + ".")
            )
        except OSError:
            candidates = []
        for candidate in candidates:
            if os.path.isfile(os.path.join(folder, candidate)):
                return os.path.join(folder, candidate), name
    return base, name


def scaleway_context(config: FunctionConfig, env: Mapping[str, str]) -> dict[str, Any]:
    """Scaleway's context: ``{memoryLimitInMb, functionName, functionVersion}``."""
    memory = env.get("SCW_APPLICATION_MEMORY") or config.memory_limit_in_mb or "128"
    try:
        memory_mb = int(memory)
    except ValueError:
        memory_mb = 128
    return {
        "memoryLimitInMb": memory_mb,
        "functionName": env.get("SCW_APPLICATION_NAME") or config.function_name or "",
        "functionVersion": env.get("SCW_APPLICATION_VERSION") or config.function_version or "",
    }


class ScalewayBridge:
    """One sub-runtime process per sandbox, spoken to over HTTP; restarted after it dies."""

    language = "scaleway"

    def __init__(
        self,
        config: FunctionConfig,
        environ: Mapping[str, str],
        boot_timeout: float = BOOT_TIMEOUT,
    ) -> None:
        self.config = config
        self.host, self.port = upstream(environ)
        self.handler_path, self.handler_name = handler_location(config, environ)
        self.context = scaleway_context(config, environ)
        self.is_binary = environ.get("SCW_HANDLER_IS_BINARY") == "true"
        self.runtime_binary = environ.get("SCW_RUNTIME_BINARY") or ""
        self.runtime_bridge = environ.get("SCW_RUNTIME_BRIDGE") or ""
        self.env = {
            **environ,
            "_HANDLER": config.handler,
            "LAMBDA_TASK_ROOT": config.task_root,
        }
        self.boot_timeout = boot_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.booted = False  # it has answered once: a refusal is no longer "still booting"
        self._connection: http.client.HTTPConnection | None = None
        self._log_threads: list[threading.Thread] = []
        self._stderr_tail: list[str] = []

    def command(self) -> list[str]:
        if self.is_binary:
            if not os.access(self.handler_path, os.X_OK):
                raise FunctionError(
                    "Runtime.InvalidEntrypoint",
                    f"SCW_HANDLER_IS_BINARY=true but {self.handler_path} is not an executable",
                )
            return [self.handler_path]
        if not self.runtime_binary:
            raise FunctionError(
                "Runtime.InvalidEntrypoint",
                "a Scaleway sub-runtime needs SCW_RUNTIME_BINARY (and SCW_RUNTIME_BRIDGE), "
                "or SCW_HANDLER_IS_BINARY=true",
            )
        binary = self.runtime_binary
        if "/" in binary:  # a path, from ORT's working directory; a bare name is found on PATH
            binary = os.path.abspath(binary)
        bridge = [os.path.abspath(self.runtime_bridge)] if self.runtime_bridge else []
        return [binary, *bridge]

    # -- the Bridge protocol -------------------------------------------------------------

    def start(self) -> None:
        """Start the sub-runtime; the first invocation waits for it to listen."""
        self._spawn()

    def invoke(self, event: Any, context: Context) -> Any:
        import json
        import time

        from ort_core.pipeline import JSONBytes
        from ort_core.workers.oneshot import json_answer

        started_ms = time.time() * 1000
        if self.process is None or self.process.poll() is not None:
            self._stop_process()
            self._spawn()  # the last one died: this invocation boots a fresh one
        event_json = event if isinstance(event, JSONBytes) else json.dumps(event).encode()
        body = b"".join(
            (
                b'{"event": ',
                event_json,
                b', "context": ',
                json.dumps(self.context).encode(),
                b', "handlerPath": ',
                json.dumps(self.handler_path).encode(),
                b', "handlerName": ',
                json.dumps(self.handler_name).encode(),
                b"}",
            )
        )
        status, payload = self._post(body, context, started_ms)
        if status >= 500:
            text = payload[-2000:].decode(errors="replace")
            raise FunctionError(
                "Runtime.SubRuntimeError",
                f"An error occurred during handler execution: HTTP {status}: {text}",
            )
        return json_answer(payload, trim_newline=False)

    def cancel(self) -> bool:
        """The invocation reached its deadline: kill the sub-runtime; the next event boots one."""
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
        return True

    def stop(self) -> None:
        self._stop_process()

    # -- the process ---------------------------------------------------------------------

    def _spawn(self) -> None:
        import subprocess
        import threading
        import time

        command = self.command()
        self._refuse_a_taken_port()
        try:
            self.process = subprocess.Popen(
                command,
                env=self.env,
                cwd=self.config.task_root,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )  # in ORT's process group: whoever stops ORT's group stops it too
        except OSError as exc:
            raise FunctionError(
                "Runtime.InvalidEntrypoint", f"cannot start {command[0]!r}: {exc}"
            ) from None
        self.started_at = time.monotonic()
        self.booted = False
        self._stderr_tail = []
        self._log_threads = [
            threading.Thread(target=self._forward, args=(stream, level), daemon=True)
            for stream, level in ((self.process.stdout, 20), (self.process.stderr, 40))
        ]  # stdout at INFO, stderr at ERROR, as workers' logs
        for thread in self._log_threads:
            thread.start()

    def _refuse_a_taken_port(self) -> None:
        """A server already there would get our events: fail init rather than talk to it."""
        import socket

        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                pass
        except OSError:
            return
        raise FunctionError(
            "Runtime.SubRuntimeError",
            f"{self.host}:{self.port} already accepts connections before the sub-runtime "
            "started: set SCW_UPSTREAM_PORT to a free port",
        )

    def _forward(self, stream: Any, level: int) -> None:
        import logging

        log = logging.getLogger(LOG_NAME)
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            if level >= logging.ERROR:
                self._stderr_tail = [*self._stderr_tail[-19:], line]
            log.log(level, "%s", line)

    def _stop_process(self) -> None:
        """SIGTERM, SIGKILL after STOP_GRACE; reap it, close the connection and the pipes."""
        import subprocess

        self._close_connection()
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for thread in self._log_threads:
            thread.join(timeout=1)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()

    def _exit_error(self, process: subprocess.Popen[bytes], context: Context) -> FunctionError:
        from ort_core.workers.oneshot import describe_exit

        for thread in self._log_threads:
            thread.join(timeout=0.5)
        tail = "\n".join(self._stderr_tail[-10:])
        error = FunctionError(
            "Runtime.ExitError",
            f"RequestId: {context.aws_request_id} Error: the sub-runtime exited with "
            f"{describe_exit(process.returncode)}"
            + (f"; its stderr ends with:\n{tail}" if tail else ""),
        )
        self._stop_process()
        return error

    # -- HTTP ----------------------------------------------------------------------------

    def _post(self, body: bytes, context: Context, started_ms: float) -> tuple[int, bytes]:
        """POST / and read the answer, retrying refused connections while the process boots."""
        import http.client
        import select
        import subprocess
        import time

        process = self.process
        assert process is not None
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        retried_stale = False
        while True:
            timeout = None
            if context.deadline_ms:
                timeout = context.deadline_ms / 1000 - time.time()
                if timeout <= 0:
                    raise self._timed_out(context, started_ms)
            connection = self._connection
            reused = connection is not None and connection.sock is not None
            if connection is None:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
                self._connection = connection
            connection.timeout = timeout
            if connection.sock is not None:
                if select.select([connection.sock], [], [], 0)[0]:  # closed while idle
                    connection.close()
                    reused = False
                else:
                    connection.sock.settimeout(timeout)
            try:
                connection.request("POST", "/", body, headers)
                response = connection.getresponse()
                payload = response.read()
            except ConnectionRefusedError:
                self._close_connection()
                if process.poll() is not None:
                    raise self._exit_error(process, context) from None
                if self.booted:
                    raise FunctionError(
                        "Runtime.SubRuntimeError",
                        f"the sub-runtime refused the connection to {self.host}:{self.port}",
                    ) from None
                if time.monotonic() - self.started_at > self.boot_timeout:
                    raise FunctionError(
                        "Runtime.SubRuntimeError",
                        f"the sub-runtime did not listen on {self.host}:{self.port} within "
                        f"{self.boot_timeout:.0f} s",
                    ) from None
                time.sleep(RETRY_INTERVAL)
                continue
            except TimeoutError:
                raise self._timed_out(context, started_ms) from None
            except (http.client.HTTPException, OSError) as exc:
                self._close_connection()
                try:
                    process.wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    pass
                if process.returncode is not None:
                    raise self._exit_error(process, context) from None
                if reused and not retried_stale:  # the server dropped a kept-alive connection
                    retried_stale = True
                    continue
                raise FunctionError(
                    "Runtime.SubRuntimeError",
                    f"the connection to the sub-runtime at {self.host}:{self.port} failed: "
                    f"{type(exc).__name__}: {exc}",
                ) from None
            if response.will_close:
                self._close_connection()
            self.booted = True
            return response.status, payload

    def _timed_out(self, context: Context, started_ms: float) -> FunctionError:
        """The deadline passed with the handler still running: end it, as Lambda would."""
        from ort_core.pipeline import timeout_error

        self._stop_process()
        return timeout_error(context, started_ms)

    def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
