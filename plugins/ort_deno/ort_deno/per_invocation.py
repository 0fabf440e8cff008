"""ORT_DENO_MODE=per-invocation: a fresh Deno process for every event.

The contract with runner.ts: ORT writes one line of JSON (a marker new for each process, and
the context) then the event to the process's stdin; the process writes its log to stdout and
stderr, then, last on stdout, the marker, ``{"ok": bool, "length": N}`` (plus ``"spans"``
when a preload recorded some, as in the worker protocol's result) and N bytes of answer or
error JSON. A process that ends without writing the marker failed: ``Runtime.ExitError``.
The handler cannot know the marker, so nothing it prints can pass for the answer.

``start`` runs the runner once in check mode: it loads the handler, so a missing module or
export is an init error as in persistent mode, and Deno compiles the TypeScript into its
cache (DENO_DIR) before the first event rather than during it.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from typing import IO, Any

from ort_core import Context, FunctionConfig, FunctionError
from ort_core.logs import log_line
from ort_core.pipeline import JSONBytes
from ort_core.workers.bridge import context_header
from ort_core.workers.process import error_from_body
from ort_core.workers.protocol import event_bytes


class Run:
    """One Deno process: how it ended, and the answer it wrote, if any."""

    def __init__(self) -> None:
        self.answer: tuple[bool, bytes] | None = None
        self.spans: list[Any] | None = None  # what a preload recorded (ORT_PRELOAD)
        self.returncode: int | None = None
        self.timed_out = False
        self.stderr_tail: list[str] = []

    def exit_description(self) -> str:
        code = self.returncode
        if code is None:
            return "still running"
        if code < 0:
            return f"signal: {signal.Signals(-code).name.lower().removeprefix('sig')}"
        return f"exit status {code}"


class PerInvocationBridge:
    """Runs ``command`` (``deno run ... runner.ts``) once per event."""

    language = "deno"
    sends_event_bytes = True  # Context.event_body, when the front end hands it along

    def __init__(
        self,
        config: FunctionConfig,
        command: Sequence[str],
        env: Mapping[str, str] | None = None,
        init_timeout: float = 10.0,
    ) -> None:
        self.config = config
        self.command = list(command)
        self.env = {
            **os.environ,
            **(env or {}),
            "_HANDLER": config.handler,
            "LAMBDA_TASK_ROOT": config.task_root,
        }
        self.init_timeout = init_timeout
        self.log = logging.getLogger("deno")
        self._running: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        run = self._run({"check": True}, b"", self.init_timeout)
        if run.answer is None:
            tail = "\n".join(run.stderr_tail[-10:])
            what = (
                f"did not load the handler within {self.init_timeout:.0f} s"
                if run.timed_out
                else f"exited with {run.exit_description()}"
            )
            raise FunctionError(
                "Runtime.InitError" if run.timed_out else "Runtime.ExitError",
                f"the deno runner {what}" + (f"; its stderr ends with:\n{tail}" if tail else ""),
            )
        ok, body = run.answer
        if not ok:
            raise error_from_body(body, "Runtime.InitError")

    def invoke(self, event: Any, context: Context) -> Any:
        body = event_bytes(event, context)
        timeout = None
        if context.deadline_ms:
            timeout = max(0.0, context.deadline_ms / 1000 - time.time())
        started = time.monotonic()
        header = {"context": context_header(context), "signature": context.signature}
        run = self._run(header, body, timeout)
        if run.timed_out:
            raise FunctionError(
                "Sandbox.Timedout",
                f"{context.aws_request_id} Task timed out after "
                f"{time.monotonic() - started:.2f} seconds",
            )
        if run.answer is None:
            raise FunctionError(
                "Runtime.ExitError",
                f"RequestId: {context.aws_request_id} Error: Runtime exited with error: "
                f"{run.exit_description()}",
            )
        if run.spans is not None:
            context.worker_spans = run.spans
        ok, payload = run.answer
        if not ok:
            raise error_from_body(payload)
        return JSONBytes(payload)

    def cancel(self) -> bool:
        """The invocation reached its deadline: kill its process."""
        self.stop()
        return True

    def stop(self) -> None:
        """Kill the processes still running."""
        with self._lock:
            running = list(self._running)
        for process in running:
            if process.poll() is None:
                process.kill()

    # -- one process -----------------------------------------------------------------------

    def _run(self, header: dict[str, Any], body: bytes, timeout: float | None) -> Run:
        run = Run()
        marker = f"ort-result-{secrets.token_hex(16)}:"
        try:
            process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=self.config.task_root,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            raise FunctionError(
                "Runtime.InvalidEntrypoint", f"cannot start {self.command[0]!r}: {exc}"
            ) from None
        with self._lock:
            self._running.add(process)
        first_line = json.dumps({"marker": marker, **header}).encode() + b"\n"
        threads = [
            threading.Thread(target=self._feed, args=(process.stdin, first_line, body)),
            threading.Thread(target=self._read_stdout, args=(process.stdout, marker, run)),
            threading.Thread(target=self._read_stderr, args=(process.stderr, run)),
        ]
        for thread in threads:
            thread.daemon = True
            thread.start()
        try:
            run.returncode = process.wait(timeout)
        except subprocess.TimeoutExpired:
            run.timed_out = True
            process.kill()
            run.returncode = process.wait()
        finally:
            with self._lock:
                self._running.discard(process)
        for thread in threads:
            thread.join(timeout=5)  # a child of the handler's may still hold the pipes
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        return run

    @staticmethod
    def _feed(stream: IO[bytes], first_line: bytes, body: bytes) -> None:
        try:
            stream.write(first_line)
            stream.write(body)
            stream.close()
        except (OSError, ValueError):
            pass  # the process ended before reading it all: its exit says why

    def _read_stdout(self, stream: IO[bytes], marker: str, run: Run) -> None:
        tag = marker.encode()
        for raw in iter(stream.readline, b""):
            before, found, rest = raw.partition(tag)
            if before:
                log_line(self.log, logging.INFO, before.decode(errors="replace").rstrip("\n"))
            if not found:
                continue
            try:
                answer = json.loads(rest)
                length = int(answer["length"])
            except (ValueError, KeyError, TypeError):
                self.log.error("the deno runner wrote a malformed result header: %r", rest[:200])
                continue
            payload = stream.read(length)
            if len(payload) == length:
                run.answer = (bool(answer.get("ok")), payload)
                spans = answer.get("spans")
                run.spans = spans if isinstance(spans, list) else None

    def _read_stderr(self, stream: IO[bytes], run: Run) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            run.stderr_tail = [*run.stderr_tail[-19:], line]
            log_line(self.log, logging.ERROR, line)
