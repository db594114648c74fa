"""Behaviour every runtime must show, end to end: real workers, real state, real timing."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter

import orjson

import eventflow as ef

from .conftest import Start
from .harness import Recorder

D1, D2 = "2026-11-21", "2026-11-22"


def outcome(run: object) -> dict[str, str]:
    return {t.task: t.status for t in run.tasks}  # type: ignore[attr-defined]


async def test_chain_passes_metadata_along(start: Start) -> None:
    rec = Recorder()
    src, mid, end = ef.Dataset("src"), ef.Dataset("mid"), ef.Dataset("end")
    p = ef.Pipeline("chain")

    @p.task(inputs=[src], outputs=[mid])
    def one(ctx: ef.TaskContext) -> None:
        rec.enter(ctx)
        ctx.emit(mid, n=ctx.inputs["src"].metadata["n"] + 1)

    @p.task(inputs=[mid], outputs=[end])
    async def two(ctx: ef.TaskContext) -> None:
        rec.enter(ctx)
        ctx.emit(end, n=ctx.inputs["mid"].metadata["n"] * 10)

    async with start(ef.App([p])) as h:
        await h.emit("src", n=4)
        await h.wait_idle()
    [run] = h.runs()
    assert run.status == "succeeded"
    assert rec.tasks() == ["one", "two"]
    produced = [e.data for e in h.events if e.type == "eventflow.dataset.produced"]
    assert [(d.dataset, d.metadata.get("n")) for d in produced] == [  # type: ignore[attr-defined]
        ("src", 4),
        ("mid", 5),
        ("end", 50),
    ]


async def test_fan_out_then_all_join(start: Start) -> None:
    rec = Recorder()
    raw = ef.Dataset("raw", ef.daily())
    parts = [ef.Dataset(f"part{n}", ef.daily()) for n in range(5)]
    joined = ef.Dataset("joined", ef.daily())
    p = ef.Pipeline("fan")
    for n, out in enumerate(parts):

        @p.task(inputs=[raw], outputs=[out], name=f"branch{n}")
        async def branch(ctx: ef.TaskContext) -> None:
            rec.enter(ctx, "branches")
            await asyncio.sleep(0.05)
            rec.leave("branches")

    @p.task(inputs=parts, outputs=[joined], trigger="all")
    def join(ctx: ef.TaskContext) -> None:
        rec.enter(ctx)

    async with start(ef.App([p]), concurrency=8) as h:
        await h.emit("raw", D1)
        await h.wait_idle()
    assert Counter(rec.tasks()) == Counter([f"branch{n}" for n in range(5)] + ["join"])
    assert rec.peak["branches"] > 1, "independent branches run in parallel"
    assert rec.tasks()[-1] == "join"
    [run] = h.runs()
    assert run.status == "succeeded" and len(run.tasks) == 6


async def test_all_and_any_joins_per_partition(start: Start) -> None:
    rec = Recorder()
    x, y = ef.Dataset("x", ef.daily()), ef.Dataset("y", ef.daily())
    p = ef.Pipeline("joins")
    p.task(inputs=[x, y], name="all_join", trigger="all")(rec.enter)
    p.task(inputs=[x, y], name="any_join", trigger="any")(rec.enter)
    async with start(ef.App([p])) as h:
        await h.emit("x", D1, version=1)
        await h.emit("y", D2, version=1)
        await h.wait_idle()
        assert sorted(c[:2] for c in rec.calls) == [("any_join", D1), ("any_join", D2)]
        await h.emit("y", D1, version=2)
        await h.wait_idle()
    assert [c for c in rec.calls if c[0] == "all_join"] == [("all_join", D1, {"x": 1, "y": 2})]
    assert [c for c in rec.calls if c[0] == "any_join" and c[1] == D1] == [
        ("any_join", D1, {"x": 1}),
        ("any_join", D1, {"x": 1, "y": 2}),
    ]


async def test_branching_skips_the_branch_not_taken(start: Start) -> None:
    rec = Recorder()
    raw, good, bad = ef.Dataset("raw"), ef.Dataset("good"), ef.Dataset("bad")
    p = ef.Pipeline("branch")

    @p.task(inputs=[raw], outputs=[good, bad])
    def gate(ctx: ef.TaskContext) -> None:
        ctx.emit(good if ctx.inputs["raw"].metadata["score"] > 0.5 else bad)

    p.task(inputs=[good], name="deploy")(rec.enter)
    p.task(inputs=[bad], name="alert")(rec.enter)
    async with start(ef.App([p])) as h:
        await h.emit("raw", score=0.9)
        await h.wait_idle()
        await h.emit("raw", score=0.1)
        await h.wait_idle()
    assert rec.tasks() == ["deploy", "alert"]
    first, second = h.runs()
    assert outcome(first) == {"gate": "succeeded", "deploy": "succeeded", "alert": "skipped"}
    assert outcome(second) == {"gate": "succeeded", "alert": "succeeded", "deploy": "skipped"}
    assert first.status == second.status == "succeeded"


async def test_skip_emits_nothing_and_downstream_is_skipped(start: Start) -> None:
    rec = Recorder()
    raw, out = ef.Dataset("raw"), ef.Dataset("out")
    p = ef.Pipeline("skip")

    @p.task(inputs=[raw], outputs=[out])
    def maybe(ctx: ef.TaskContext) -> None:
        raise ef.Skip("nothing new")

    p.task(inputs=[out], name="after")(rec.enter)
    async with start(ef.App([p])) as h:
        await h.emit("raw")
        await h.wait_idle()
    [run] = h.runs()
    assert run.status == "succeeded"
    assert outcome(run) == {"maybe": "succeeded", "after": "skipped"}
    assert run.tasks[0].error == "nothing new"
    assert rec.tasks() == []


async def test_quality_gates(start: Start) -> None:
    rec = Recorder()
    raw, table, model = (ef.Dataset(n, ef.daily()) for n in ("raw", "table", "model"))
    p = ef.Pipeline("quality")

    @p.task(inputs=[raw], outputs=[table])
    def build(ctx: ef.TaskContext) -> None:
        ctx.emit(table, rows=ctx.inputs["raw"].metadata["rows"])

    p.task(inputs=[table], outputs=[model], name="train")(rec.enter)

    @ef.check(table, blocking=True)
    def has_rows(ctx: ef.CheckContext) -> tuple[bool, str]:
        return ctx.metadata["rows"] > 0, f"{ctx.metadata['rows']} rows"

    @ef.check(table, blocking=False)
    async def many_rows(ctx: ef.CheckContext) -> bool:
        return bool(ctx.metadata["rows"] >= 100)

    async with start(ef.App([p], checks=[has_rows, many_rows])) as h:
        await h.emit("raw", D1, rows=0)
        await h.wait_idle()
        await h.emit("raw", D2, rows=10)
        await h.wait_idle()
    assert rec.calls == [("train", D2, {"table": rec.calls[0][2]["table"]})]
    blocked, warned = h.runs()
    assert blocked.status == "failed"
    assert "check 'has_rows' failed: 0 rows" in blocked.reason
    assert outcome(blocked) == {"build": "succeeded", "train": "upstream_failed"}
    assert warned.status == "succeeded"
    found = {(c.check, c.target.partition): c.passed for c in h.checks()}
    assert found == {
        ("has_rows", D1): False,
        ("many_rows", D1): False,
        ("has_rows", D2): True,
        ("many_rows", D2): False,
    }


async def test_retries_with_backoff(start: Start) -> None:
    attempts: list[tuple[int, float]] = []
    raw, out = ef.Dataset("raw"), ef.Dataset("out")
    p = ef.Pipeline("retry")

    @p.task(inputs=[raw], outputs=[out], retries=ef.Retry(count=3, backoff_s=0.1, factor=2))
    def flaky(ctx: ef.TaskContext) -> None:
        attempts.append((ctx.attempt, time.monotonic()))
        if ctx.attempt < 3:
            raise ConnectionError(f"upstream not ready (try {ctx.attempt})")

    async with start(ef.App([p])) as h:
        await h.emit("raw")
        await h.wait_idle()
    assert [a for a, _ in attempts] == [1, 2, 3]
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2, f"backoff not respected: {gaps}"
    [run] = h.runs()
    assert run.status == "succeeded"
    assert run.tasks[0].attempts == 3


async def test_failure_propagates_and_fails_the_run(start: Start) -> None:
    raw, out = ef.Dataset("raw"), ef.Dataset("out")
    p = ef.Pipeline("fails")

    @p.task(inputs=[raw], outputs=[out])
    def broken(ctx: ef.TaskContext) -> None:
        raise ValueError("column 'ts' missing")

    p.task(inputs=[out], name="after")(lambda ctx: None)
    async with start(ef.App([p])) as h:
        await h.emit("raw")
        await h.wait_idle()
    [run] = h.runs()
    assert run.status == "failed"
    assert run.tasks[0].error == "ValueError: column 'ts' missing"
    assert outcome(run) == {"broken": "failed", "after": "upstream_failed"}


async def test_timeouts_for_async_and_blocking_bodies(start: Start) -> None:
    raw = ef.Dataset("raw")
    p = ef.Pipeline("slow")

    @p.task(inputs=[raw], timeout_s=0.2)
    async def sleeps_async(ctx: ef.TaskContext) -> None:
        await asyncio.sleep(30)

    @p.task(inputs=[raw], timeout_s=0.2)
    def sleeps_blocking(ctx: ef.TaskContext) -> None:
        time.sleep(0.6)

    async with start(ef.App([p])) as h:
        began = time.monotonic()
        await h.emit("raw")
        await h.wait_idle()
        assert time.monotonic() - began < 10
    [run] = h.runs()
    assert run.status == "failed"
    assert {t.task: t.error for t in run.tasks} == {
        "sleeps_async": "timeout: ran longer than 0.2s",
        "sleeps_blocking": "timeout: ran longer than 0.2s",
    }


async def test_pool_limits_concurrency(start: Start) -> None:
    rec = Recorder()
    raw = ef.Dataset("raw")
    p = ef.Pipeline("pooled")
    for n in range(6):

        @p.task(inputs=[raw], outputs=[ef.Dataset(f"o{n}")], pool="db", name=f"load{n}")
        async def load(ctx: ef.TaskContext) -> None:
            rec.enter(ctx, "db")
            await asyncio.sleep(0.05)
            rec.leave("db")

    async with start(ef.App([p], pools=[ef.Pool("db", 2)]), concurrency=8) as h:
        await h.emit("raw")
        await h.wait_idle()
    assert len(rec.calls) == 6
    assert rec.peak["db"] == 2


async def test_max_active_runs(start: Start) -> None:
    rec = Recorder()
    raw, mid = ef.Dataset("raw", ef.daily()), ef.Dataset("mid", ef.daily())
    p = ef.Pipeline("limited", max_active_runs=1)

    @p.task(inputs=[raw], outputs=[mid])
    async def first(ctx: ef.TaskContext) -> None:
        rec.enter(ctx, "runs")
        await asyncio.sleep(0.02)

    @p.task(inputs=[mid])
    async def second(ctx: ef.TaskContext) -> None:
        await asyncio.sleep(0.02)
        rec.leave("runs")

    async with start(ef.App([p]), concurrency=8) as h:
        for day in ("2026-11-18", "2026-11-19", "2026-11-20", D1):
            await h.emit("raw", day)
        await h.wait_idle()
    assert rec.peak["runs"] == 1
    assert [r.status for r in h.runs()] == ["succeeded"] * 4


async def test_schedule_publishes_clock_dataset(start: Start) -> None:
    rec = Recorder()
    tick = ef.Dataset("clock.every_second")
    p = ef.Pipeline("timed")
    p.task(inputs=[tick], name="on_tick")(rec.enter)
    app = ef.App([p], schedules=[ef.Schedule(tick, "* * * * * *")])
    async with start(app) as h:
        for _ in range(50):
            await asyncio.sleep(0.1)
            if rec.calls:
                break
    assert rec.tasks()[:1] == ["on_tick"]
    produced = [e for e in h.events if e.type == "eventflow.dataset.produced"]
    assert produced[0].data.metadata["tick"]  # type: ignore[attr-defined]


async def test_duplicates_and_older_versions_run_once(start: Start) -> None:
    rec = Recorder()
    raw = ef.Dataset("raw", ef.daily())
    p = ef.Pipeline("dedup")
    p.task(inputs=[raw], name="once")(rec.enter)
    async with start(ef.App([p])) as h:
        for version in (5, 5, 3, 5, 4):
            await h.emit("raw", D1, version=version)
        await h.wait_idle()
        await h.emit("raw", D1, version=5)
        await h.wait_idle()
    assert rec.calls == [("once", D1, {"raw": 5})]
    assert len(h.runs()) == 1


async def test_malformed_input_is_dead_lettered_and_service_keeps_running(start: Start) -> None:
    rec = Recorder()
    raw = ef.Dataset("raw", ef.daily())
    p = ef.Pipeline("robust")
    p.task(inputs=[raw], name="consume")(rec.enter)

    def event(**data: object) -> bytes:
        return orjson.dumps(
            {
                "specversion": "1.0",
                "id": "x",
                "source": "test",
                "type": "eventflow.dataset.produced",
                "data": data,
            }
        )

    async with start(ef.App([p]), max_metadata_bytes=1024) as h:
        await h.publish_raw(b"\x00\xffnot json at all")
        await h.publish_raw(event(dataset="raw", partition=D1))
        await h.publish_raw(event(dataset="raw.unknown", partition=D1, version=1))
        await h.publish_raw(
            event(dataset="raw", partition=D1, version=1, metadata={"x": "y" * 2000})
        )
        await h.publish_raw(event(dataset="raw", partition="yesterday", version=1))
        await h.emit("raw", D1, version=2)
        await h.wait_idle()
    reasons = [d.reason for d in h.dead_letters()]
    assert len(reasons) == 5
    assert reasons[0].startswith("not JSON")
    assert "data.version: Field required" in reasons[1]
    assert reasons[2] == "unknown dataset 'raw.unknown'"
    assert "over the 1024-byte limit" in reasons[3]
    assert "partition 'yesterday' is not a daily key" in reasons[4]
    assert h.dead_letters()[0].original_bytes == b"\x00\xffnot json at all"
    assert rec.calls == [("consume", D1, {"raw": 2})], "valid input still flows"
