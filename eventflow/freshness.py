"""Freshness policies: when a dataset (or a task's run) is expected, and the arithmetic of it.

A policy says when data is late, the coordinator says when it is (`core/freshness.py`). Every
time here is UTC, so a day is always 24 hours and a deadline never moves with daylight saving.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from croniter import croniter

from .errors import DefinitionError
from .partitions import Partitioning

#: Deadline ticks a coordinator catches up on after being away; older ones are not judged.
CATCH_UP = 100


@dataclass(frozen=True)
class Freshness:
    """When a dataset is late.

    `deadline` (a cron, UTC): at each tick the newest partition whose time window ended by the
    tick must have a version (`"0 6 * * *"` on a daily dataset: each day's partition by 06:00
    of the next day); an unpartitioned dataset must have a version newer than the tick before.
    `max_age` (a `timedelta` or seconds): no new version of any partition for longer is late.
    """

    deadline: str | None = None
    max_age: timedelta | float | None = None

    @property
    def max_age_s(self) -> float | None:
        """`max_age` in seconds."""
        if isinstance(self.max_age, timedelta):
            return self.max_age.total_seconds()
        return None if self.max_age is None else float(self.max_age)


def validate(
    where: str, partitions: Partitioning, deadline: str | None, max_age_s: float | None = None
) -> None:
    """Raise `DefinitionError` for a policy that cannot be judged: a bad cron, a deadline on
    partitions that are not windows of time, an age that is not positive."""
    if deadline is not None:
        if not croniter.is_valid(deadline):
            raise DefinitionError(f"{where}: bad deadline cron expression {deadline!r}")
        if partitions.partitioned and partitions.period is None:
            raise DefinitionError(
                f"{where}: a deadline needs partitions that are windows of time (daily, hourly),"
                f" not {partitions.kind}; use max_age"
            )
    if max_age_s is not None and max_age_s <= 0:
        raise DefinitionError(f"{where}: max_age must be positive")


def _utc(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


def next_tick(cron: str, after: float) -> float:
    """The first tick of `cron` strictly after `after` (epoch seconds)."""
    return float(croniter(cron, _utc(after)).get_next(float))


def previous_tick(cron: str, before: float) -> float:
    """The last tick of `cron` strictly before `before`."""
    return float(croniter(cron, _utc(before)).get_prev(float))


def ticks_between(cron: str, after: float, until: float) -> list[float]:
    """The ticks in (`after`, `until`], the last `CATCH_UP` of them, found from `until`
    backwards so a long outage costs no more than they do."""
    found: set[float] = set()
    if until > after and next_tick(cron, until - 1) == until:
        found.add(until)
    back = croniter(cron, _utc(until))
    while len(found) < CATCH_UP:
        at = float(back.get_prev(float))
        if at <= after:
            break
        found.add(at)
    return sorted(found)


def expected_partition(partitions: Partitioning, tick: float) -> str:
    """The partition a deadline tick judges: the newest whose window ended by the tick (the
    day before a tick at 06:00 on a daily dataset); the one key of an unpartitioned one."""
    period = partitions.period
    if period is None:
        return partitions.key_for(_utc(tick))
    return partitions.key_for(_utc(tick) - period)


def since_text(at: float) -> str:
    """A time as messages spell it."""
    return _utc(at).strftime("%Y-%m-%d %H:%M UTC")


__all__ = [
    "CATCH_UP",
    "Freshness",
    "expected_partition",
    "next_tick",
    "previous_tick",
    "since_text",
    "ticks_between",
    "validate",
]
