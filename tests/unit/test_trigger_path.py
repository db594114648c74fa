"""What an embedded trigger waits for, and what it no longer waits for: its body starts while its
step commits, before the commit is even encoded (and is dropped if that commit fails), before
those who wait for the commit hear of it, and the WAL is copied back into the file by a connection
of its own, not inside a commit (the checkpointer copies once enough was logged, and steady writes
do not grow the WAL without end)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

import eventflow as ef
from eventflow.core import codec
from eventflow.embedded.store import (
    BEHIND_BYTES,
    CHECKPOINT_BYTES,
    CHECKPOINT_COMMITS,
    WAL_LIMIT,
    Store,
)
from eventflow.errors import StorageError
from eventflow.events import DatasetProduced, DatasetProducedData, TaskSucceededData
from eventflow.runtime.step import Outcome

BODY = 16 * 1024  # bytes of metadata per logged event


def logged(n: int) -> Outcome:
    data = DatasetProducedData(dataset="src", version=n + 1, metadata={"pad": "x" * BODY})
    return Outcome(events=[DatasetProduced.of(data, source="test")])


async def test_commits_leave_the_checkpoint_to_the_checkpointer(tmp_path: Path) -> None:
    path = tmp_path / "eventflow.db"
    async with Store(path) as store:
        async with store.db.execute("PRAGMA wal_autocheckpoint") as cur:
            assert await cur.fetchone() == (0,)
        before = path.stat().st_size
        for n in range(2 * CHECKPOINT_BYTES // BODY):  # far below BEHIND_BYTES
            await store.commit(logged(n), [])
        await store.checkpoints.idle()
        # What the WAL held is in the file now: copied by the checkpointer, as no commit did.
        assert path.stat().st_size - before >= CHECKPOINT_BYTES
        with sqlite3.connect(path) as reader:
            count = reader.execute("SELECT COUNT(*) FROM events").fetchone()
        assert count == (2 * CHECKPOINT_BYTES // BODY,)


async def test_steady_writes_keep_the_wal_to_its_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "eventflow.db"
    wal = Path(f"{path}-wal")
    largest = 0
    async with Store(path) as store:
        # No checkpoint beside the commits: under steady writes none would let the WAL start
        # over (and one under way would hold the lock that the commit's needs).
        monkeypatch.setattr(store.checkpoints, "request", lambda: None)
        for n in range(60 * CHECKPOINT_COMMITS):  # about 40 MB of pages, no pause between
            await store.commit(logged(n), [])
            largest = max(largest, wal.stat().st_size)
    # Past BEHIND_BYTES a commit checkpoints as it begins and starts the WAL over, cut back to
    # WAL_LIMIT; what one commit writes on top is far less than WAL_LIMIT.
    assert largest <= BEHIND_BYTES + WAL_LIMIT


async def test_a_step_committing_when_the_instance_stops_tells_its_publisher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = ef.Pipeline("p")
    p.task(inputs=[ef.Dataset("src")], outputs=[ef.Dataset("out")], name="t")(lambda ctx: None)
    runtime = ef.EmbeddedRuntime(ef.App([p]), ef.Settings(home=tmp_path / "home"))
    await runtime.start()
    gate, writing = threading.Event(), asyncio.Event()
    in_thread = runtime.store._in_thread
    loop = asyncio.get_running_loop()

    async def held(fn: Any) -> Any:
        def slow(db: sqlite3.Connection) -> Any:
            loop.call_soon_threadsafe(writing.set)
            gate.wait(60)  # not for ever if the test fails before it opens the gate
            return fn(db)

        return await in_thread(slow)

    monkeypatch.setattr(runtime.store, "_in_thread", held)
    publishing = asyncio.ensure_future(runtime.emit("src", version=7))
    await writing.wait()  # the step's transaction is in the store's thread
    stopping = asyncio.ensure_future(runtime.stop())
    await asyncio.sleep(0)  # one turn of the loop: the stop has begun
    assert runtime._closed
    gate.set()
    await stopping
    receipt = await publishing  # not NotRunning: the step committed
    assert receipt.accepted
    assert isinstance(receipt.event, DatasetProduced) and receipt.event.data.version == 7


def held_commits(
    runtime: ef.EmbeddedRuntime, monkeypatch: pytest.MonkeyPatch, *, fail: bool = False
) -> asyncio.Event:
    """Hold the runtime's next commit until the returned gate opens; with `fail`, that commit
    then fails as on a full disk. Later commits go through."""
    gate = asyncio.Event()
    commit = runtime.store.commit
    calls = 0

    async def held(outcome: Outcome, records: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await gate.wait()
            if fail:
                raise StorageError("database or disk is full")
        await commit(outcome, records)

    monkeypatch.setattr(runtime.store, "commit", held)
    return gate


async def test_a_body_runs_while_its_step_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = asyncio.Event()
    p = ef.Pipeline("p")

    @p.task(inputs=[ef.Dataset("src")], outputs=[ef.Dataset("out")])
    async def body(ctx: ef.TaskContext) -> None:
        started.set()

    async with ef.EmbeddedRuntime(ef.App([p]), ef.Settings(home=tmp_path / "home")) as runtime:
        gate = held_commits(runtime, monkeypatch)
        publishing = asyncio.ensure_future(runtime.emit("src", version=1))
        try:
            await asyncio.wait_for(started.wait(), 30)  # the step that requested it is held
            assert not publishing.done()
        finally:
            gate.set()  # also when failing: the runtime stops only once its step is over
        assert (await publishing).accepted
        await runtime.wait_idle()
        succeeded = await runtime.store.events("eventflow.task.succeeded")
    assert len(succeeded) == 1


async def test_a_body_starts_before_its_steps_commit_is_encoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Encoding the step's state and events is the processor's own work, which a body started
    before it need not wait for."""
    started = asyncio.Event()
    p = ef.Pipeline("p")

    @p.task(inputs=[ef.Dataset("src")], outputs=[ef.Dataset("out")])
    async def body(ctx: ef.TaskContext) -> None:
        started.set()

    requesting: list[bool] = []  # per step that requested a run: had the body started?
    changes = codec.changes

    def encoding(engine: Any, fx: Any) -> Any:
        if fx.dispatch:
            requesting.append(started.is_set())
        return changes(engine, fx)

    monkeypatch.setattr(codec, "changes", encoding)
    async with ef.EmbeddedRuntime(ef.App([p]), ef.Settings(home=tmp_path / "home")) as runtime:
        assert (await runtime.emit("src", version=1)).accepted
        await runtime.wait_idle()
    assert requesting == [True]


