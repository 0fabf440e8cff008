"""A watchdog that acts a little before an invocation's deadline, while the handler still runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Watchdog:
    """One daemon thread, armed per invocation; arming and disarming cost a lock each.

    The thread starts on first use, so a function that never sees a deadline never pays
    for it.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._armed: tuple[float, Callable[[], None]] | None = None
        self._firing = False
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the watchdog thread in ``seconds`` unless disarmed first."""
        with self._condition:
            self._armed = (time.monotonic() + seconds, callback)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ort-watchdog", daemon=True)
                self._thread.start()
            self._condition.notify()

    def disarm(self) -> bool:
        """Cancel the callback; False when it has already fired (this waits for it to end)."""
        with self._condition:
            if self._armed is not None:
                self._armed = None
                return True
            while self._firing:
                self._condition.wait()
            return False

    def _run(self) -> None:
        while True:
            with self._condition:
                while self._armed is None:
                    self._condition.wait()
                fire_at, callback = self._armed
                left = fire_at - time.monotonic()
                if left > 0:
                    self._condition.wait(left)
                    continue
                self._armed = None
                self._firing = True
            try:
                callback()
            finally:
                with self._condition:
                    self._firing = False
                    self._condition.notify_all()
