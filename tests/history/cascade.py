"""A three-task cascade with a flaky first task, and what the history's queries say about it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import eventflow as ef
from eventflow.history import HistoryStore

D1, D2 = "2026-11-21", "2026-11-22"


def cascade() -> ef.App:
    src, mid, end = (ef.Dataset(n, ef.daily()) for n in ("src", "mid", "end"))
    p = ef.Pipeline("chain")
    tries: dict[str, int] = {}

    @p.task(inputs=[src], outputs=[mid], retries=ef.Retry(count=1, backoff_s=0.01))
    def first(ctx: ef.TaskContext) -> None:
        tries[ctx.partition] = tries.get(ctx.partition, 0) + 1
        if tries[ctx.partition] == 1:
            raise RuntimeError("flaky")
        ctx.emit(mid, rows=1)

    @p.task(inputs=[mid], outputs=[end])
    def second(ctx: ef.TaskContext) -> None:
        ctx.emit(end, rows=2)

    @p.task(inputs=[end])
    def third(ctx: ef.TaskContext) -> None:
        pass

    return ef.App([p])


async def views(store: HistoryStore) -> dict[str, Any]:
    """What the queries say, event `seq`s aside."""
    runs = (await store.runs()).items
    details = [await store.run(r.run_id) for r in runs]
    end = (await store.freshness("end"))[-1]
    lineage = await store.lineage("end", end.partition, end.version, depth=3)
    return {
        "runs": runs,
        "details": details,
        "freshness": await store.freshness(now=datetime(2030, 1, 1, tzinfo=UTC)),
        "lineage": lineage,
        "events": sorted(e.id for e in await store.events(limit=1000)),
    }