async def test_a_body_whose_step_did_not_commit_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body started for a step that then fails to commit is stopped, and what one that
    already finished reported is not submitted: the state has no such run. The input, sent
    again, runs each task once."""
    stopped, blocked = asyncio.Event(), asyncio.Event()
    p = ef.Pipeline("p")

    @p.task(inputs=[ef.Dataset("src")], outputs=[ef.Dataset("quick")])
    async def quick(ctx: ef.TaskContext) -> None:
        ctx.log.info("quick ran")

    @p.task(inputs=[ef.Dataset("src")], outputs=[ef.Dataset("slow")])
    async def slow(ctx: ef.TaskContext) -> None:
        if stopped.is_set():
            return
        blocked.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.set()
            raise

    async with ef.EmbeddedRuntime(
        ef.App([p]), ef.Settings(home=tmp_path / "home", concurrency=4)
    ) as runtime:
        gate = held_commits(runtime, monkeypatch, fail=True)
        returned = asyncio.Event()
        run = runtime.executor.run

        async def attempt(request: Any, *args: Any) -> Any:
            results = await run(request, *args)
            returned.set()  # quick's: slow's is stopped first
            return results

        monkeypatch.setattr(runtime.executor, "run", attempt)
        publishing = asyncio.ensure_future(runtime.emit("src", version=1))
        try:
            await asyncio.wait_for(returned.wait(), 30)  # quick's result is in the runtime's hands
            await asyncio.wait_for(blocked.wait(), 30)
        finally:
            gate.set()
        with pytest.raises(StorageError, match="full"):
            await publishing
        assert stopped.is_set()
        await runtime.wait_idle()
        assert await runtime.store.events("eventflow.task.succeeded") == []
        assert await runtime.store.events("eventflow.task.started", "eventflow.task.log") == []
        assert await runtime.store.events("eventflow.deadletter") == []

        assert (await runtime.emit("src", version=1)).accepted
        await runtime.wait_idle()
        succeeded = await runtime.store.events("eventflow.task.succeeded")
    tasks = [e.data.task for _, e in succeeded if isinstance(e.data, TaskSucceededData)]
    assert sorted(tasks) == ["quick", "slow"]


async def test_a_bodys_result_never_overtakes_its_held_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The body's step committed, but the commit's callbacks (which release the body's held
    start) have not run yet when the body ends: its result still goes out after its start, so
    the log, subscribers and OpenLineage see the start first."""
    p = ef.Pipeline("p")
    p.task(inputs=[ef.Dataset("src")], outputs=[ef.Dataset("out")], name="t")(lambda ctx: None)
    runtime = ef.EmbeddedRuntime(ef.App([p]), ef.Settings(home=tmp_path / "home"))
    submitted: list[Any] = []
    monkeypatch.setattr(runtime, "_submit", submitted.append)
    committed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    async def attempt(request: Any, report: Any, trace: Any) -> list[Any]:
        await report("started")  # held: the step is still committing
        committed.set_result(True)  # its callbacks are scheduled, not run
        return ["failed"]

    monkeypatch.setattr(runtime.executor, "run", attempt)
    request: Any = None  # the attempt above does not read it
    await runtime._execute(request, None, committed)
    await asyncio.sleep(0)  # the commit's callbacks run
    assert submitted == ["started", "failed"]
