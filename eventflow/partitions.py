"""Partitioning schemes of a dataset: how a partition key is spelled and checked."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Literal

from .errors import EventError

UNPARTITIONED = ""


@dataclass(frozen=True)
class Partitioning:
    """Base: the unpartitioned scheme, whose only key is the empty string."""

    #: How keys are derived: not at all, from a day or an hour, a fixed list, or at run time.
    kind: Literal["none", "daily", "hourly", "static", "dynamic"] = "none"

    def validate(self, key: str) -> str:
        """The key in its one spelling (`2026-01-05`, not `2026-1-5`); an `EventError`
        says why a key does not belong to this scheme."""
        if key != UNPARTITIONED:
            raise EventError(f"partition {key!r} given for an unpartitioned dataset")
        return key

    def key_for(self, when: datetime) -> str:
        """The key of the partition `when` falls in, e.g. for a schedule's tick."""
        return UNPARTITIONED

    @property
    def partitioned(self) -> bool:
        """Whether the dataset has partitions at all."""
        return self.kind != "none"

    @property
    def period(self) -> timedelta | None:
        """The length of a partition's time window; None when keys are not windows of time."""
        return None


@dataclass(frozen=True)
class _TimePartitioning(Partitioning):
    fmt: str = ""
    example: str = ""

    def validate(self, key: str) -> str:
        canonical = _canonical(key, self.fmt)
        if canonical is None:
            raise EventError(
                f"partition {key!r} is not a {self.kind} key (expected like {self.example!r})"
            )
        return canonical

    def key_for(self, when: datetime) -> str:
        return when.strftime(self.fmt)

    @property
    def period(self) -> timedelta | None:
        return timedelta(days=1) if self.kind == "daily" else timedelta(hours=1)


@lru_cache(maxsize=65536)
def _canonical(key: str, fmt: str) -> str | None:
    """Events name the same few partitions again and again: parse each spelling once."""
    try:
        return datetime.strptime(key, fmt).strftime(fmt)
    except ValueError:
        return None


def daily() -> Partitioning:
    """One partition per day, keyed `YYYY-MM-DD`."""
    return _TimePartitioning(kind="daily", fmt="%Y-%m-%d", example="2026-11-22")


def hourly() -> Partitioning:
    """One partition per hour, keyed `YYYY-MM-DDTHH`."""
    return _TimePartitioning(kind="hourly", fmt="%Y-%m-%dT%H", example="2026-11-22T07")


@dataclass(frozen=True)
class StaticPartitioning(Partitioning):
    """A fixed set of keys, none of them derived from time."""

    keys: tuple[str, ...] = ()

    def validate(self, key: str) -> str:
        if key not in self.keys:
            raise EventError(f"partition {key!r} is not one of {list(self.keys)}")
        return key

    def key_for(self, when: datetime) -> str:
        raise EventError("a static partitioning has no key for a time")


def static(*keys: str) -> Partitioning:
    """A fixed list of partitions, such as regions or customers."""
    return StaticPartitioning(kind="static", keys=tuple(keys))


#: Keys a fan-out may name: they end up in run ids (`task:partition:key:attempt`), file names
#: and URLs, so no separators, spaces or path tricks.
DYNAMIC_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=+-]*")
MAX_DYNAMIC_KEY = 100


@dataclass(frozen=True)
class DynamicPartitioning(Partitioning):
    """Keys known only at run time, named by the task that fans out to them."""

    max_length: int = MAX_DYNAMIC_KEY

    def validate(self, key: str) -> str:
        if not key or len(key) > self.max_length or not DYNAMIC_KEY.fullmatch(key):
            raise EventError(
                f"partition {key[:40]!r} is not a dynamic key: 1 to {self.max_length} letters, "
                "digits and '_.=+-', starting with a letter or digit"
            )
        return key

    def key_for(self, when: datetime) -> str:
        raise EventError("a dynamic partitioning has no key for a time")


def dynamic(max_length: int = MAX_DYNAMIC_KEY) -> Partitioning:
    """Partitions named at run time by a task that fans out (`ctx.emit(ds, partition=key)`),
    such as the files found in a directory; each key runs as its own partition."""
    if not 1 <= max_length <= MAX_DYNAMIC_KEY:
        raise ValueError(f"max_length must be 1 to {MAX_DYNAMIC_KEY}")
    return DynamicPartitioning(kind="dynamic", max_length=max_length)


NONE = Partitioning()
