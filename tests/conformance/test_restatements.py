"""Restated partitions on every runtime: a new version of a partition that already had runs
re-runs exactly what is downstream of it, in that partition only; a task ignoring
restatements stays put, and explain says why."""

from __future__ import annotations

from typing import Any

import eventflow as ef

from .conftest import Start
from .harness import Recorder

D1, D2 = "2026-11-21", "2026-11-22"


def graph_app(rec: Recorder, **options: Any) -> ef.App:
    """orders -> clean -> report; fx -> rates; (clean, rates) -> revenue."""
    names = ("orders", "fx", "clean", "rates", "report", "revenue")
    orders, fx, clean, rates, report, revenue = (ef.Dataset(n, ef.daily()) for n in names)
    p = ef.Pipeline("sales")

    @p.task(inputs=[orders], outputs=[clean])
    def cleanse(ctx: ef.TaskContext) -> None:
        rec.enter(ctx)
        ctx.emit(clean)

    @p.task(inputs=[clean], outputs=[report])
    def summarize(ctx: ef.TaskContext) -> None:
        rec.enter(ctx)
        ctx.emit(report)

    @p.task(inputs=[fx], outputs=[rates])
    def convert(ctx: ef.TaskContext) -> None:
        rec.enter(ctx)
        ctx.emit(rates)

    @p.task(inputs=[clean, rates], outputs=[revenue], **options)
    def join(ctx: ef.TaskContext) -> None:
        rec.enter(ctx)
        ctx.emit(revenue)

    return ef.App([p])


async def test_a_restated_partition_re_runs_only_its_downstream_there(start: Start) -> None:
    rec = Recorder()
    async with start(graph_app(rec)) as h:
        for day in (D1, D2):
            await h.emit("orders", day, 1)
            await h.emit("fx", day, 1)
        await h.wait_for_runs(2, timeout=60)
        await h.wait_idle()
        before = len(rec.calls)
        await h.emit("orders", D1, 2)  # a correction of an old day
        await h.wait_for_runs(3, timeout=60)
        await h.wait_idle()
    restated = rec.calls[before:]
    assert sorted((task, day) for task, day, _ in restated) == [
        ("cleanse", D1),
        ("join", D1),
        ("summarize", D1),
    ]
    assert [v for task, _, v in restated if task == "cleanse"] == [{"orders": 2}]
    last = h.runs()[-1]
    assert (last.partition, last.status) == (D1, "succeeded")


async def test_a_task_ignoring_restatements_stays_put(start: Start) -> None:
    rec = Recorder()
    async with start(graph_app(rec, restatements="ignore")) as h:
        await h.emit("orders", D1, 1)
        await h.emit("fx", D1, 1)
        await h.wait_for_runs(timeout=60)
        await h.wait_idle()
        before = len(rec.calls)
        await h.emit("orders", D1, 2)
        await h.wait_for_runs(2, timeout=60)
        await h.wait_idle()
        found = await h.explain("sales", "join", D1)
    assert sorted(task for task, _, _ in rec.calls[before:]) == ["cleanse", "summarize"]
    [clean] = [i for i in found.items if i.title.startswith("input clean")]
    assert clean.title == "input clean: restatement ignored"
    assert found.verdict.startswith("restated clean ignored (restatements='ignore')")
