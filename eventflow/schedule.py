"""Cron schedules as clock datasets: each tick produces a version of the schedule's dataset.

The version is the tick time in microseconds, so every instance that runs the clock produces the
same version and the router keeps one. On start the most recent tick is produced too: if it was
already seen it is dropped, if it was missed while nothing ran it triggers once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from croniter import croniter

from .definitions import Schedule
from .events import DatasetProduced, DatasetProducedData

Emit = Callable[[DatasetProduced], Awaitable[object]]


async def run_schedule(schedule: Schedule, emit: Emit, *, source: str) -> None:
    """Produce the clock dataset at every cron tick (UTC) until cancelled."""
    now = datetime.now(UTC)
    await emit(tick(schedule, croniter(schedule.cron, now).get_prev(datetime), source))
    ticks = croniter(schedule.cron, now)
    while True:
        nxt: datetime = ticks.get_next(datetime)
        await asyncio.sleep(max(0.0, nxt.timestamp() - time.time()))
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
