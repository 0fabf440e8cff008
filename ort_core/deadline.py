"""A watchdog that acts a little before an invocation's deadline, while the handler still runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Watchdog:
    """One daemon thread, armed per invocation; arming and disarming cost a lock each.

    The thread starts on first use, so a function that never sees a deadline never pays
    for it. It is woken only when a deadline comes earlier than the one it sleeps until:
    invocations that end in time cost no thread switch.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._armed: tuple[float, Callable[[], None]] | None = None
        self._firing = False
        self._wake_at: float | None = None  # when the thread wakes by itself; None: never
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the watchdog thread in ``seconds`` unless disarmed first."""
        fire_at = time.monotonic() + seconds
        with self._condition:
            self._armed = (fire_at, callback)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ort-watchdog", daemon=True)
                self._thread.start()
            elif self._wake_at is None or fire_at < self._wake_at:
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
                    self._wake_at = None
                    self._condition.wait()
                fire_at, callback = self._armed
                left = fire_at - time.monotonic()
                if left > 0:
                    self._wake_at = fire_at
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
