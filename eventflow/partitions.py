"""Partitioning schemes of a dataset: how a partition key is spelled and checked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from .errors import EventError

UNPARTITIONED = ""


@dataclass(frozen=True)
class Partitioning:
    """Base: the unpartitioned scheme, whose only key is the empty string."""

    kind: str = "none"

    def validate(self, key: str) -> str:
        if key != UNPARTITIONED:
            raise EventError(f"partition {key!r} given for an unpartitioned dataset")
        return key

    def key_for(self, when: datetime) -> str:
        return UNPARTITIONED

    @property
    def partitioned(self) -> bool:
        return self.kind != "none"


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


NONE = Partitioning()
