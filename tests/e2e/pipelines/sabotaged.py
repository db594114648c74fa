"""A pipeline whose instance's processing loop dies: the state file refuses, with a defect
rather than a `StorageError`, to commit any announcement of `poison`."""

from __future__ import annotations

from typing import Any

import eventflow as ef
from eventflow.embedded.store import Store
from eventflow.events import DatasetProduced

raw, poison = ef.Dataset("raw"), ef.Dataset("poison")
p = ef.Pipeline("sabotaged")


@p.task(inputs=[raw])
def fine(ctx: ef.TaskContext) -> None:
    pass


@p.task(inputs=[poison])
def never(ctx: ef.TaskContext) -> None:
    pass


app = ef.App([p])

_commit = Store.commit


async def _commit_unless_poisoned(self: Store, outcome: Any, records: Any) -> None:
    if any(isinstance(e, DatasetProduced) and e.data.dataset == "poison" for e in outcome.events):
        raise RuntimeError("a defect in the store")
    await _commit(self, outcome, records)


Store.commit = _commit_unless_poisoned  # type: ignore[method-assign]  # the sabotage itself
