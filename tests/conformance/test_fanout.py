"""Dynamic fan-out on every runtime: items as their own runs, retries per item, a gather that
waits for them all, a failed item under each trigger rule, a second fan-out superseding."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from pathlib import Path
from typing import Literal

import eventflow as ef
from eventflow.events import TaskSucceededData
from eventflow.testing import EmbeddedHarness

from .conftest import Start

D1 = "2026-11-21"


def build(
    keys: list[list[str]],
    *,
    fail: frozenset[str] = frozenset(),
    flaky: frozenset[str] = frozenset(),
    trigger: Literal["all", "any"] = "all",
) -> tuple[ef.App, list[tuple[str, ...]], dict[str, int]]:
    """listing (daily) fans out to the keys of its next list; parse runs per item; summary
    gathers. Returns what each gather saw and the attempts per item."""
    day = ef.Dataset("day", ef.daily())
    files = ef.Dataset("files", ef.dynamic())
    parsed = ef.Dataset("parsed", ef.dynamic())
    summary = ef.Dataset("summary", ef.daily())
    p = ef.Pipeline("fan")
    lists = iter(keys)
    seen: list[tuple[str, ...]] = []
    attempts: dict[str, int] = {}

    @p.task(inputs=[day], outputs=[files], fan_out=ef.FanOut(max_width=50))
    def listing(ctx: ef.TaskContext) -> None:
        ctx.fan_out(files, next(lists))

    @p.task(inputs=[files], outputs=[parsed], retries=ef.Retry(count=1, backoff_s=0))
    def parse(ctx: ef.TaskContext) -> None:
        attempts[ctx.partition] = ctx.attempt
        if ctx.partition in fail or (ctx.partition in flaky and ctx.attempt == 1):
            raise RuntimeError(f"cannot parse {ctx.partition}")
        ctx.emit(parsed, rows=len(ctx.partition))

    @p.task(inputs=[parsed], outputs=[summary], gather=True, trigger=trigger)
    def total(ctx: ef.TaskContext) -> None:
        seen.append(tuple(f"{i.key}:{i.status}:{i.version is not None}" for i in ctx.items))

    return ef.App([p], datasets=[day]), seen, attempts


def ok(*keys: str) -> tuple[str, ...]:
    return tuple(f"{k}:succeeded:True" for k in keys)


async def test_each_item_runs_on_its_own_and_the_gather_sees_all(start: Start) -> None:
    keys = [f"f{n:02d}.csv" for n in range(12)]
    app, seen, attempts = build([keys], flaky=frozenset({"f03.csv"}))
    async with start(app, concurrency=4) as h:
        await h.emit("day", D1)
        await h.wait_idle()
    assert seen == [ok(*keys)]
    assert attempts["f03.csv"] == 2 and attempts["f04.csv"] == 1, "retries are per item"
    item_runs = {r.partition: r for r in h.runs() if r.partition in keys}
    assert sorted(item_runs) == keys and all(r.status == "succeeded" for r in item_runs.values())
    started = [e.data for e in h.events if e.type == "eventflow.task.started"]
    parse_ids = [d.run_id for d in started if d.task == "parse"]  # type: ignore[attr-defined]
    assert any(rid.startswith("parse:f03.csv:") and rid.endswith(":2") for rid in parse_ids)
    day_runs = [r for r in h.runs() if r.partition == D1]
    assert [r.status for r in day_runs] == ["succeeded", "succeeded"]
    assert [t.task for t in day_runs[1].tasks] == ["total"]


async def test_a_failed_item_holds_a_gather_of_all_back(start: Start) -> None:
    app, seen, _ = build([["a", "b", "c"]], fail=frozenset({"b"}))
    async with start(app) as h:
        await h.emit("day", D1)
        await h.wait_idle()
        why = await h.explain("fan", "total", D1)
    assert seen == []
    assert why.verdict == "waiting for a fan-out of listing whose items all succeed"
    [trigger] = [i for i in why.items if i.check == "trigger"]
    assert "3 of 3 items ended; failed: b" in trigger.detail
    [failed] = [r for r in h.runs() if r.status == "failed"]
    assert failed.partition == "b"


async def test_a_gather_of_any_runs_after_every_item_ended(start: Start) -> None:
    app, seen, _ = build([["a", "b", "c"]], fail=frozenset({"b"}), trigger="any")
    async with start(app) as h:
        await h.emit("day", D1)
        await h.wait_idle()
    assert seen == [("a:succeeded:True", "b:failed:False", "c:succeeded:True")]


async def test_a_second_fan_out_supersedes_the_first(start: Start) -> None:
    app, seen, _ = build([["a", "b"], ["b", "c", "d"]])
    async with start(app) as h:
        await h.emit("day", D1)
        await h.wait_idle()
        await h.emit("day", D1)
        await h.wait_idle()
    assert seen == [ok("a", "b"), ok("b", "c", "d")]


async def test_wider_than_max_width_fails_the_fan_out(start: Start) -> None:
    keys = [f"k{n}" for n in itertools.islice(itertools.count(), 51)]
    app, seen, attempts = build([keys])
    async with start(app) as h:
        await h.emit("day", D1)
        await h.wait_idle()
    assert seen == [] and attempts == {}
    failures = [e.data for e in h.events if e.type == "eventflow.task.failed"]
    [failure] = failures
    assert "max_width=50" in failure.error and not failure.retriable  # type: ignore[attr-defined]


async def test_a_restart_mid_fan_out_gathers_once(start: Start) -> None:
    entered, gate = asyncio.Event(), asyncio.Event()
    day, files = ef.Dataset("day", ef.daily()), ef.Dataset("files", ef.dynamic())
    summary = ef.Dataset("summary", ef.daily())
    p = ef.Pipeline("fan")
    keys = [f"k{n}" for n in range(6)]
    gathered: list[list[str]] = []

    @p.task(inputs=[day], outputs=[files], fan_out=ef.FanOut(max_width=10))
    def listing(ctx: ef.TaskContext) -> None:
        ctx.fan_out(files, keys)

    @p.task(inputs=[files], outputs=[files.name + "_parsed"])
    async def parse(ctx: ef.TaskContext) -> None:
        if ctx.partition == "k3":
            entered.set()
            await gate.wait()

    @p.task(inputs=[files.name + "_parsed"], outputs=[summary], gather=True)
    def total(ctx: ef.TaskContext) -> None:
        gathered.append([i.key for i in ctx.items])

    parsed = ef.Dataset(files.name + "_parsed", ef.dynamic())
    async with start(ef.App([p], datasets=[day, parsed]), concurrency=8) as h:
        await h.emit("day", D1)
        await asyncio.wait_for(entered.wait(), 60)
        await h.restart()  # k3 is cancelled in its body; its run is still in flight
        gate.set()
        await h.wait_idle()
    assert gathered == [keys]
    succeeded = [r for r in h.task_results() if isinstance(r, TaskSucceededData)]
    assert Counter(r.task for r in succeeded) == {"listing": 1, "parse": 6, "total": 1}


async def test_items_and_their_fan_out_paged_out_in_between(tmp_path: Path) -> None:
    keys = [f"f{n:02d}" for n in range(20)]
    app, seen, _ = build([keys])
    async with EmbeddedHarness(app, tmp_path, state_cache=2) as h:
        await h.emit("day", D1)
        await h.wait_idle()
    assert seen == [ok(*keys)]


async def test_cancelling_an_item_waiting_for_a_slot_ends_it_for_the_gather(
    tmp_path: Path,
) -> None:
    """A paged-out fan-out partition is read in with the item an operator cancels."""
    day, files = ef.Dataset("day", ef.daily()), ef.Dataset("files", ef.dynamic())
    parsed, summary = ef.Dataset("parsed", ef.dynamic()), ef.Dataset("summary", ef.daily())
    p = ef.Pipeline("fan", max_active_runs=1)
    entered, gate = asyncio.Event(), asyncio.Event()
    gathered: list[list[tuple[str, str]]] = []

    @p.task(inputs=[day], outputs=[files], fan_out=ef.FanOut(max_width=10))
    def listing(ctx: ef.TaskContext) -> None:
        ctx.fan_out(files, ["a", "b", "c"])

    @p.task(inputs=[files], outputs=[parsed])
    async def parse(ctx: ef.TaskContext) -> None:
        if ctx.partition == "a":
            entered.set()
            await gate.wait()

    @p.task(inputs=[parsed], outputs=[summary], gather=True, trigger="any")
    def total(ctx: ef.TaskContext) -> None:
        gathered.append([(i.key, i.status) for i in ctx.items])

    async with EmbeddedHarness(ef.App([p], datasets=[day]), tmp_path, state_cache=0) as h:
        await h.emit("day", D1)
        await asyncio.wait_for(entered.wait(), 60)
        await h.act("fan", "cancel", partition="b")  # waits for the run slot `a` holds
        gate.set()
        await h.wait_idle()
    assert gathered == [[("a", "succeeded"), ("b", "failed"), ("c", "succeeded")]]
