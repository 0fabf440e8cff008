"""One process per invocation: the event on stdin, the answer on stdout, stderr to the log.

Shared by everything that runs a program per event: executable and PHP handlers
(``ort_core.languages.executable``), and later Deno's per-invocation mode and executable
middlewares. The process leads its own process group, so a deadline, ``kill()`` or its own
exit ends whatever it started too; it is always reaped and every pipe is closed.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from ort_core.logs import MAX_LINE, log_line, utf8_cut
from ort_core.pipeline import JSONBytes

STDERR_TAIL = 2048  # bytes of stderr kept for error messages
MAX_OUTPUT = 64 * 1024 * 1024  # stdout above this is a broken program, not an answer
MAX_LOG_LINE = MAX_LINE  # a stderr "line" longer than this is logged in pieces
DRAIN_GRACE = 1.0  # seconds to read what is left once the process has ended
_CHUNK = 64 * 1024
_POLL = 0.05  # seconds between exit checks where pidfd_open is missing


class OneShotResult(NamedTuple):
    """How one run ended. ``ended_by`` is None when the process exited by itself, else
    ``"deadline"``, ``"output limit"`` or the reason given to :meth:`OneShot.kill`."""

    returncode: int
    stdout: bytes
    stderr_tail: str
    ended_by: str | None

    def exit_description(self) -> str:
        """``exit status 3`` or ``signal: kill``, as Lambda words a runtime's exit."""
        return describe_exit(self.returncode)


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name.lower().removeprefix("sig")
        except ValueError:
            name = str(-returncode)
        return f"signal: {name}"
    return f"exit status {returncode}"


