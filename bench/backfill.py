"""Backfill: N daily partitions of a scheduled asset, planned and started as fast as the workers
allow. Two figures: the planning rate of the verdict alone (`core.backfill.dry_run` over every
partition of a fresh state), and the whole backfill on a runtime, from the action to the last
run's end, with a downstream pipeline following each partition."""

from __future__ import annotations

import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import eventflow as ef
from eventflow.core import Engine
from eventflow.core.backfill import dry_run
from eventflow.events import BackfillPlan, PipelineActionData
from eventflow.testing import EmbeddedHarness, Harness, KafkaHarness

FIRST = date(1990, 1, 1)  # 10,000 days end before the schedule's own ticks


def app() -> ef.App:
    clock, daily, report = (
        ef.Dataset("clock.daily", ef.daily()),
        ef.Dataset("daily", ef.daily()),
        ef.Dataset("report", ef.daily()),
    )
    p = ef.Pipeline("assets")
    p.schedule(clock, "0 6 * * *")

    @p.task(inputs=[clock], outputs=[daily])
    async def build(ctx: ef.TaskContext) -> None:
        ctx.emit(daily)

    q = ef.Pipeline("reports")

    @q.task(inputs=[daily], outputs=[report])
    async def summarize(ctx: ef.TaskContext) -> None:
        ctx.emit(report)

    return ef.App([p, q])


def plan(partitions: int, max_active: int) -> BackfillPlan:
    last = date.fromordinal(FIRST.toordinal() + partitions - 1)
    return BackfillPlan(start=FIRST.isoformat(), end=last.isoformat(), max_active=max_active)


def planning_rate(partitions: int) -> dict[str, Any]:
    """Partitions judged per second by the verdict both the dry run and the backfill use."""
    engine = Engine(app())
    pst = engine.pipelines["assets"]
    data = PipelineActionData(
        pipeline="assets",
        action="backfill",
        backfill="bench",
        plan=plan(partitions, 1),
        reason="bench",
        operator="bench",
    )
    began = time.perf_counter()
    planned = dry_run(
        engine.actions.backfills, pst, engine.actions.backfills.new(pst, data, time.time())
    )
    took = time.perf_counter() - began
    assert sum(p.run for p in planned) == partitions
    return {"partitions": partitions, "seconds": round(took, 3), "per_s": round(partitions / took)}


async def backfill(
    runtime: str, *, partitions: int, max_active: int, bootstrap: str | None = None
) -> dict[str, Any]:
    """The whole backfill: every partition built and its report run downstream."""
    home = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    h: Harness
    if runtime == "kafka":
        assert bootstrap is not None
        h = KafkaHarness(app(), bootstrap, home=home, concurrency=max_active)
    else:
        h = EmbeddedHarness(app(), home, concurrency=max_active)
    async with h:
        engine = h.coordinator.engine if isinstance(h, KafkaHarness) else h.runtime.engine
        backfills = engine.pipelines["assets"].backfills
        began = time.perf_counter()
        await h.act("assets", "backfill", backfill="bench", plan=plan(partitions, max_active))
        await h.wait_for(lambda: "bench" in backfills, timeout=60)
        first = time.perf_counter() - began
        await h.wait_for(lambda: backfills["bench"].status == "done", timeout=3600)
        built = time.perf_counter() - began
        await h.wait_idle(timeout=600)
        total = time.perf_counter() - began
        bf = backfills["bench"]
        reports = len(h.runs("reports"))
    assert bf.succeeded == partitions, (bf.succeeded, bf.failed, bf.skipped)
    return {
        "partitions": partitions,
        "max_active": max_active,
        "decided_s": round(first, 3),
        "backfill_done_s": round(built, 2),
        "with_downstream_s": round(total, 2),
        "runs_per_s": round(partitions / built, 1),
        "downstream_runs": reports,
    }
