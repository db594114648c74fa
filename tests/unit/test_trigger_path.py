"""What an embedded trigger waits for, and what it no longer waits for: its body starts before
those who wait for the commit hear of it, and the WAL is copied back into the file by a
connection of its own, not inside a commit (the checkpointer copies once enough was logged,
and steady writes do not grow the WAL without end)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

import eventflow as ef
from eventflow.embedded.store import (
    BEHIND_BYTES,
    CHECKPOINT_BYTES,
    CHECKPOINT_COMMITS,
    WAL_LIMIT,
    Store,
)
from eventflow.events import DatasetProduced, DatasetProducedData
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


async def test_a_body_starts_before_its_publisher_hears_the_commit(tmp_path: Path) -> None:
    started = asyncio.Event()
    p = ef.Pipeline("p")

    @p.task(inputs=[ef.Dataset("src")], outputs=[ef.Dataset("out")])
    async def body(ctx: ef.TaskContext) -> None:
        started.set()

    async with ef.EmbeddedRuntime(ef.App([p]), ef.Settings(home=tmp_path / "home")) as runtime:
        receipt = await runtime.emit("src", version=1)
        assert receipt.accepted
        assert started.is_set(), "the body's task was scheduled after the publisher's wake-up"
        await runtime.wait_idle()


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
