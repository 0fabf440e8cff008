"""A middleware that stays running: one JSON line in on stdin, one JSON line out on stdout.

ORT starts ``NAME persistent`` once, at init, and writes one request per hook call::

    {"hook": "before", "requestId": "...", "deadlineMs": 0, "remainingMs": 0,
     "functionArn": "...", "traceId": "...", "payload": <the event or the response>}

and reads one answer line: ``{"payload": X}`` replaces the payload, ``{}`` keeps it and
``{"error": "message"}`` fails this invocation (the middleware stays). A middleware that exits,
writes anything else, or is still busy at the deadline is killed; the next call starts it again.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any

from ort_core.errors import FunctionError
from ort_core.middleware import failure
from ort_core.pipeline import encode_response
from ort_core.workers.oneshot import describe_exit
from ort_core.workers.output import StreamLog

if TYPE_CHECKING:
    from ort_core.context import Context

MAX_ANSWER = 64 * 1024 * 1024  # an answer line longer than this is a broken middleware
STDERR_LINES = 20


class PersistentMiddleware:
    """One long-running process, spoken to by one hook call at a time."""

    def __init__(self, name: str, path: str) -> None:
        self.name = name
        self.path = path
        self.step_names = (f"middleware:{name}:before", f"middleware:{name}:after")
        self.log = logging.getLogger(f"middleware:{name}")
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: StreamLog | None = None
        self._cancelled = False
        self._start("start")

    def before(self, event: Any, context: Context) -> Any:
        return self._call("before", event, context)

    def after(self, response: Any, context: Context) -> Any:
        return self._call("after", response, context)

    def cancel(self) -> bool:
        """Kill it mid-call (the invocation reached its deadline); the call then fails."""
        self._cancelled = True
        process = self._process
        if process is not None:
            _kill_group(process)
        return True

    def close(self) -> None:
        """End it: on the end of its input when idle; killed when a call is in flight (the
        sandbox is ending; this may run in a signal handler on the calling thread)."""
        if self._lock.acquire(blocking=False):
            try:
                self._stop(grace=1.0)
            finally:
                self._lock.release()
        else:
            self.cancel()

    # -- one call --------------------------------------------------------------------------

    def _call(self, hook: str, payload: Any, context: Context) -> Any:
        with self._lock:
            self._cancelled = False
            if self._process is None or self._process.poll() is not None:
                self._stop()
                self._start(hook)
            process = self._process
            assert process is not None and process.stdin and process.stdout
            try:
                process.stdin.write(_request(hook, payload, context))
                process.stdin.flush()
                line = process.stdout.readline(MAX_ANSWER)
            except (OSError, ValueError):  # a closed pipe: it has exited
                line = b""
            if self._stderr is not None:
                self._stderr.drain()  # what it logged for this call carries this request id
            if not line.endswith(b"\n"):
                self._stop()
                if self._cancelled:
                    what = "it was still running at the invocation's deadline"
                elif line:
                    what = f"its answer is longer than {MAX_ANSWER} bytes or unterminated"
                else:
                    what = f"it exited with {describe_exit(process.returncode)}"
                raise failure(self.name, hook, what, self._tail())
            try:
                answer = json.loads(line)
                if not isinstance(answer, dict):
                    raise ValueError("not an object")
            except ValueError:
                self._stop()
                excerpt = line[:200].decode(errors="replace").rstrip("\n")
                raise failure(
                    self.name,
                    hook,
                    'its answer is not {"payload": ...}, {} or {"error": ...}: ' + repr(excerpt),
                    self._tail(),
                ) from None
        if "error" in answer:
            raise failure(self.name, hook, str(answer["error"]))
        return answer["payload"] if "payload" in answer else payload

    # -- the process -----------------------------------------------------------------------

    def _start(self, hook: str) -> None:
        try:
            self._process = subprocess.Popen(
                [self.path, "persistent"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own group: one signal ends all it started
            )
        except OSError as exc:
            raise FunctionError(
                "Runtime.MiddlewareError",
                f"middleware {self.name!r} cannot start {self.path}: {exc.strerror}",
            ) from None
        assert self._process.stderr is not None
        self._stderr = StreamLog(self._process.stderr, self.log, logging.INFO, keep=STDERR_LINES)

    def _stop(self, grace: float = 0.0) -> None:
        """End the process and its group, reap it and close its pipes (the caller holds the
        lock). ``grace`` lets it finish on the end of its input first."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            try:
                process.stdin.close()
            except OSError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and not _exited(process):
            time.sleep(0.01)
        _kill_group(process)  # before reaping, while its group id cannot be reused
        process.wait()
        if self._stderr is not None:
            self._stderr.close(timeout=0.5)  # its last lines, then the pipe is closed
        if process.stdout is not None:
            process.stdout.close()

    def _tail(self) -> str:
        return "\n".join(self._stderr.tail) if self._stderr is not None else ""


def _request(hook: str, payload: Any, context: Context) -> bytes:
    """One request line; a payload's raw newlines can only be JSON whitespace, so they become
    spaces and the line stays one line."""
    head = {
        "hook": hook,
        "requestId": context.aws_request_id,
        "deadlineMs": context.deadline_ms,
        "remainingMs": context.get_remaining_time_in_millis() if context.deadline_ms else None,
        "functionArn": context.invoked_function_arn,
        "traceId": context.trace_id,
    }
    body = encode_response(payload).replace(b"\n", b" ")
    return json.dumps(head).encode()[:-1] + b', "payload": ' + body + b"}\n"


def _exited(process: subprocess.Popen[bytes]) -> bool:
    """True once it has ended, leaving it a zombie (not reaped)."""
    try:
        return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    if process.returncode is None:  # not reaped yet: the group id is still its own
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