class OneShot:
    """A started process. ``communicate`` feeds it, collects it and reaps it, once.

    Raises OSError at construction when the command cannot be started. ``kill`` may be
    called from any thread (a watchdog, a SIGTERM handler) while ``communicate`` runs.
    """

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        log: logging.Logger | str = "oneshot",
        stderr_level: int = logging.INFO,
        max_output: int = MAX_OUTPUT,
    ) -> None:
        self.log = log if isinstance(log, logging.Logger) else logging.getLogger(log)
        self.stderr_level = stderr_level
        self.max_output = max_output
        self._lock = threading.Lock()
        self._ended_by: str | None = None
        self._reaped = False
        self.process = subprocess.Popen(
            list(command),
            env=None if env is None else dict(env),
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: one signal ends all it started
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self, reason: str = "stop") -> None:
        """SIGKILL the process group now; ``communicate`` then returns with ``ended_by``."""
        with self._lock:
            if self._ended_by is None:
                self._ended_by = reason
            self._kill_group()

    def communicate(self, stdin: bytes = b"", timeout: float | None = None) -> OneShotResult:
        """Write ``stdin``, collect stdout, log stderr line by line, and reap the process.

        Past ``timeout`` seconds the process group is killed (``ended_by="deadline"``).
        When the process exits, anything left in its group is killed, and its pipes are read
        for at most ``DRAIN_GRACE`` seconds more (a process that escaped to another session
        may hold them open).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        process = self.process
        assert process.stdin and process.stdout and process.stderr
        selector = selectors.DefaultSelector()
        pidfd = _pidfd_open(process.pid)
        stdout: list[bytes] = []
        stdout_size = 0
        tail = bytearray()
        partial = bytearray()
        view = memoryview(stdin)
        written = 0
        exited_at: float | None = None
        try:
            if view:
                os.set_blocking(process.stdin.fileno(), False)
                selector.register(process.stdin, selectors.EVENT_WRITE)
            else:
                process.stdin.close()
            selector.register(process.stdout, selectors.EVENT_READ)
            selector.register(process.stderr, selectors.EVENT_READ)
            if pidfd is not None:
                selector.register(pidfd, selectors.EVENT_READ)
            reading = 2
            while True:
                if exited_at is None and self._exited():
                    exited_at = time.monotonic()
                    with self._lock:
                        self._kill_group()  # what it left behind; it is a zombie, not reaped
                    if pidfd is not None:
                        selector.unregister(pidfd)
                now = time.monotonic()
                if exited_at is not None and (reading == 0 or now - exited_at > DRAIN_GRACE):
                    break
                if exited_at is None and deadline is not None and now >= deadline:
                    self.kill("deadline")
                    deadline = None
                wait = _POLL if pidfd is None and exited_at is None else None
                limits = [deadline, None if exited_at is None else exited_at + DRAIN_GRACE]
                for limit in limits:
                    if limit is not None:
                        left = max(0.0, limit - now)
                        wait = left if wait is None else min(wait, left)
                for key, _ in selector.select(wait):
                    stream = key.fileobj
                    if stream is process.stdin:
                        try:
                            written += os.write(process.stdin.fileno(), view[written:][:_CHUNK])
                        except BlockingIOError:
                            continue
                        except OSError:  # EPIPE: it does not read its input; that is its choice
                            written = len(view)
                        if written >= len(view):
                            selector.unregister(process.stdin)
                            process.stdin.close()
                        continue
                    if stream is pidfd:
                        continue  # the exit check at the top of the loop handles it
                    data = os.read(stream.fileno(), _CHUNK)  # type: ignore[union-attr]
                    if not data:
                        selector.unregister(stream)
                        reading -= 1
                    elif stream is process.stdout:
                        stdout_size += len(data)
                        if stdout_size > self.max_output:
                            self.kill("output limit")
                            selector.unregister(stream)
                            reading -= 1
                        else:
                            stdout.append(data)
                    else:
                        tail += data
                        del tail[:-STDERR_TAIL]
                        partial += data
                        self._log_lines(partial)
            if partial:
                self._log(bytes(partial))
        finally:
            selector.close()
            if pidfd is not None:
                os.close(pidfd)
            self._finish()
        return OneShotResult(
            process.returncode, b"".join(stdout), tail.decode(errors="replace"), self._ended_by
        )

    # -- internals -----------------------------------------------------------------------

    def _exited(self) -> bool:
        """True once the process has ended; it stays a zombie (not reaped), so its pid and
        process group id cannot be reused while we may still signal them."""
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        try:
            return os.waitid(os.P_PID, self.process.pid, flags) is not None
        except ChildProcessError:
            return True

    def _kill_group(self) -> None:
        """Caller holds the lock. Does nothing once the process is reaped."""
        if self._reaped:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _finish(self) -> None:
        """Kill the group, reap the process and close every pipe: on every way out."""
        with self._lock:
            self._kill_group()
            self.process.wait()
            self._reaped = True
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:  # stdin's unwritten bytes meet a closed pipe
                    pass

    def _log_lines(self, partial: bytearray) -> None:
        while True:
            end = partial.find(b"\n")
            if end < 0:
                while len(partial) > MAX_LOG_LINE:
                    cut = utf8_cut(partial, MAX_LOG_LINE)
                    self._log(bytes(partial[:cut]))
                    del partial[:cut]
                return
            self._log(bytes(partial[:end]))
            del partial[: end + 1]

    def _log(self, line: bytes) -> None:
        log_line(self.log, self.stderr_level, line.decode(errors="replace").rstrip("\r"))


def run_once(
    command: Sequence[str],
    stdin: bytes = b"",
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
    log: logging.Logger | str = "oneshot",
) -> OneShotResult:
    """Start ``command``, feed it ``stdin`` and return how it ended (OSError if it cannot
    start). Use :class:`OneShot` directly when another thread may need to kill it."""
    return OneShot(command, env, cwd, log).communicate(stdin, timeout)


def json_answer(output: bytes, trim_newline: bool = True) -> JSONBytes:
    """A program's output as an answer: JSON text passes byte for byte, empty output is
    ``null``, anything else becomes a JSON string of the text (UTF-8, bad bytes replaced).
    ``trim_newline`` first drops one trailing newline, the one ``echo`` adds."""
    if trim_newline and output.endswith(b"\n"):
        output = output[:-1]
    if not output:
        return JSONBytes(b"null")
    try:
        json.loads(output, parse_constant=_not_json)
    except ValueError:  # UnicodeDecodeError is one too
        text = output.decode(errors="replace")
        return JSONBytes(json.dumps(text, ensure_ascii=False).encode())
    return JSONBytes(output)


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _pidfd_open(pid: int) -> int | None:
    """A descriptor readable when ``pid`` exits (Linux 5.3+), else None: poll instead."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return opener(pid)
    except OSError:
        return None
