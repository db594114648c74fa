"""Backfills through each runtime: a decision of the core, carried out by the normal run path
(each partition once, at most `max_active` at a time, downstream once per partition), which a
cancel stops and a coordinator restart does not."""

from __future__ import annotations

import threading
import time
from datetime import date, timedelta

import eventflow as ef
from eventflow.core import Engine
from eventflow.core.backfill import BackfillState, dry_run
from eventflow.events import BackfillPlan, PipelineActionData
from eventflow.testing import EmbeddedHarness as BaseEmbedded
from eventflow.testing import KafkaHarness

from .conftest import Start
from .harness import Harness, Recorder

FIRST = "2026-10-01"
WAIT_S = 20.0


def days(n: int, first: str = FIRST) -> list[str]:
    start = date.fromisoformat(first)
    return [(start + timedelta(days=i)).isoformat() for i in range(n)]


def engine(h: Harness) -> Engine:
    """The engine deciding (the embedded runtime's, the Kafka coordinator's)."""
    if isinstance(h, BaseEmbedded):
        return h.runtime.engine
    assert isinstance(h, KafkaHarness)
    return h.coordinator.engine


def backfill_of(h: Harness, bid: str) -> BackfillState:
    return engine(h).pipelines["assets"].backfills[bid]


def status(h: Harness, bid: str) -> str | None:
    """The backfill's status, None until decided (on Kafka an action is decided after it is
    sent)."""
    found = engine(h).pipelines["assets"].backfills.get(bid)
    return found.status if found is not None else None


def assets(rec: Recorder, gate: threading.Barrier | threading.Event | None = None) -> ef.App:
    """A daily asset built at 06:00 UTC (`daily`), and a report downstream in its own pipeline.
    `build` bodies wait on `gate` in the backfilled range: a barrier they pass together, or an
    event the test sets."""
    clock, daily, report = (
        ef.Dataset("clock.daily", ef.daily()),
        ef.Dataset("daily", ef.daily()),
        ef.Dataset("report", ef.daily()),
    )
    p = ef.Pipeline("assets")
    p.schedule(clock, "0 6 * * *")
    backfilled = set(days(40))

    @p.task(inputs=[clock], outputs=[daily])
    def build(ctx: ef.TaskContext) -> None:
        rec.enter(ctx, "build" if ctx.partition in backfilled else "")
        try:
            if ctx.partition in backfilled and gate is not None:
                gate.wait(WAIT_S)
        finally:
            if ctx.partition in backfilled:
                rec.leave("build")
        ctx.emit(daily)

    q = ef.Pipeline("reports")

    @q.task(inputs=[daily], outputs=[report])
    def summarize(ctx: ef.TaskContext) -> None:
        rec.enter(ctx)
        ctx.emit(report)

    return ef.App([p, q])


def built(rec: Recorder, task: str = "build") -> list[str]:
    in_range = set(days(40))
    return sorted(p for t, p, _ in rec.calls if t == task and p in in_range)


async def test_a_30_day_backfill_runs_each_partition_once_and_downstream_once(
    start: Start,
) -> None:
    rec = Recorder()
    # 30 partitions, 3 at a time: each three pass the barrier together, so the peak is
    # reached and never passed.
    async with start(assets(rec, threading.Barrier(3)), concurrency=8) as h:
        plan = BackfillPlan(start=FIRST, end=days(30)[-1], max_active=3)
        await h.act("assets", "backfill", backfill="b1", plan=plan, operator="alice")
        in_range = set(days(30))
        await h.wait_for(
            lambda: len([r for r in h.runs("reports") if r.partition in in_range]) >= 30,
            timeout=120,
        )
        await h.wait_for(lambda: status(h, "b1") == "done", timeout=30)
        await h.wait_idle()
        bf = backfill_of(h, "b1")
        runs = [r for r in h.runs("assets") if r.partition in in_range]
        reports = [r for r in h.runs("reports") if r.partition in in_range]
    assert built(rec) == days(30), "each partition once"
    assert built(rec, "summarize") == days(30), "downstream once per partition"
    assert rec.peak["build"] == 3, "max_active reached, never passed"
    assert sorted(r.partition for r in runs) == days(30)
    assert all(r.reason.startswith("backfill b1 by alice") for r in runs)
    assert len(reports) == 30
    assert (bf.started, bf.succeeded, bf.failed, bf.skipped) == (30, 30, 0, 0)


async def test_cancel_stops_starting_runs(start: Start) -> None:
    rec = Recorder()
    release = threading.Event()
    async with start(assets(rec, release), concurrency=8) as h:
        plan = BackfillPlan(start=FIRST, end=days(10)[-1], max_active=2)
        await h.act("assets", "backfill", backfill="b1", plan=plan)
        await h.wait_for(lambda: rec.active.get("build") == 2, timeout=30)
        await h.act("assets", "cancel_backfill", backfill="b1", reason="wrong range")
        await h.wait_for(lambda: status(h, "b1") == "cancelled")
        release.set()
        await h.wait_for(lambda: not backfill_of(h, "b1").active, timeout=30)
        await h.wait_idle()
        bf = backfill_of(h, "b1")
    assert built(rec) == days(2), "the two running finished; nothing else started"
    assert (bf.status, bf.started, bf.succeeded) == ("cancelled", 2, 2)


async def test_the_backfill_goes_on_after_a_restart(start: Start) -> None:
    rec = Recorder()
    async with start(assets(rec), concurrency=4) as h:
        plan = BackfillPlan(start=FIRST, end=days(12)[-1], max_active=2, reverse=True)
        await h.act("assets", "backfill", backfill="b1", plan=plan)
        await h.wait_for(lambda: len(h.runs("assets")) >= 3, timeout=60)
        await h.restart()
        await h.wait_for(lambda: status(h, "b1") == "done", timeout=120)
        await h.wait_idle()
        runs = [r for r in h.runs("assets") if r.partition in set(days(12))]
        bf = backfill_of(h, "b1")
    assert sorted(r.partition for r in runs) == days(12), "one run per partition"
    assert all(r.status == "succeeded" for r in runs)
    assert (bf.started, bf.succeeded, bf.skipped) == (12, 12, 0)


async def test_the_dry_run_is_what_the_backfill_then_does(start: Start) -> None:
    rec = Recorder()
    async with start(assets(rec), concurrency=4) as h:
        first = BackfillPlan(partitions=days(5)[1:3], max_active=2)
        await h.act("assets", "backfill", backfill="b1", plan=first)
        await h.wait_for(lambda: status(h, "b1") == "done", timeout=60)
        await h.wait_idle()
        data = PipelineActionData(
            pipeline="assets",
            action="backfill",
            backfill="b2",
            plan=BackfillPlan(start=FIRST, end=days(5)[-1], mode="all"),
            reason="test",
            operator="tester",
        )
        e = engine(h)
        pst = e.pipelines["assets"]
        planned = dry_run(e.actions.backfills, pst, e.actions.backfills.new(pst, data, time.time()))
        assert data.plan is not None
        await h.act("assets", "backfill", backfill="b2", plan=data.plan)
        await h.wait_for(lambda: status(h, "b2") == "done", timeout=60)
        await h.wait_idle()
        runs = [r for r in h.runs("assets") if r.reason.startswith("backfill b2")]
    assert [(p.partition, p.run) for p in planned] == [
        (days(5)[0], True),
        (days(5)[1], False),
        (days(5)[2], False),
        (days(5)[3], True),
        (days(5)[4], True),
    ]
    assert sorted(r.partition for r in runs) == [p.partition for p in planned if p.run]
    assert built(rec) == days(5), "the partitions run by the first backfill did not run again"
