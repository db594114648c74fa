"""Recovery on every runtime: stopped in the middle of a cascade, a new runtime on the same
state finishes it, and each task run succeeds exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter

import eventflow as ef
from eventflow.events import TaskSucceededData

from .conftest import Start
from .harness import Recorder

D1 = "2026-11-22"


async def test_a_cascade_stopped_midway_finishes_after_a_restart(start: Start) -> None:
    rec = Recorder()
    entered, gate = asyncio.Event(), asyncio.Event()
    src, mid, end = (ef.Dataset(n, ef.daily()) for n in ("src", "mid", "end"))
    p = ef.Pipeline("cascade")

    @p.task(inputs=[src], outputs=[mid])
    def first(ctx: ef.TaskContext) -> None:
        rec.enter(ctx)

    @p.task(inputs=[mid], outputs=[end])
    async def held(ctx: ef.TaskContext) -> None:
        rec.enter(ctx)
        entered.set()
        await gate.wait()
        ctx.emit(end, after_restart=True)

    @p.task(inputs=[end])
    def last(ctx: ef.TaskContext) -> None:
        rec.enter(ctx)

    async with start(ef.App([p])) as h:
        await h.emit("src", D1, 7)
        await asyncio.wait_for(entered.wait(), 60)
        await h.restart()  # `held` is cancelled in its body; its run is still in flight
        gate.set()
        [run] = await h.wait_for_runs(timeout=120)
        await h.wait_idle()
    assert run.status == "succeeded"
    assert {t.task: t.status for t in run.tasks} == dict.fromkeys(
        ("first", "held", "last"), "succeeded"
    )
    succeeded = [r for r in h.task_results() if isinstance(r, TaskSucceededData)]
    assert Counter(r.task for r in succeeded) == {"first": 1, "held": 1, "last": 1}
    assert len({r.run_id for r in succeeded}) == 3
    calls = Counter(rec.tasks())
    assert calls["held"] >= 2, "the body was interrupted, then ran again"
    assert calls["first"] == calls["last"] == 1
    [from_held] = h.produced("end")
    assert from_held.metadata == {"after_restart": True}
