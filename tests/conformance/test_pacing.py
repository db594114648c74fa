"""Debounce and cooldown on every runtime: a burst makes one run on the newest version, a
cooldown spaces runs and never drops the last update, and a decision held back survives a
restart of the coordinator.

The exact times run on a `ManualClock` (the embedded runtime takes one); the same behaviours
run on both runtimes in real seconds, waiting for the events themselves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import eventflow as ef
from eventflow.testing import EmbeddedHarness, ManualClock

from .conftest import Start
from .harness import Harness, Recorder

D = "2026-11-22"


def paced_app(rec: Recorder, **options: Any) -> ef.App:
    raw = ef.Dataset("raw", ef.daily())
    p = ef.Pipeline("paced")

    @p.task(inputs=[raw], name="load", **options)
    def load(ctx: ef.TaskContext) -> None:
        rec.enter(ctx)

    return ef.App([p])


def versions(rec: Recorder) -> list[int]:
    return [v["raw"] for _, _, v in rec.calls]


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 60) -> None:
    """Poll `check` until it holds (state committed on Kafka gives no signal of its own)."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "not held back in time"
        await asyncio.sleep(0.1)


async def holding(h: Harness, version: int) -> bool:
    found = await h.explain("paced", "load", D)
    [raw] = [i for i in found.items if i.title.startswith("input raw")]
    return found.verdict.startswith("debouncing") and f"latest version {version}" in raw.detail


# -- exact times ---------------------------------------------------------------------------------
async def test_a_burst_runs_once_when_its_inputs_have_been_quiet(tmp_path: Path) -> None:
    clock, rec = ManualClock(), Recorder()
    async with EmbeddedHarness(paced_app(rec, debounce=60), tmp_path, clock=clock) as h:
        t0 = clock.time()
        for version in range(1, 11):
            await h.emit("raw", D, version)
            await clock.advance(10)
        await clock.advance(49)  # 59s after the last update
        await h.wait_for(lambda: h.produced("raw") and len(h.produced("raw")) == 10)
        assert rec.calls == []
        await clock.advance(1)
        [run] = await h.wait_for_runs()
    assert versions(rec) == [10]
    assert run.started_at.timestamp() == t0 + 90 + 60


async def test_a_cooldown_decides_the_last_update_when_it_ends(tmp_path: Path) -> None:
    clock, rec = ManualClock(), Recorder()
    async with EmbeddedHarness(paced_app(rec, cooldown=300), tmp_path, clock=clock) as h:
        t0 = clock.time()
        await h.emit("raw", D, 1)
        await h.wait_for_runs()
        for version in (2, 3):
            await clock.advance(100)
            await h.emit("raw", D, version)
        await clock.advance(99)
        await h.wait_for(lambda: len(h.produced("raw")) == 3)
        assert versions(rec) == [1]
        await clock.advance(1)
        runs = await h.wait_for_runs(2)
    assert versions(rec) == [1, 3]
    assert [r.started_at.timestamp() - t0 for r in runs] == [0, 300]


# -- every runtime -------------------------------------------------------------------------------
async def test_a_burst_makes_one_run_on_the_newest_version(start: Start) -> None:
    rec = Recorder()
    async with start(paced_app(rec, debounce=2)) as h:
        for version in range(1, 11):
            await h.emit("raw", D, version)
        await h.wait_for_runs(timeout=60)
        await h.wait_idle()
    assert versions(rec) == [10]
    assert len(h.runs()) == 1


async def test_a_cooldown_spaces_runs_and_never_drops_the_last_update(start: Start) -> None:
    rec = Recorder()
    async with start(paced_app(rec, cooldown=3)) as h:
        await h.emit("raw", D, 1)
        await h.wait_for_runs(timeout=60)
        await h.emit("raw", D, 2)
        await h.emit("raw", D, 3)
        first, second = await h.wait_for_runs(2, timeout=60)
        await h.wait_idle()
    assert versions(rec) == [1, 3]
    assert (second.started_at - first.started_at).total_seconds() >= 3


async def test_a_debounce_survives_a_coordinator_restart(start: Start) -> None:
    rec = Recorder()
    async with start(paced_app(rec, debounce=4)) as h:
        await h.emit("raw", D, 1)
        await h.emit("raw", D, 2)
        await until(lambda: holding(h, 2))
        await h.restart()
        await h.wait_for_runs(timeout=90)
        await h.wait_idle()
    assert versions(rec) == [2]
    assert len(h.runs()) == 1
