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
from .events import DatasetProduced, DatasetProducedData
from .runtime.clock import Clock, SystemClock

Emit = Callable[[DatasetProduced], Awaitable[object]]


async def run_schedule(
    schedule: Schedule, emit: Emit, clock: Clock | None = None, *, source: str
) -> None:
    """Produce the clock dataset at every cron tick (UTC) until cancelled."""
    clock = clock or SystemClock()
    now = datetime.fromtimestamp(clock.time(), UTC)
    await emit(tick(schedule, croniter(schedule.cron, now).get_prev(datetime), source))
    ticks = croniter(schedule.cron, now)
    while True:
        nxt: datetime = ticks.get_next(datetime)
        await clock.sleep(max(0.0, nxt.timestamp() - clock.time()))
        await emit(tick(schedule, nxt, source))


def tick(schedule: Schedule, at: datetime, source: str) -> DatasetProduced:
    """The version of the schedule's dataset for the tick at `at`."""
    dataset = schedule.dataset
    data = DatasetProducedData(
        dataset=dataset.name,
        partition=dataset.partitions.key_for(at),
        version=int(at.timestamp() * 1_000_000),
        metadata={"tick": at.isoformat()},
    )
    return DatasetProduced.of(data, source=source)
