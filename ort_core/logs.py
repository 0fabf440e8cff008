"""The function's log, as Lambda writes it: whole lines, tagged with the request id.

``AWS_LAMBDA_LOG_FORMAT=Text`` (default): ``[LEVEL]\\t<time>Z\\t<request id>\\t<message>``;
``JSON``: one object a line with timestamp, level, message, logger and requestId.
``AWS_LAMBDA_LOG_LEVEL`` (TRACE, DEBUG, INFO, WARN, ERROR, FATAL) sets the root logger's level.

Every write to ORT's stdout and stderr goes through one lock and leaves as whole lines, each
with one ``os.write``: :func:`setup_function_logging` puts :class:`LineRaw` under
``sys.stdout`` and ``sys.stderr``, which holds an unfinished line until its newline comes,
and the root logger's handler writes each record whole, beside the text streams. A
``print`` and a record logged from another thread (a worker's output, forwarded by a
thread) can never share a line.

Other processes' output (workers, executables, middlewares) reaches the log through
:func:`log_line`: one record per line, at the stream's level or at the level the line's
mark names (docs/worker-protocol.md, "Logs"); :mod:`ort_core.workers.output` reads workers'
pipes. Import nothing heavy here: this module is on every cold start.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

MAX_LINE = 256 * 1024  # bytes of an unfinished line held before it is written as a line
TRACE = 5  # Lambda's TRACE, below Python's DEBUG
MARK = "\x1f"  # a line of a worker's output that starts with MARK and a letter has a level
MARK_LEVELS = {
    "T": TRACE,
    "D": logging.DEBUG,
    "I": logging.INFO,
    "W": logging.WARNING,
    "E": logging.ERROR,
    "F": logging.CRITICAL,
}
LEVELS = {
    "TRACE": TRACE,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "FATAL": logging.CRITICAL,
    "CRITICAL": logging.CRITICAL,
}

_request_id = ""  # the invocation in flight (the last one set, from any thread)
_this_thread = threading.local()  # per thread, for the gateway's concurrent invocations
_lock = threading.RLock()  # every write to ORT's stdout and stderr; reentrant for signals
_writers: list[LineWriter] = []
_every_line = True  # no AWS_LAMBDA_LOG_LEVEL: forwarded lines are logged whatever their level
_held: list[logging.LogRecord] | None = None  # lines that came before the log was set up
MAX_HELD = 10_000


def set_request_id(request_id: str) -> None:
    """The request id that tags log lines from now on. Unfinished lines of the previous
    invocation are written first, as lines of their own."""
    global _request_id
    for writer in _writers:
        try:
            writer.flush()
        except (OSError, ValueError):  # nobody reads the log any more: nothing to keep apart
            pass
    _request_id = _this_thread.request_id = request_id


# -- whole lines ------------------------------------------------------------------------------


class LineRaw(io.RawIOBase):
    """The bytes under ``sys.stdout`` or ``sys.stderr``, written to the descriptor only as
    whole lines, each with one ``os.write`` under the lock every writer shares.

    An unfinished line is held until its newline. It is written as a line of its own (a
    newline added, and a newline that comes next dropped, so a long ``print`` still gives one
    line) past ``MAX_LINE`` bytes, on ``flush()`` of the text stream, and when the next
    invocation starts.
    """

    def __init__(self, fd: int, name: Any) -> None:
        super().__init__()
        self.fd = fd
        self.name = name
        self.held = b""
        self._cut = False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def isatty(self) -> bool:
        return os.isatty(self.fd)

    def write(self, data: Any) -> int:
        data = bytes(data)
        size = len(data)
        with _lock:
            if self._cut:
                self._cut = False
                if data[:1] == b"\n":
                    data = data[1:]
            if self.held:
                data = self.held + data
                self.held = b""
            end = data.rfind(b"\n") + 1
            if end:
                _write_all(self.fd, data[:end] if end < len(data) else data)
                data = data[end:]
            if len(data) > MAX_LINE:
                _write_all(self.fd, data + b"\n")
                self._cut = True
            else:
                self.held = data
        return size

    def write_line(self, line: bytes) -> None:
        """Whole lines at once (a log record), whatever is held."""
        with _lock:
            _write_all(self.fd, line)

    def end_line(self) -> None:
        with _lock:
            if self.held:
                _write_all(self.fd, self.held + b"\n")
                self.held = b""
                self._cut = True


class LineWriter(io.TextIOWrapper):
    """``sys.stdout`` and ``sys.stderr``: Python's own text stream, over :class:`LineRaw`.
    ``flush()`` also writes the unfinished line, as a line of its own."""

    lines: LineRaw

    def flush(self) -> None:
        super().flush()
        self.lines.end_line()


def _write_all(fd: int, data: bytes) -> None:
    """The caller holds the lock."""
    written = os.write(fd, data)
    if written < len(data):
        rest = memoryview(data)[written:]
        while rest:
            rest = rest[os.write(fd, rest) :]


def _install(stream: Any) -> LineWriter | None:
    if isinstance(stream, LineWriter):
        return stream
    try:
        stream.flush()
        raw = LineRaw(stream.fileno(), getattr(stream, "name", None))
    except (AttributeError, OSError, ValueError):  # no descriptor under it: leave it alone
        return None
    writer = LineWriter(
        io.BufferedWriter(raw), encoding=stream.encoding, errors=stream.errors, line_buffering=True
    )
    writer.lines = raw
    _writers.append(writer)
    return writer


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.RLock()  # another thread may have held it at the fork
    for writer in _writers:
        writer.lines.held = b""


# -- the root logger --------------------------------------------------------------------------


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = getattr(_this_thread, "request_id", _request_id)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "timestamp": self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "requestId": getattr(record, "aws_request_id", ""),
        }
        if record.exc_info:
            line["stackTrace"] = self.formatException(record.exc_info).splitlines()
        return json.dumps(line)


class LineHandler(logging.Handler):
    """Each record as one write of whole lines, never inside a line of ``writer``'s."""

    def __init__(self, writer: LineWriter | None, stream: Any) -> None:
        super().__init__()
        self.writer = writer
        self.stream = stream  # without a writer (no descriptor), a plain stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            if self.writer is not None:
                self.writer.lines.write_line(line.encode(self.writer.encoding, "backslashreplace"))
            else:
                self.stream.write(line)
                self.stream.flush()
        except Exception:
            self.handleError(record)


