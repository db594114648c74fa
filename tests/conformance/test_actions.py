"""Operators' actions through each runtime: the action is in the log once, and so are its
consequences (runs started and ended, tasks requested), as the core decided them."""

from __future__ import annotations

import asyncio
import contextlib

import eventflow as ef
from eventflow.errors import EventError
from eventflow.events import PipelineAction, TaskFailedData

from .conftest import Start
from .harness import EmbeddedHarness, Harness, Recorder

D1, D2 = "2026-11-21", "2026-11-22"


def actions(h: Harness) -> list[str]:
    found = []
    for event in h.events:
        if isinstance(event, PipelineAction):
            data = event.data
            found.append(f"{data.action} {data.partition} {data.task or ''}".strip())
    return found


def chain(rec: Recorder, broken: set[str]) -> ef.App:
    """`first` then `second`, daily; `first` fails for good while its partition is in `broken`."""
    raw, mid = ef.Dataset("raw", ef.daily()), ef.Dataset("mid", ef.daily())
    p = ef.Pipeline("p")

    @p.task(inputs=[raw], outputs=[mid])
    def first(ctx: ef.TaskContext) -> None:
        rec.enter(ctx)
        if ctx.partition in broken:
            raise ef.Fail("the warehouse was down")
        ctx.emit(mid)

    @p.task(inputs=[mid])
    def second(ctx: ef.TaskContext) -> None:
        rec.enter(ctx)

    return ef.App([p])


async def test_pause_keeps_what_arrives_and_resume_runs_each_partition_once(start: Start) -> None:
    rec = Recorder()
    async with start(chain(rec, set())) as h:
        await h.act("p", "pause", reason="warehouse migration", operator="alice")
        for version in (1, 2, 3):
            await h.emit("raw", D1, version=version)
        await h.emit("raw", D2, version=1)
        await h.wait_idle()
        assert not rec.calls and not h.runs(), "nothing runs while paused"
        await h.act("p", "resume", reason="migration done", operator="alice")
        runs = await h.wait_for_runs(2)
        await h.wait_idle()
    assert sorted(c for c in rec.calls if c[0] == "first") == [
        ("first", D1, {"raw": 3}),
        ("first", D2, {"raw": 1}),
    ]
    assert [r.status for r in runs] == ["succeeded", "succeeded"]
    assert actions(h) == ["pause", "resume"]


async def test_rerun_task_runs_a_failed_task_again_and_downstream_as_if_fresh(
    start: Start,
) -> None:
    rec, broken = Recorder(), {D1}
    async with start(chain(rec, broken)) as h:
        await h.emit("raw", D1, version=7)
        [failed] = await h.wait_for_runs(1)
        assert failed.status == "failed"
        broken.clear()
        await h.act("p", "rerun_task", partition=D1, task="first", reason="warehouse is back")
        runs = await h.wait_for_runs(2)
        await h.wait_idle()
    assert runs[1].status == "succeeded"
    assert runs[1].reason == "task 'first' rerun by tester: warehouse is back"
    outcome = {t.task: t.status for t in runs[1].tasks}
    assert outcome == {"first": "succeeded", "second": "succeeded"}
    assert rec.calls == [
        ("first", D1, {"raw": 7}),
        ("first", D1, {"raw": 7}),  # the same input version, under a new run id
        ("second", D1, {"mid": h.produced("mid")[0].version}),
    ]
    first_ids = [r.run_id for r in h.task_results("first")]
    assert len(first_ids) == len(set(first_ids)) == 2
    assert actions(h) == [f"rerun_task {D1} first"]


async def test_rerun_run_reruns_a_partition_from_its_entry_tasks(start: Start) -> None:
    rec = Recorder()
    async with start(chain(rec, set())) as h:
        await h.emit("raw", D1, version=7)
        await h.wait_for_runs(1)
        await h.act("p", "rerun_run", partition=D1, reason="backfill")
        runs = await h.wait_for_runs(2)
        await h.wait_idle()
    assert [r.status for r in runs] == ["succeeded", "succeeded"]
    assert runs[1].reason == "run rerun by tester: backfill"
    assert [c[0] for c in rec.calls] == ["first", "second", "first", "second"]
    started = [e for e in h.events if e.type == "eventflow.pipeline.run.started"]
    assert len(started) == 2
    assert actions(h) == [f"rerun_run {D1}"]


async def test_cancel_ends_the_run_failed_and_stops_its_attempt(start: Start) -> None:
    began, release = asyncio.Event(), asyncio.Event()
    stopped: list[str] = []
    raw = ef.Dataset("raw", ef.daily())
    p = ef.Pipeline("p")

    @p.task(inputs=[raw], retries=3)
    async def slow(ctx: ef.TaskContext) -> None:
        began.set()
        try:
            await release.wait()
        except asyncio.CancelledError:
            stopped.append(ctx.run_id)
            raise

    async with start(ef.App([p])) as h:
        await h.emit("raw", D1, version=1)
        await asyncio.wait_for(began.wait(), 30)
        await h.act("p", "cancel", partition=D1, reason="wrong input", operator="bob")
        [run] = await h.wait_for_runs(1)
        release.set()  # a body the runtime could not stop ends now
        await h.wait_idle()
    assert run.status == "failed"
    assert run.reason == "cancelled by bob: wrong input"
    cancelled = [r for r in h.task_results("slow") if isinstance(r, TaskFailedData)]
    assert [(r.kind, r.retriable) for r in cancelled] == [("cancelled", False)]
    starts = [e for e in h.events if e.type == "eventflow.task.started"]
    assert len(starts) == 1, "not retried"
    if isinstance(h, EmbeddedHarness):
        assert stopped == [cancelled[0].run_id], "the body was stopped"
    assert actions(h) == [f"cancel {D1}"]


async def test_an_action_that_cannot_be_carried_out_is_dead_lettered_with_the_reason(
    start: Start,
) -> None:
    rec = Recorder()
    async with start(chain(rec, set())) as h:
        with contextlib.suppress(EventError):  # a dev instance also answers with the reason
            await h.act("p", "rerun_task", partition=D1, task="first", reason="oops")
        await h.wait_for(lambda: h.dead_letters())
        await h.emit("raw", D1, version=1)
        await h.wait_for_runs(1)
        await h.wait_idle()
    [letter] = h.dead_letters()
    assert "task 'first' never ran in partition '2026-11-21'" in letter.reason
    assert [c[0] for c in rec.calls] == ["first", "second"]


async def test_a_pause_survives_a_restart(start: Start) -> None:
    rec = Recorder()
    async with start(chain(rec, set())) as h:
        await h.act("p", "pause")
        await h.wait_idle()
        await h.restart()
        await h.emit("raw", D1, version=1)
        await h.wait_idle()
        assert not rec.calls, "still paused after the restart"
        await h.act("p", "resume")
        await h.wait_for_runs(1)
        await h.wait_idle()
    assert [c[0] for c in rec.calls] == ["first", "second"]
