"""The state a dataset is shown in: one function, so the graph, the dataset index and the
dataset page say the same thing, with the reason in words.

- `late`: its freshness policy is violated (in the partition shown, or in any partition when
  the newest version is shown): what its owner declared is told first.
- `never`: no version yet (in the partition shown).
- `failing`: a check's newest outcome on the newest version failed.
- `stale`: an input of the task that produced the newest version has, in the partition it was
  read from, a version newer than the one that task consumed.
- `fresh`: none of these.

`failing` is told before `stale`: a version that failed its checks needs a look whatever its
inputs did since.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeAlias

from ..errors import EventError
from ..history.models import Freshness, FreshnessViolation, Provenance
from ..history.queries import Queries
from ..partitions import Partitioning
from .site import ago

DatasetStatus: TypeAlias = Literal["fresh", "stale", "failing", "never", "late"]


@dataclass(frozen=True)
class DatasetState:
    status: DatasetStatus
    reason: str


def dataset_state(
    name: str,
    newest: Freshness | None,
    made: Provenance | None,
    now: datetime | None = None,
    late: Sequence[FreshnessViolation] = (),
) -> DatasetState:
    """The state of dataset `name` whose newest version (in the partition shown) is `newest`,
    made as `made` says (`Queries.provenance` of `newest`); `late`: its open violations."""
    if late:
        return DatasetState("late", "; ".join(_late(v, now) for v in late))
    if newest is None:
        return DatasetState("never", f"{name} has no version yet")
    at = f"{name}@{newest.version}"
    failed = [c for c in made.checks if not c.passed] if made is not None else []
    if failed:
        said = "; ".join(f"check {c.check} failed on {at}: {c.message}" for c in failed)
        return DatasetState("failing", said)
    behind = [i for i in made.inputs if i.newest > i.version] if made is not None else []
    if behind:
        said = "; ".join(
            f"input {i.dataset} has a newer version ({i.newest}, {ago(i.newest_time, now)}) "
            f"than the one {at} was made from ({i.version})"
            for i in behind
        )
        return DatasetState("stale", said)
    if made is None or made.producer is None:
        return DatasetState("fresh", f"{at} was announced {ago(newest.time, now)}")
    return DatasetState(
        "fresh",
        f"{at} was made by {made.producer.task} {ago(newest.time, now)} from the newest version of "
        "each input",
    )


def _late(violation: FreshnessViolation, now: datetime | None) -> str:
    where = f" in {violation.partition}" if violation.partition else ""
    said = violation.message or f"{violation.policy} violated{where}"
    return f"{said} (due {ago(violation.expected_by, now)})"


async def states_of(
    history: Queries,
    shown: Mapping[str, Freshness | None],
    partition: str | None = None,
) -> dict[str, tuple[DatasetState, Provenance | None]]:
    """The state of each dataset named in `shown` (its version shown, if any), with what that
    version was made from: one `provenance` read for them all, and one of open violations (in
    `partition`, or in any when None; a max_age violation, of no partition, counts in all)."""
    found = [v for v in shown.values() if v is not None]
    made = {(p.version.dataset, p.version.partition): p for p in await history.provenance(found)}
    late = await late_by_name(history, "dataset", partition)
    states: dict[str, tuple[DatasetState, Provenance | None]] = {}
    for name, version in shown.items():
        provenance = made.get((name, version.partition)) if version is not None else None
        state = dataset_state(name, version, provenance, late=late.get(name, ()))
        states[name] = (state, provenance)
    return states


async def late_by_name(
    history: Queries, kind: Literal["dataset", "task"], partition: str | None = None
) -> dict[str, list[FreshnessViolation]]:
    """Open violations of datasets (or tasks) by name, in `partition` (and of no partition)
    or, when None, in any."""
    found: dict[str, list[FreshnessViolation]] = {}
    for v in await history.violations(kind=kind, limit=1000):
        if partition is None or v.partition in ("", partition):
            found.setdefault(v.name, []).append(v)
    return found


def takes(partitioning: Partitioning, key: str) -> bool:
    """Whether `key` is a partition of this scheme, spelled as the scheme spells it."""
    if not partitioning.partitioned:
        return False
    try:
        return partitioning.validate(key) == key
    except EventError:
        return False