def setup_function_logging(environ: Mapping[str, str]) -> None:
    """At cold start: whole-line ``sys.stdout`` and ``sys.stderr``, and the root logger
    writing to stdout in Lambda's format at ``AWS_LAMBDA_LOG_LEVEL`` (default INFO)."""
    global _every_line
    stdout = _install(sys.stdout)
    if stdout is not None:
        if sys.stderr is sys.stdout:  # `ort invoke`: the function's output goes to stderr
            sys.stdout = sys.stderr = stdout
        else:
            sys.stdout = stdout  # type: ignore[assignment]
            stderr = _install(sys.stderr)
            if stderr is not None:
                sys.stderr = stderr  # type: ignore[assignment]
    if _writers:
        os.register_at_fork(after_in_child=_after_fork_in_child)
    handler = LineHandler(stdout, sys.stdout)
    handler.addFilter(_RequestIdFilter())
    if environ.get("AWS_LAMBDA_LOG_FORMAT", "").upper() == "JSON":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(
                "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
                "%Y-%m-%dT%H:%M:%S",
            )
        )
    handler.formatter.converter = time.gmtime  # type: ignore[union-attr]
    logging.addLevelName(TRACE, "TRACE")
    root = logging.getLogger()
    root.addHandler(handler)
    level = LEVELS.get(environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper())
    root.setLevel(logging.INFO if level is None else level)
    _every_line = level is None
    _release_held_lines()


# -- other processes' output ------------------------------------------------------------------


def log_line(log: logging.Logger, level: int, line: str) -> None:
    """One line of another process's output, as a record of ``log`` at ``level``, or at the
    level its mark names (``MARK`` and a letter of ``MARK_LEVELS``; carriage returns in a
    marked line stand for newlines). Without ``AWS_LAMBDA_LOG_LEVEL`` every line is logged:
    the process applied the level it was given, if any."""
    if line[:1] == MARK:
        marked = MARK_LEVELS.get(line[1:2])
        if marked is not None:
            level = marked
            line = line[2:].replace("\r", "\n")
    if _held is not None:
        with _lock:
            if _held is not None:
                if len(_held) < MAX_HELD:
                    _held.append(log.makeRecord(log.name, level, "", 0, "%s", (line,), None))
                return
    if _every_line or log.isEnabledFor(level):
        log.handle(log.makeRecord(log.name, level, "", 0, "%s", (line,), None))


def hold_lines() -> None:
    """Keep the lines :func:`log_line` gets until :func:`setup_function_logging` (``ort
    bootstrap`` starts the worker first, and sets the log up while it boots)."""
    global _held
    if _held is None:
        _held = []


def _release_held_lines() -> None:
    """Log the held lines; lines that come meanwhile are held until their turn."""
    global _held
    while True:
        with _lock:
            held = _held
            _held = [] if held else None
        if not held:
            return
        for record in held:
            log = logging.getLogger(record.name)
            if _every_line or log.isEnabledFor(record.levelno):
                log.handle(record)


def utf8_cut(data: bytes | bytearray, at: int) -> int:
    """``at``, moved back to the start of the UTF-8 character it falls in."""
    for back in range(4):
        if at - back > 0 and data[at - back] & 0xC0 != 0x80:
            return at - back
    return at
