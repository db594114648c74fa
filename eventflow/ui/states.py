"""The state a dataset is shown in: one function, so the graph, the dataset index and the
dataset page say the same thing, with the reason in words.

- `never`: no version yet (in the partition shown).
- `failing`: a check's newest outcome on the newest version failed.
- `stale`: an input of the task that produced the newest version has, in the partition it was
  read from, a version newer than the one that task consumed.
- `fresh`: none of these.

`failing` is told before `stale`: a version that failed its checks needs a look whatever its
inputs did since.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeAlias

from ..errors import EventError
from ..history.models import Freshness, Provenance
from ..history.queries import Queries
from ..partitions import Partitioning
from .site import ago

DatasetStatus: TypeAlias = Literal["fresh", "stale", "failing", "never"]


@dataclass(frozen=True)
class DatasetState:
    status: DatasetStatus
    reason: str


def dataset_state(
    name: str,
    newest: Freshness | None,
    made: Provenance | None,
    now: datetime | None = None,
) -> DatasetState:
    """The state of dataset `name` whose newest version (in the partition shown) is `newest`,
    made as `made` says (`Queries.provenance` of `newest`)."""
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


async def states_of(
    history: Queries, shown: Mapping[str, Freshness | None]
) -> dict[str, tuple[DatasetState, Provenance | None]]:
    """The state of each dataset named in `shown` (its version shown, if any), with what that
    version was made from: one `provenance` read for them all."""
    found = [v for v in shown.values() if v is not None]
    made = {(p.version.dataset, p.version.partition): p for p in await history.provenance(found)}
    states: dict[str, tuple[DatasetState, Provenance | None]] = {}
    for name, version in shown.items():
        provenance = made.get((name, version.partition)) if version is not None else None
        states[name] = (dataset_state(name, version, provenance), provenance)
    return states


def takes(partitioning: Partitioning, key: str) -> bool:
    """Whether `key` is a partition of this scheme, spelled as the scheme spells it."""
    if not partitioning.partitioned:
        return False
    try:
        return partitioning.validate(key) == key
    except EventError:
        return False
