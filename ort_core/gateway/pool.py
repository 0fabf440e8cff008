"""Concurrency for the gateway: a pool of pipelines, each with its own worker and thread.

A pipeline runs one invocation at a time (its worker speaks one request at a time), so the
gateway keeps ``ORT_CONCURRENCY`` of them, each served by a thread of its own, and a bounded
line of requests waiting for one (``ORT_QUEUE_SIZE``); past that a request is refused at once
(429). A pipeline whose handler cannot be cut at its deadline (Python in ORT's own process)
answers the timeout from the watchdog and is replaced, its thread left to finish on its own.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ort_core.errors import FunctionError

if TYPE_CHECKING:
    from ort_core.context import Context
    from ort_core.pipeline import Decoded, Pipeline

log = logging.getLogger("ort.gateway")

# Starts a pipeline whose watchdog calls the given function when its handler cannot be cut.
PipelineStarter = Callable[[Callable[[FunctionError, "Context"], None]], "Pipeline"]


class Busy(Exception):
    """Every pipeline is busy and the line of waiting requests is full."""


class Slot:
    """One pipeline and the thread that runs its invocations, one at a time."""

    def __init__(self, start: PipelineStarter, name: str) -> None:
        self.stuck = False  # its handler overran and could not be cut: replace it
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._settle: Callable[[Any], None] | None = None
        self.pipeline = start(self._expired)
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def run(self, body: bytes | Decoded, context: Context, settle: Callable[[Any], None]) -> None:
        """Invoke on this slot's thread; ``settle`` gets the answer bytes or a FunctionError,
        once."""
        self._jobs.put((body, context, settle))

    def close(self) -> None:
        self._jobs.put(None)
        self.pipeline.close()

    def _serve(self) -> None:
        from ort_core.logs import set_request_id

        while (job := self._jobs.get()) is not None:
            body, context, settle = job
            self._settle = settle
            set_request_id(context.aws_request_id)
            try:
                outcome: Any = self.pipeline.invoke(body, context)
            except FunctionError as error:
                outcome = error
            except Exception as exc:
                outcome = FunctionError.from_exception(exc)
            self._answer(outcome)
            self.pipeline.answered(context)
            if self.stuck:  # the pool has replaced this slot: the handler returned at last
                self.pipeline.close()
                return

    def _expired(self, error: FunctionError, context: Context) -> None:
        """On the watchdog thread: the handler runs on and cannot be stopped."""
        self.stuck = True
        self._answer(error)

    def _answer(self, outcome: Any) -> None:
        settle, self._settle = self._settle, None
        if settle is not None:
            settle(outcome)


class Pool:
    """``size`` slots and a line of at most ``queue_limit`` waiting requests."""

    def __init__(self, start: PipelineStarter, size: int, queue_limit: int) -> None:
        self.start = start
        self.size = size
        self.queue_limit = queue_limit
        self._idle: list[Slot] = []
        self._waiting: deque[asyncio.Future[Slot]] = deque()
        self._count = 0
        self._closing = False

    def open(self) -> None:
        """Start every slot (their workers start side by side); FunctionError on init."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.size) as starting:
            futures = [starting.submit(self._new_slot) for _ in range(self.size)]
            errors = []
            for future in futures:
                try:
                    self._idle.append(future.result())
                except FunctionError as error:
                    errors.append(error)
        if errors:
            self.close()
            raise errors[0]

    @property
    def busy(self) -> int:
        return self.size - len(self._idle)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def invoke(self, body: bytes | Decoded, context: Context) -> bytes:
        """The answer's bytes; FunctionError for a failed invocation, Busy when full."""
        slot = await self._acquire()
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()

        def settle(outcome: Any) -> None:  # on the slot's thread or the watchdog's
            loop.call_soon_threadsafe(_resolve, answer, outcome)

        slot.run(body, context, settle)
        try:
            outcome = await asyncio.shield(answer)
        except asyncio.CancelledError:  # the caller went away: the slot is free once done
            answer.add_done_callback(lambda _: self._release(slot))
            raise
        self._release(slot)
        if isinstance(outcome, FunctionError):
            raise outcome
        return outcome

    def close(self) -> None:
        """Stop every idle slot; busy ones stop when they are released."""
        self._closing = True
        idle, self._idle = self._idle, []
        for slot in idle:
            slot.close()

    # -- slots ---------------------------------------------------------------------------

    def _new_slot(self) -> Slot:
        self._count += 1
        return Slot(self.start, f"ort-slot-{self._count}")

    async def _acquire(self) -> Slot:
        if self._idle:
            return self._idle.pop()
        if len(self._waiting) >= self.queue_limit:
            raise Busy
        turn: asyncio.Future[Slot] = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            return await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release(turn.result())  # handed over just as the caller went away
            else:
                self._waiting.remove(turn)
            raise

    def _release(self, slot: Slot) -> None:
        if slot.stuck:
            loop = asyncio.get_running_loop()
            loop.run_in_executor(None, self._replace, loop)
            return
        self._hand_over(slot)

    def _hand_over(self, slot: Slot) -> None:
        if self._closing:
            slot.close()
            return
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(slot)
                return
        self._idle.append(slot)

    def _replace(self, loop: asyncio.AbstractEventLoop) -> None:
        """On an executor thread: start a slot in place of a stuck one."""
        log.warning("a handler overran its deadline and could not be stopped: replacing it")
        try:
            fresh = self._new_slot()
        except FunctionError as error:
            log.error("could not replace the pipeline: %s: %s", error.error_type, error.message)
            loop.call_soon_threadsafe(self._shrink)
            return
        loop.call_soon_threadsafe(self._hand_over, fresh)

    def _shrink(self) -> None:
        self.size -= 1


def _resolve(future: asyncio.Future[Any], outcome: Any) -> None:
    if not future.done():
        future.set_result(outcome)
