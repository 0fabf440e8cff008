"""One language worker process: spawned, connected on its own Unix socket, logged, stopped.

The channel is a Unix socket that ORT listens on and names in ``ORT_WORKER_SOCKET``, never the
worker's stdout or stderr: those are the function's log, forwarded line by line and tagged
with the request id in flight.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

from ort_core.errors import FunctionError
from ort_core.workers.output import StreamLog
from ort_core.workers.protocol import ProtocolError, read_message, write_message

if TYPE_CHECKING:
    from ort_core.workers.prelaunch import EarlyProcess

_sockets = itertools.count()
SPANS_WAIT_S = 2.0  # for a worker's spans after its result: it sends them at once


class WorkerExited(Exception):
    """The worker ended (or broke the protocol) while ORT waited on it."""


Command = Sequence[str] | Callable[[str], Sequence[str]]


class Worker:
    """A started worker. ``wait_ready`` raises FunctionError with the worker's init error.

    ``command`` is the argument list, or a function of the socket path that returns it (for
    workers whose sandbox must name the socket, such as Deno's ``--allow-net=unix:PATH``).
    """

    def __init__(
        self,
        command: Command,
        env: Mapping[str, str],
        cwd: str | None = None,
        log_name: str = "worker",
        early: EarlyProcess | None = None,
    ) -> None:
        self.log = logging.getLogger(log_name)
        self.channel: socket.socket | None = None
        self._killed = False
        self._reader: IO[bytes] | None = None
        self._spans_into: list[Any] | None = None  # a ``spans`` message is due, for this list
        if early is not None:  # spawned first thing by ort bootstrap: see adopt()
            self.socket_path = early.socket_path
            self.command = list(early.args)
            self._listener = socket.socket(fileno=early.listener.detach())
            early.stdout = open(early.stdout_fd, "rb")
            early.stderr = open(early.stderr_fd, "rb")
            self.process: subprocess.Popen[bytes] | EarlyProcess = early
            self._stdout_log = StreamLog(early.stdout, self.log, logging.INFO)
            self._stderr_log = StreamLog(early.stderr, self.log, logging.ERROR, keep=20)
            return
        from ort_core.workers.private import private_directory

        self.socket_path = os.path.join(private_directory(), f"worker-{next(_sockets)}.sock")
        self.command = list(command(self.socket_path) if callable(command) else command)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.socket_path)
        os.chmod(self.socket_path, 0o600)
        self._listener.listen(1)
        try:
            self.process = subprocess.Popen(
                self.command,
                env={**env, "ORT_WORKER_SOCKET": self.socket_path},
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )  # in ORT's process group: whoever stops ORT's group stops its workers too
        except OSError as exc:
            self._close_listener()
            raise FunctionError(
                "Runtime.InvalidEntrypoint", f"cannot start {self.command[0]!r}: {exc}"
            ) from None
        assert self.process.stdout is not None and self.process.stderr is not None
        self._stdout_log = StreamLog(self.process.stdout, self.log, logging.INFO)
        self._stderr_log = StreamLog(self.process.stderr, self.log, logging.ERROR, keep=20)

    @classmethod
    def adopt(cls, early: EarlyProcess, log_name: str = "worker") -> Worker:
        """The worker ``ort bootstrap`` spawned before ORT's imports, as a Worker."""
        return cls((), {}, log_name=log_name, early=early)

    # -- lifecycle -----------------------------------------------------------------------

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Accept the worker's connection and its first message: ``ready`` or ``init_error``."""
        deadline = time.monotonic() + timeout
        try:
            while self.channel is None:
                if self.process.poll() is not None:
                    raise self._init_failure(f"exited with {self.exit_description()}")
                if time.monotonic() > deadline:
                    raise self._init_failure(f"did not connect within {timeout:.0f} s")
                if select.select([self._listener], [], [], 0.05)[0]:
                    self.channel, _ = self._listener.accept()
            self._close_listener()
            self.channel.settimeout(max(0.0, deadline - time.monotonic()))
            self._reader = self.channel.makefile("rb")
            try:
                header, body = read_message(self._reader)
            except (ProtocolError, OSError) as exc:
                self.process.poll()
                raise self._init_failure(f"{exc} ({self.exit_description()})") from None
            self.channel.settimeout(None)
        except FunctionError:
            self.stop()
            raise
        if header["type"] == "init_error":
            self.stop()
            raise error_from_body(body, "Runtime.InitError")
        if header["type"] != "ready":
            self.stop()
            raise self._init_failure(f"sent {header['type']!r} before 'ready'")

    def invoke(self, header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        """One request and its answer; WorkerExited when the worker ends meanwhile."""
        if self.channel is None or self._reader is None:
            raise WorkerExited("the worker is not connected")
        if self._spans_into is not None:  # nobody asked for the last invocation's spans
            self.receive_spans()
        try:
            write_message(self.channel, header, body)
            answer = read_message(self._reader)
            self._drain_logs()  # what it wrote for this request, tagged with its id
            return answer
        except (ProtocolError, OSError) as exc:
            if self._killed:  # cut at its deadline: the timeout error must not wait for it
                raise WorkerExited("killed at the deadline") from None
            try:
                self.process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
            self._drain_logs()
            raise WorkerExited(
                self.exit_description() if self.process.returncode is not None else str(exc)
            ) from None

    def expect_spans(self, into: list[Any]) -> None:
        """The last ``result`` said a ``spans`` message follows it: ``receive_spans`` reads
        it into ``into``, after the answer, or the next ``invoke`` does."""
        self._spans_into = into

    def receive_spans(self) -> None:
        """Read the ``spans`` message due, if any. The worker sends it right after its
        result; one that sends something else, or nothing within ``SPANS_WAIT_S``, is killed
        (the next invocation starts a fresh one): its spans are lost, never an answer."""
        into, self._spans_into = self._spans_into, None
        if into is None or self.channel is None or self._reader is None:
            return
        try:
            self.channel.settimeout(SPANS_WAIT_S)
            header, body = read_message(self._reader)
            self.channel.settimeout(None)
            if header["type"] != "spans":
                raise ProtocolError(f"sent {header['type']!r} where its spans were due")
            spans = json.loads(body)
        except (ProtocolError, OSError, ValueError) as exc:
            if not self._killed:
                self.log.warning("the worker's spans are lost (%s): stopping it", exc)
                self.kill()
            return
        if isinstance(spans, list):
            into.extend(spans)

    @property
    def alive(self) -> bool:
        """Connected, running and not killed (a killed process may not have exited yet)."""
        return self.channel is not None and not self._killed and self.process.poll() is None

    def exit_description(self) -> str:
        code = self.process.returncode
        if code is None:
            return "still running"
        if code < 0:
            return f"signal: {signal.Signals(-code).name.lower().removeprefix('sig')}"
        return f"exit status {code}"

    def kill(self) -> None:
        """SIGKILL it now, from any thread; an ``invoke`` waiting on it raises WorkerExited.
        ``stop`` still has to reap it."""
        self._killed = True
        if self.process.poll() is None:
            self.process.kill()
        if self.channel is not None:
            try:
                self.channel.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self, grace: float = 1.0) -> None:
        """SIGTERM the worker, SIGKILL it after ``grace``; reap it and close every descriptor.

        Safe from another thread while ``invoke`` waits: shutting the socket down first
        releases that wait.
        """
        self._close_listener()
        if self.channel is not None:
            try:
                self.channel.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._reader is not None:
            self._reader.close()
        if self.channel is not None:
            self.channel.close()
        self._stdout_log.close(timeout=1)
        self._stderr_log.close(timeout=1)

    # -- internals -----------------------------------------------------------------------

    def _drain_logs(self) -> None:
        self._stdout_log.drain()
        self._stderr_log.drain()

    def _init_failure(self, what: str) -> FunctionError:
        for log in (self._stdout_log, self._stderr_log):
            log.thread.join(timeout=0.2)
            log.drain()
        tail = "\n".join(self._stderr_log.tail[-10:])
        return FunctionError(
            "Runtime.ExitError" if self.process.returncode is not None else "Runtime.InitError",
            f"the {self.log.name} worker {what}"
            + (f"; its stderr ends with:\n{tail}" if tail else ""),
        )

    def _close_listener(self) -> None:
        if self._listener.fileno() != -1:
            self._listener.close()
            try:
                os.unlink(self.socket_path)
            except FileNotFoundError:
                pass


def error_from_body(body: bytes, default_type: str = "Error") -> FunctionError:
    """The FunctionError a worker's ``{"errorType", "errorMessage", "stackTrace"}`` describes."""
    try:
        error = json.loads(body)
    except ValueError:
        return FunctionError(default_type, body[:2000].decode(errors="replace"))
    if not isinstance(error, dict):
        return FunctionError(default_type, str(error))
    trace = error.get("stackTrace") or []
    return FunctionError(
        str(error.get("errorType") or default_type),
        str(error.get("errorMessage") or ""),
        [str(line) for line in trace] if isinstance(trace, list) else [str(trace)],
    )
