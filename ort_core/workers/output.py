"""A child process's output pipe, logged line by line: workers' stdout and stderr.

Imported only where a worker runs (:mod:`ort_core.workers.process`), not on every cold start.
"""

from __future__ import annotations

import logging
import os
import select
import threading
from typing import IO

from ort_core.logs import MAX_LINE, log_line, utf8_cut


class StreamLog:
    """Logs a child's output pipe line by line from a thread of its own, until end of file.

    Lines longer than ``MAX_LINE`` bytes are logged in pieces. ``tail`` keeps the last
    ``keep`` lines (for error messages). ``drain`` logs, on the caller's thread, what the
    pipe already holds: call it once the child has answered, so that everything it wrote
    for that request carries that request's id.
    """

    def __init__(self, stream: IO[bytes], log: logging.Logger, level: int, keep: int = 0) -> None:
        self.stream = stream
        self.log = log
        self.level = level
        self.keep = keep
        self.tail: list[str] = []
        self._fd = stream.fileno()
        self._held = b""
        self._closed = False
        self._lock = threading.Lock()
        os.set_blocking(self._fd, False)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def drain(self, budget: int = 4 * 1024 * 1024) -> None:
        """Log what the pipe holds now (at most ``budget`` bytes: a child that never stops
        writing cannot hold the caller up)."""
        with self._lock:
            while budget > 0 and not self._closed:
                read = self._read()
                if read <= 0:
                    break
                budget -= read

    def close(self, timeout: float = 1.0) -> None:
        """Wait up to ``timeout`` for end of file (the child's last lines), then stop
        reading and close the pipe."""
        self.thread.join(timeout)
        with self._lock:
            self._closed = True
            self.stream.close()

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        while True:
            try:
                poller.poll()
            except OSError:
                pass
            with self._lock:
                if self._closed or self._read() < 0:
                    break

    def _read(self) -> int:
        """One read (the caller holds the lock): bytes read, 0 if none now, -1 at the end."""
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return 0
        except OSError:
            data = b""
        if not data:
            if self._held:
                self._line(self._held)
                self._held = b""
            return -1
        held = self._held + data if self._held else data
        start = 0
        while True:
            end = held.find(b"\n", start)
            if end < 0:
                break
            self._line(held[start:end])
            start = end + 1
        while len(held) - start > MAX_LINE:
            cut = utf8_cut(held, start + MAX_LINE)
            self._line(held[start:cut])
            start = cut
        self._held = held[start:]
        return len(data)

    def _line(self, raw: bytes) -> None:
        line = raw.decode(errors="replace")
        if self.keep:
            self.tail.append(line)
            del self.tail[: -self.keep]
        log_line(self.log, self.level, line)
