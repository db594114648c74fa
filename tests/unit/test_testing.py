"""The public testing kit: the manual clock, contexts built in one line, its exact surface."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

import eventflow as ef
from eventflow import testing
from eventflow.runtime import SystemClock
from eventflow.testing import ManualClock, build_check_context, build_context


def test_the_public_names_are_documented() -> None:
    for name in testing.__all__:
        assert getattr(testing, name).__doc__ or name == "TaskResult", name


async def test_sleepers_wake_in_order_each_at_its_own_time() -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    t0 = clock.time()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.time() - t0))

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("c", 30), ("a", 10), ("b", 20))]
    await clock.advance(25)
    assert woke == [("a", 10), ("b", 20)]
    assert clock.time() == t0 + 25
    await clock.advance(5)
    assert woke[-1] == ("c", 30)
    await asyncio.gather(*tasks)


async def test_a_timer_set_by_a_fired_one_fires_within_the_same_advance() -> None:
    clock = ManualClock()
    t0 = clock.time()
    fired: list[float] = []

    def again() -> None:
        fired.append(clock.time() - t0)
        if len(fired) < 3:
            clock.call_at(clock.time() + 10, again)

    clock.call_at(t0 + 10, again)
    cancelled = clock.call_at(t0 + 15, lambda: fired.append(-1))
    cancelled.cancel()
    await clock.advance(100)
    assert fired == [10, 20, 30]
    assert clock.next_at() is None


async def test_a_timeout_cancels_only_when_its_time_comes() -> None:
    clock = ManualClock()

    async def slow() -> None:
        async with clock.timeout(5):
            await asyncio.Event().wait()

    body = asyncio.create_task(slow())
    await clock.advance(4.9)
    assert not body.done()
    await clock.advance(0.1)
    with pytest.raises(TimeoutError):
        await body


async def test_a_block_that_ends_in_time_is_not_cancelled_later() -> None:
    clock = ManualClock()

    async def quick() -> str:
        async with clock.timeout(5):
            await clock.sleep(1)
        await clock.sleep(10)
        return "done"

    body = asyncio.create_task(quick())
    await clock.advance(20)
    assert await body == "done"
    assert clock.next_at() is None


async def test_the_clock_does_not_go_back() -> None:
    clock = ManualClock(100.0)
    with pytest.raises(ValueError, match="does not go back"):
        await clock.advance(-1)
    await clock.advance_to(50.0)
    assert clock.time() == 100.0


async def test_the_system_clock_reads_and_waits_in_real_time() -> None:
    clock = SystemClock()
    assert abs(clock.time() - time.time()) < 1
    fired = asyncio.Event()
    clock.call_at(clock.time() - 1, fired.set)  # already due: at once
    await asyncio.wait_for(fired.wait(), 5)
    with pytest.raises(TimeoutError):
        async with clock.timeout(0.01):
            await asyncio.Event().wait()


def test_build_context_runs_a_task_body_in_one_line() -> None:
    raw, clean, rejects = ef.Dataset("raw"), ef.Dataset("clean"), ef.Dataset("rejects")
    p = ef.Pipeline("p")

    @p.task(inputs=[raw], outputs=[clean, rejects])
    def split(ctx: ef.TaskContext) -> None:
        rows = ctx.inputs["raw"].metadata["rows"]
        ctx.emit(clean if rows else rejects, rows=rows, partition=ctx.partition)

    ctx = build_context(split, "2026-11-22", {raw: {"rows": 10}})
    split.fn(ctx)
    assert ctx.outputs() == {"clean": {"rows": 10, "partition": "2026-11-22"}}
    assert (ctx.attempt, ctx.inputs["raw"].version) == (1, 1)
    ctx = build_context(split, inputs={"raw": ef.Input("raw", "", 7, {"rows": 0})}, attempt=2)
    split.fn(ctx)
    assert ctx.outputs() == {"rejects": {"rows": 0, "partition": ""}}
    assert (ctx.attempt, ctx.inputs["raw"].version) == (2, 7)
    with pytest.raises(ef.DefinitionError, match="not one of its declared outputs"):
        ctx.emit("raw")
    with pytest.raises(ef.MetadataTooLarge):
        build_context(split, max_metadata_bytes=10).emit(clean, blob="x" * 100)


def test_build_check_context_runs_a_check_body() -> None:
    table = ef.Dataset("table", ef.daily())

    @ef.check(table)
    def has_rows(ctx: ef.CheckContext) -> tuple[bool, str]:
        return ctx.metadata["rows"] > 0, f"{ctx.metadata['rows']} rows in {ctx.partition}"

    ctx = build_check_context(has_rows, "2026-11-22", {"rows": 0}, version=3)
    assert has_rows.fn(ctx) == (False, "0 rows in 2026-11-22")
    assert (ctx.dataset, ctx.version) == ("table", 3)
