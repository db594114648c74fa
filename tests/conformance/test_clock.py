"""Time-driven behaviour on a `ManualClock`: retry backoff, task timeouts and cron schedules
happen when the test moves the clock, with no real waiting; assertions are on events.

Only the embedded runtime takes a clock: the Kafka services run on real time (the same
behaviours run there in `test_scenarios.py`)."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path

import eventflow as ef
from eventflow.events import TaskFailedData, TaskSucceededData
from eventflow.testing import EmbeddedHarness, ManualClock


async def test_retry_backoff_waits_for_the_clock(tmp_path: Path) -> None:
    clock = ManualClock()
    t0 = clock.time()
    attempts: list[tuple[int, float]] = []
    raw, out = ef.Dataset("raw"), ef.Dataset("out")
    p = ef.Pipeline("retry")

    @p.task(inputs=[raw], outputs=[out], retries=ef.Retry(count=2, backoff_s=60, factor=2))
    async def flaky(ctx: ef.TaskContext) -> None:
        attempts.append((ctx.attempt, clock.time()))
        if ctx.attempt < 3:
            raise ConnectionError(f"upstream not ready (try {ctx.attempt})")

    async with EmbeddedHarness(ef.App([p]), tmp_path, clock=clock) as h:
        await h.emit("raw")
        await clock.advance(59)
        assert [type(r).__name__ for r in h.task_results()] == ["TaskFailedData"]
        assert h.runs() == [], "waiting for the retry"
        await clock.advance(1)
        assert [r.attempt for r in h.task_results()] == [1, 2]
        await clock.advance(120)  # the second delay is doubled
        [run] = await h.wait_for_runs()
    assert attempts == [(1, t0), (2, t0 + 60), (3, t0 + 180)]
    results = h.task_results("flaky")
    assert [(r.attempt, isinstance(r, TaskSucceededData)) for r in results] == [
        (1, False),
        (2, False),
        (3, True),
    ]
    assert run.status == "succeeded" and run.tasks[0].attempts == 3


async def test_a_task_timeout_fires_on_the_clock(tmp_path: Path) -> None:
    clock = ManualClock()
    raw = ef.Dataset("raw")
    released = threading.Event()
    p = ef.Pipeline("slow")

    @p.task(inputs=[raw], timeout_s=600)
    async def hangs_async(ctx: ef.TaskContext) -> None:
        await asyncio.Event().wait()

    @p.task(inputs=[raw], timeout_s=900)
    def hangs_blocking(ctx: ef.TaskContext) -> None:
        released.wait(60)

    try:
        async with EmbeddedHarness(ef.App([p]), tmp_path, clock=clock) as h:
            await h.emit("raw")
            await clock.advance(599)
            assert h.task_results() == []
            await clock.advance(1)
            [first] = h.task_results()
            await clock.advance(300)
            [run] = await h.wait_for_runs()
    finally:
        released.set()  # the abandoned thread may end
    assert isinstance(first, TaskFailedData)
    assert (first.task, first.kind) == ("hangs_async", "timeout")
    assert run.status == "failed"
    assert {t.task: t.error for t in run.tasks} == {
        "hangs_async": "timeout: ran longer than 600s",
        "hangs_blocking": "timeout: ran longer than 900s",
    }


async def test_a_cron_schedule_fires_as_the_clock_passes_its_ticks(tmp_path: Path) -> None:
    clock = ManualClock(datetime(2026, 3, 1, 0, 0, 30, tzinfo=UTC))
    tick = ef.Dataset("clock.hourly")
    seen: list[str] = []
    p = ef.Pipeline("timed")

    @p.task(inputs=[tick])
    def on_tick(ctx: ef.TaskContext) -> None:
        seen.append(str(ctx.inputs["clock.hourly"].metadata["tick"]))

    app = ef.App([p], schedules=[ef.Schedule(tick, "0 * * * *")])
    async with EmbeddedHarness(app, tmp_path, clock=clock) as h:
        await clock.advance(0)  # on start, the latest tick (00:00) is produced once
        await h.wait_idle()
        for _ in range(2):
            # An hour at a time: the blocking body runs in a thread, which `advance` counts as
            # waiting, so two hours at once could pass its timeout before its thread has run.
            await clock.advance(3600)
            await h.wait_idle()
    expected = [
        "2026-03-01T00:00:00+00:00",
        "2026-03-01T01:00:00+00:00",
        "2026-03-01T02:00:00+00:00",
    ]
    assert [d.metadata["tick"] for d in h.produced("clock.hourly")] == expected
    assert [d.version for d in h.produced("clock.hourly")] == [
        int(datetime.fromisoformat(t).timestamp() * 1_000_000) for t in expected
    ]
    assert seen == expected
    assert [r.status for r in h.runs("timed")] == ["succeeded"] * 3
