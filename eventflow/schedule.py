"""Cron schedules as clock datasets: each tick produces a version of the schedule's dataset.

The version is the tick time in microseconds, so every instance that runs the clock produces the
same version and the router keeps one. On start the most recent tick is produced too: if it was
already seen it is dropped, if it was missed while nothing ran it triggers once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from croniter import croniter

from .definitions import Schedule
from .runtime.clock import Clock, SystemClock

Emit = Callable[[str, str, int, dict[str, object]], Awaitable[object]]


async def run_schedule(schedule: Schedule, emit: Emit, clock: Clock | None = None) -> None:
    """Produce the clock dataset at every cron tick (UTC) until cancelled."""
    clock = clock or SystemClock()
    now = datetime.fromtimestamp(clock.time(), UTC)
    await _tick(schedule, croniter(schedule.cron, now).get_prev(datetime), emit)
    ticks = croniter(schedule.cron, now)
    while True:
        nxt: datetime = ticks.get_next(datetime)
        await clock.sleep(max(0.0, nxt.timestamp() - clock.time()))
        await _tick(schedule, nxt, emit)


async def _tick(schedule: Schedule, at: datetime, emit: Emit) -> None:
    dataset = schedule.dataset
    version = int(at.timestamp() * 1_000_000)
    await emit(dataset.name, dataset.partitions.key_for(at), version, {"tick": at.isoformat()})
