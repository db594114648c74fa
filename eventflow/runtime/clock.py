"""The clock port: wall time, sleeping, timers and timeouts, as one injectable object.

The core decides with `now` passed in and never reads a clock; the runtime around it does, and
asks this port. `SystemClock` is the real one. A test hands the runtime a clock it moves itself
(`eventflow.testing.ManualClock`), so retry backoff, timeouts and cron schedules happen without
real waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol


class Cancellable(Protocol):
    """A timer that was set; `cancel()` on one that fired already does nothing."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Time as the runtime sees it. Every time is wall time in epoch seconds."""

    def time(self) -> float:
        """Now, in seconds since the epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once `seconds` have passed on this clock."""
        ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Cancellable:
        """Call `callback` on the event loop once the clock reads `when` (at once if it has)."""
        ...

    def timeout(self, seconds: float | None) -> AbstractAsyncContextManager[object]:
        """Cancel the block after `seconds` on this clock and raise `TimeoutError`, as
        `asyncio.timeout` does; `None` never times out."""
        ...


class SystemClock:
    """The real clock: `time.time()` and the event loop's timers."""

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def call_at(self, when: float, callback: Callable[[], None]) -> Cancellable:
        # The loop's own clock is monotonic: convert the wall-time deadline to a delay.
        delay = max(0.0, when - time.time())
        return asyncio.get_running_loop().call_later(delay, callback)

    def timeout(self, seconds: float | None) -> AbstractAsyncContextManager[object]:
        return asyncio.timeout(seconds)
