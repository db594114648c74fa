"""Freshness policies and task deadlines, judged by the coordinator on its timers.

The deadline scenarios move a `ManualClock` (the embedded runtime takes one); the age limit and
the restart run on both runtimes in real seconds, waiting for the events themselves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import eventflow as ef
from eventflow.events import FreshnessData
from eventflow.testing import EmbeddedHarness, ManualClock

from .conftest import Start

T0 = datetime(2026, 3, 2, 0, 0, 30, tzinfo=UTC)


def _daily_app(freshness: ef.Freshness) -> ef.App:
    orders = ef.Dataset("orders", ef.daily(), freshness=freshness)
    p = ef.Pipeline("report")

    @p.task(inputs=[orders])
    def summarize(ctx: ef.TaskContext) -> None:
        pass

    return ef.App([p])


async def test_a_partition_missing_at_its_deadline_is_violated_then_recovered_once(
    tmp_path: Path,
) -> None:
    clock = ManualClock(T0)
    app = _daily_app(ef.Freshness(deadline="0 6 * * *"))
    async with EmbeddedHarness(app, tmp_path, clock=clock) as h:
        await clock.advance(6 * 3600 - 31)  # 05:59:59
        await h.wait_idle()
        assert h.freshness() == []
        await clock.advance(1)  # 06:00: the partition of 03-01 is due
        await h.wait_for(lambda: h.freshness())
        [(what, late)] = h.freshness("orders")
        assert (what, late.partition, late.policy) == ("violated", "2026-03-01", "deadline")
        assert late.expected_by == datetime(2026, 3, 2, 6, tzinfo=UTC)
        await h.emit("orders", partition="2026-03-01", version=7)
        await h.wait_for(lambda: len(h.freshness()) == 2)
        await h.emit("orders", partition="2026-03-01", version=8)
        await h.wait_idle()
        await clock.advance(3600)  # no second violation of a partition that came
        await h.wait_idle()
    assert [(w, d.partition, d.newest_version) for w, d in h.freshness()] == [
        ("violated", "2026-03-01", None),
        ("recovered", "2026-03-01", 7),
    ]


async def test_a_partition_on_time_is_not_violated(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    app = _daily_app(ef.Freshness(deadline="0 6 * * *"))
    async with EmbeddedHarness(app, tmp_path, clock=clock) as h:
        await h.emit("orders", partition="2026-03-01")
        await h.emit("orders", partition="2026-03-02")  # early: judged a day later
        await clock.advance(2 * 86400)  # ticks of 03-02 and 03-03 06:00
        await h.wait_idle()
    assert h.freshness() == [], "each partition came before its deadline"


async def test_a_violation_survives_a_restart_and_is_not_repeated(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    app = _daily_app(ef.Freshness(deadline="0 6 * * *"))
    async with EmbeddedHarness(app, tmp_path, clock=clock) as h:
        await clock.advance(6 * 3600)
        await h.wait_for(lambda: h.freshness())
        await h.restart()
        await clock.advance(60)
        await h.wait_idle()
        await h.emit("orders", partition="2026-03-01")
        await h.wait_for(lambda: len(h.freshness()) == 2)
    assert [(w, d.partition) for w, d in h.freshness()] == [
        ("violated", "2026-03-01"),
        ("recovered", "2026-03-01"),
    ]


async def test_max_age_is_re_armed_by_each_version(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    events = ef.Dataset("events", ef.hourly(), freshness=ef.Freshness(max_age=timedelta(hours=1)))
    p = ef.Pipeline("count")

    @p.task(inputs=[events])
    def tally(ctx: ef.TaskContext) -> None:
        pass

    async with EmbeddedHarness(ef.App([p]), tmp_path, clock=clock) as h:
        await h.emit("events", partition="2026-03-02T00", version=1)
        await clock.advance(3000)
        await h.emit("events", partition="2026-03-02T00", version=2)
        await clock.advance(3000)  # 100 minutes after the first, 50 after the second
        await h.wait_idle()
        assert h.freshness() == []
        await clock.advance(600)
        await h.wait_for(lambda: h.freshness())
        await h.emit("events", partition="2026-03-02T01", version=3)
        await h.wait_for(lambda: len(h.freshness()) == 2)
        await clock.advance(3600)  # the version that ended it armed the limit again
        await h.wait_for(lambda: len(h.freshness()) == 3)
    [(_, late), (_, back), (again, later)] = h.freshness()
    assert (late.policy, late.newest_version) == ("max_age", 2)
    assert late.expected_by == T0 + timedelta(seconds=3000 + 3600)
    assert (back.policy, back.newest_version) == ("max_age", 3)
    assert (again, later.newest_version) == ("violated", 3)
    assert later.expected_by == T0 + timedelta(seconds=6600 + 3600)


async def test_a_task_deadline_missed_then_met(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    orders = ef.Dataset("orders", ef.daily())
    p = ef.Pipeline("report")
    fail = [True]

    @p.task(inputs=[orders], deadline="0 7 * * *")
    def publish(ctx: ef.TaskContext) -> None:
        if fail[0]:
            raise ef.Fail("warehouse down")

    async with EmbeddedHarness(ef.App([p]), tmp_path, clock=clock) as h:
        await h.emit("orders", partition="2026-03-01", version=1)
        await h.wait_for_runs()
        await clock.advance(7 * 3600)  # 07:00:30: no success for 03-01
        await h.wait_for(lambda: h.freshness())
        fail[0] = False
        await h.emit("orders", partition="2026-03-01", version=2)
        await h.wait_for(lambda: len(h.freshness()) == 2)
    [(w1, late), (w2, back)] = h.freshness("publish")
    assert (w1, late.kind, late.pipeline, late.partition) == (
        "violated",
        "task",
        "report",
        "2026-03-01",
    )
    assert (w2, back.partition) == ("recovered", "2026-03-01")


async def test_max_age_violated_recovered_and_not_repeated_after_restart(start: Start) -> None:
    feed = ef.Dataset("feed", freshness=ef.Freshness(max_age=2))
    p = ef.Pipeline("watch")

    @p.task(inputs=[feed])
    def read(ctx: ef.TaskContext) -> None:
        pass

    def late_with(version: int) -> list[FreshnessData]:
        return [d for w, d in h.freshness() if w == "violated" and d.newest_version == version]

    async with start(ef.App([p])) as h:
        await h.emit("feed", version=1)
        # Judging starts with the runtime: a slow start may be late once before version 1.
        await h.wait_for(lambda: late_with(1), timeout=60)
        await h.restart()
        await h.emit("feed", version=2)
        await h.wait_for(
            lambda: any(w == "recovered" and d.newest_version == 2 for w, d in h.freshness()),
            timeout=60,
        )
        await h.wait_idle()
    [late] = late_with(1)  # decided once, though the coordinator restarted while it was open
    [back] = [d for w, d in h.freshness() if w == "recovered" and d.newest_version == 2]
    assert (back.policy, back.expected_by) == ("max_age", late.expected_by)


async def test_deadlines_passed_while_stopped_are_judged_on_start(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    app = _daily_app(ef.Freshness(deadline="0 6 * * *"))
    h = EmbeddedHarness(app, tmp_path, clock=clock)
    async with h:
        await clock.advance(0)  # judging starts: its first deadline is 03-02 06:00
        await h.wait_idle()
    await clock.advance(2 * 86400)  # nothing runs over two deadlines
    async with EmbeddedHarness(app, tmp_path, clock=clock) as h:
        await h.wait_for(lambda: len(h.freshness()) == 2)
        await h.wait_idle()
    assert [(d.partition, d.expected_by.day) for _, d in h.freshness()] == [
        ("2026-03-01", 2),
        ("2026-03-02", 3),
    ]


async def test_a_task_deadline_missed_then_met_on_every_runtime(start: Start) -> None:
    """A deadline every two seconds (real time): each tick wants a success since the tick
    before, so it is missed while the task fails and met once it succeeds."""
    feed = ef.Dataset("feed")
    p = ef.Pipeline("sla")
    failing = [True]

    @p.task(inputs=[feed], deadline="* * * * * */2")
    def publish(ctx: ef.TaskContext) -> None:
        if failing[0]:
            raise ef.Fail("warehouse down")

    def seen(kind: str) -> list[FreshnessData]:
        return [d for w, d in h.freshness("publish") if w == kind]

    async with start(ef.App([p])) as h:
        await h.emit("feed", version=1)
        await h.wait_for(lambda: seen("violated"), timeout=60)
        failing[0] = False
        await h.emit("feed", version=2)
        await h.wait_for(lambda: seen("recovered"), timeout=60)
    [back, *_] = seen("recovered")
    assert (back.kind, back.pipeline, back.policy) == ("task", "sla", "deadline")
    missed = [d.expected_by for d in seen("violated")]
    assert back.expected_by in missed
    assert len(missed) == len(set(missed)), "each tick is judged once"
