"""A clock that moves only when the test says so.

Hand it to a runtime (`EmbeddedRuntime(app, settings, clock=clock)`, or `eventflow.testing.
embedded(app, clock=clock)`) and retry backoff, task and check timeouts, heartbeats and cron
schedules wait for `advance` instead of real time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

Quiet = Callable[[], bool]

#: 2026-01-01T00:00:00Z, where a ManualClock starts unless told otherwise.
DEFAULT_START = 1_767_225_600.0


class Timer:
    """A callback set for a time on a `ManualClock`; `cancel()` keeps it from firing."""

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.cancelled = False
        self._callback: Callable[[], None] | None = callback

    def cancel(self) -> None:
        self.cancelled = True
        self._callback = None

    def fire(self) -> None:
        callback, self._callback = self._callback, None
        if callback is not None and not self.cancelled:
            callback()


class ManualClock:
    """Wall time that stands still until `advance` moves it.

    `await clock.advance(seconds)` fires every timer, sleeper and timeout that falls due, in
    time order, each at its own time, and after each one lets the event loop carry out the work it
    set off before firing the next: a retry that fails again and asks for a later retry within
    the same advance is fired too. How far "the work it set off" goes is told by the quiet
    conditions added with `until_quiet` (the testing harnesses add their runtime's); without
    any, the loop only gets a few turns.

    A blocking body runs in a thread, outside the event loop, so it counts as waiting: an
    `advance` past its timeout times it out, whether or not its thread has run yet. Advance in
    steps shorter than the timeout, with `wait_idle` between them, to let such bodies finish.
    """

    def __init__(self, start: float | datetime = DEFAULT_START) -> None:
        self._now = start.timestamp() if isinstance(start, datetime) else float(start)
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._waiting: Counter[asyncio.Task[object]] = Counter()
        self._quiet: list[Quiet] = []

    # -- the Clock port ----------------------------------------------------------------------
    def time(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(when, callback)
        if when <= self._now:
            asyncio.get_running_loop().call_soon(timer.fire)
        else:
            heapq.heappush(self._heap, (when, next(self._order), timer))
        return timer

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not woken.done():
                woken.set_result(None)

        timer = self.call_at(self._now + seconds, wake)
        with self._waiting_here():
            try:
                await woken
            finally:
                timer.cancel()

    @asynccontextmanager
    async def timeout(self, seconds: float | None) -> AsyncIterator[object]:
        # asyncio's own timeout does the cancelling and the TimeoutError; this clock only
        # decides when: it moves that timeout's deadline to "now" once its own time has come.
        async with asyncio.timeout(None) as scope:
            timer: Timer | None = None
            if seconds is not None:
                loop = asyncio.get_running_loop()
                timer = self.call_at(self._now + seconds, lambda: scope.reschedule(loop.time()))
            try:
                with self._waiting_here():
                    yield scope
            finally:
                if timer is not None:
                    timer.cancel()

    # -- driving it ----------------------------------------------------------------------------
    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, firing what falls due in order; returns once the
        work the last of them set off is carried out."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        target = self._now + seconds
        await self.settle()
        while self._heap and self._heap[0][0] <= target:
            when, _, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            self._now = max(self._now, when)
            timer.fire()
            await self.settle()
        self._now = target
        await self.settle()

    async def advance_to(self, when: float | datetime) -> None:
        """`advance` up to an absolute time."""
        at = when.timestamp() if isinstance(when, datetime) else when
        await self.advance(max(0.0, at - self._now))

    def next_at(self) -> float | None:
        """When the next timer is due, if any is set."""
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def waiting(self, task: asyncio.Task[object]) -> bool:
        """True while `task` is inside a `sleep` or a `timeout` of this clock: left alone, it
        would wait for `advance` (or for something outside the event loop)."""
        return self._waiting[task] > 0

    def until_quiet(self, quiet: Quiet) -> Callable[[], None]:
        """`advance` waits for `quiet()` after each timer it fires; returns the undo."""
        self._quiet.append(quiet)
        return lambda: self._quiet.remove(quiet) if quiet in self._quiet else None

    async def settle(self, timeout: float = 30) -> None:
        """Let the event loop run until every quiet condition holds three turns in a row (work
        handed on by a callback starts on the next turn). Raises `TimeoutError` if that takes
        more than `timeout` real seconds: something waits for neither the clock nor an end."""
        calm = 0
        turns = 0
        try:
            async with asyncio.timeout(timeout):
                while calm < 3:
                    # A few turns on the loop alone, then let threads (SQLite, blocking bodies) run.
                    await asyncio.sleep(0 if turns < 20 else 0.001)
                    turns += 1
                    calm = calm + 1 if all(quiet() for quiet in self._quiet) else 0
        except TimeoutError:
            raise TimeoutError(f"not quiet after {timeout:g}s of real time") from None

    def _waiting_here(self) -> _Waiting:
        return _Waiting(self._waiting, asyncio.current_task())


class _Waiting:
    def __init__(self, counts: Counter[asyncio.Task[object]], task: asyncio.Task[object] | None):
        self.counts = counts
        self.task = task

    def __enter__(self) -> None:
        if self.task is not None:
            self.counts[self.task] += 1

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            self.counts[self.task] -= 1
            if self.counts[self.task] <= 0:
                del self.counts[self.task]
