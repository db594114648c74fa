"""Embedded memory follows activity, not history: idle partitions live in the file only."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from pathlib import Path

import pytest

import eventflow as ef
from eventflow.core import Engine


def days(n: int) -> list[str]:
    return [(date(2026, 1, 1) + timedelta(days=i)).isoformat() for i in range(n)]


def app(calls: list[tuple[str, dict[str, int]]]) -> ef.App:
    src, lookup = ef.Dataset("src", ef.daily()), ef.Dataset("lookup")
    out = ef.Dataset("out", ef.daily())
    p = ef.Pipeline("p")

    @p.task(inputs=[src, lookup], outputs=[out], trigger="any")
    def join(ctx: ef.TaskContext) -> None:
        calls.append((ctx.partition, {k: i.version for k, i in ctx.inputs.items()}))

    return ef.App([p])


async def filled(runtime: ef.EmbeddedRuntime, keys: list[str]) -> None:
    """The lookup, then version 1 of each partition of src, one at a time; until idle."""
    await runtime.emit("lookup", version=1)
    for key in keys:
        await runtime.emit("src", key, version=1)
    await asyncio.wait_for(runtime.wait_idle(), 60)


async def test_idle_partitions_leave_memory_and_come_back_when_named(tmp_path: Path) -> None:
    calls: list[tuple[str, dict[str, int]]] = []
    settings = ef.Settings(home=tmp_path / "home", state_cache=5)
    keys = days(40)
    async with ef.EmbeddedRuntime(app(calls), settings) as runtime:
        await filled(runtime, keys)
        assert len(calls) == 40
        in_memory = runtime.engine.pipelines["p"].partitions
        assert len(in_memory) <= 5 + 1, "at most the cache, and the unpartitioned inputs"
        assert len(runtime.engine.datasets) <= 5 + 1

        await runtime.emit("src", keys[0], version=1)  # read back: a version already seen
        await asyncio.wait_for(runtime.wait_idle(), 60)
        assert len(calls) == 40
        await runtime.emit("src", keys[0], version=2)  # read back: newer, runs on it
        await asyncio.wait_for(runtime.wait_idle(), 60)
        assert calls[-1] == (keys[0], {"src": 2, "lookup": 1})

        await runtime.emit("lookup", version=2)  # evaluated in every partition, evicted or not
        await asyncio.wait_for(runtime.wait_idle(), 60)
        assert sorted(k for k, v in calls[41:]) == keys
        assert all(v["lookup"] == 2 for _, v in calls[41:])
        assert len(runtime.engine.pipelines["p"].partitions) <= 5 + 1

    async with ef.EmbeddedRuntime(app(calls), settings) as restarted:
        assert list(restarted.engine.pipelines["p"].partitions) == [""], "only live state loads"
        await restarted.emit("src", keys[5], version=3)
        await asyncio.wait_for(restarted.wait_idle(), 60)
    assert calls[-1] == (keys[5], {"src": 3, "lookup": 2})
    assert len(calls) == 82


async def test_a_step_reads_the_dataset_partitions_its_inputs_name_in_one_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, dict[str, int]]] = []
    settings = ef.Settings(home=tmp_path / "home", state_cache=2)
    keys = days(10)
    async with ef.EmbeddedRuntime(app(calls), settings) as runtime:
        await filled(runtime, keys)
        assert len(calls) == 10
        queries: list[list[tuple[str, str]]] = []
        read = runtime.store.page_in_datasets

        async def counted(engine: Engine, wanted: list[tuple[str, str]]) -> None:
            queries.append(list(wanted))
            await read(engine, wanted)

        monkeypatch.setattr(runtime.store, "page_in_datasets", counted)
        # Handed in together, so decided in one step: versions already seen, read back from
        # the file in one query and dropped.
        await asyncio.gather(*(runtime.emit("src", key, version=1) for key in keys))
        await asyncio.wait_for(runtime.wait_idle(), 60)
        assert len(calls) == 10
        assert len(queries) == 1
        assert {("src", key) for key in keys} <= set(queries[0])

        await asyncio.gather(*(runtime.emit("src", key, version=2) for key in keys))
        await asyncio.wait_for(runtime.wait_idle(), 60)
    assert sorted(calls[10:]) == [(key, {"src": 2, "lookup": 1}) for key in keys]


async def test_a_pipeline_read_whole_is_not_read_again_until_a_partition_leaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, dict[str, int]]] = []
    keys = days(4)
    settings = ef.Settings(home=tmp_path / "home", state_cache=100)
    async with ef.EmbeddedRuntime(app(calls), settings) as runtime:
        await filled(runtime, keys)
        whole: list[str] = []
        read = runtime.store.page_in_partitions

        async def counted(engine: Engine, pipeline: str, wanted: list[str] | None) -> None:
            if wanted is None:
                whole.append(pipeline)
            await read(engine, pipeline, wanted)

        monkeypatch.setattr(runtime.store, "page_in_partitions", counted)
        for version in (2, 3):  # an unpartitioned input is evaluated in every partition
            await runtime.emit("lookup", version=version)
            await asyncio.wait_for(runtime.wait_idle(), 60)
        assert whole == [], "every partition stayed in memory since the first lookup"
        assert len(calls) == 4 + 2 * len(keys)

        runtime.pager.limit = 1  # the next step's eviction drops partitions of p
        await runtime.emit("src", keys[0], version=2)
        await asyncio.wait_for(runtime.wait_idle(), 60)
        assert len(runtime.engine.pipelines["p"].partitions) < len(keys)
        await runtime.emit("lookup", version=4)
        await asyncio.wait_for(runtime.wait_idle(), 60)
        assert whole == ["p"], "read again once a partition had left"
    assert sorted(k for k, v in calls[-len(keys) :]) == keys
    assert all(v["lookup"] == 4 for _, v in calls[-len(keys) :])


async def test_a_restart_reads_dataset_states_with_versions_held_and_no_others(
    tmp_path: Path,
) -> None:
    """A version a blocking check holds is read back at a restart and released by the check's
    result then; the idle dataset states are not read until an event names them."""
    src, out = ef.Dataset("src", ef.daily()), ef.Dataset("out", ef.daily())
    entered, gate = asyncio.Event(), asyncio.Event()
    ran: list[str] = []

    def app(hold: bool) -> ef.App:
        p = ef.Pipeline("p")

        @p.task(inputs=[src], outputs=[out])
        def load(ctx: ef.TaskContext) -> None:
            ran.append(ctx.partition)

        @p.check(src)
        async def sane(ctx: ef.CheckContext) -> bool:
            if hold and ctx.partition == "2026-02-01":
                entered.set()
                await gate.wait()  # never opened: the runtime stops with the version held
            return True

        return ef.App([p])

    settings = ef.Settings(home=tmp_path / "home")
    keys = days(5)
    async with ef.EmbeddedRuntime(app(hold=True), settings) as runtime:
        for key in keys:
            await runtime.emit("src", key, version=1)
        await asyncio.wait_for(runtime.wait_idle(), 60)
        # Its metadata holds the bytes an idle record ends with, inside the held version.
        await runtime.emit("src", "2026-02-01", version=1, metadata={"pending": {}})
        await asyncio.wait_for(entered.wait(), 60)
    assert sorted(ran) == keys

    async with ef.EmbeddedRuntime(app(hold=False), settings) as restarted:
        assert list(restarted.engine.datasets) == [("src", "2026-02-01")], "only the held one"
        await asyncio.wait_for(restarted.wait_idle(), 60)  # its check is asked for again
        assert ran[-1] == "2026-02-01"
        await restarted.emit("src", keys[0], version=1)  # read back: a version already seen
        await asyncio.wait_for(restarted.wait_idle(), 60)
        assert restarted.engine.datasets[("src", keys[0])].seen == 1
    assert len(ran) == len(keys) + 1
