"""The embedded history projector in a child process (`history_process`): the same history as
in process, listeners told once the child has stored the events (and only while somebody
listens), the rest projected at stop, and a child killed started again with nothing lost or
stored twice."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

import eventflow as ef
from eventflow.embedded import history_process
from eventflow.embedded.history_process import HistoryProcess
from eventflow.errors import StorageError
from eventflow.events import decode, encode
from eventflow.history import HistoryStore
from eventflow.history import store as history_store
from eventflow.operations.base import Fanout
from eventflow.testing import EmbeddedHarness

from .cascade import D1, D2, cascade, views


async def _log(home: Path) -> list[tuple[int, ef.Event]]:
    from eventflow.embedded.store import Store

    async with Store(home / "eventflow.db") as log:
        return await log.events(limit=100_000)


def projecting_apart(home: Path, history_url: str) -> EmbeddedHarness:
    """The cascade, its history projected by a child process."""
    return EmbeddedHarness(cascade(), home, history_url=history_url, history_process=True)


def child(h: EmbeddedHarness) -> HistoryProcess:
    assert isinstance(h.runtime.history, HistoryProcess)
    return h.runtime.history


async def test_the_child_projects_the_same_history_and_tells_the_listeners(
    tmp_path: Path, history_url: str
) -> None:
    heard: list[str] = []

    def listener(events: Sequence[ef.Event]) -> None:
        heard.extend(e.id for e in events)

    async with projecting_apart(tmp_path, history_url) as h:
        child(h).history.listeners.append(listener)
        for day in (D1, D2):
            await h.emit("src", day, 1)
        await h.wait_for_runs(2, timeout=60)
        await h.wait_idle()
        position = await child(h).flush()
        log = await _log(tmp_path)
        assert position == child(h).position == log[-1][0]
        async with HistoryStore(history_url) as store:
            stored = await views(store)
        assert stored["events"] == sorted(e.id for _, e in log)
        assert sorted(heard) == stored["events"]  # each once, and only once stored


async def ran(h: EmbeddedHarness, day: str, runs: int) -> None:
    """A run of the cascade on `day`, the `runs`-th, finished; until idle."""
    await h.emit("src", day, 1)
    await h.wait_for_runs(runs, timeout=60)
    await h.wait_idle()


async def test_what_is_left_is_projected_when_the_runtime_stops(
    tmp_path: Path, history_url: str
) -> None:
    async with projecting_apart(tmp_path, history_url) as h:
        await ran(h, D1, 1)
    log = await _log(tmp_path)
    async with HistoryStore(history_url) as store:
        assert (await views(store))["events"] == sorted(e.id for _, e in log)
        assert list((await store.positions("embedded:")).values()) == [log[-1][0]]


async def test_a_killed_child_is_started_again_and_nothing_is_lost_or_doubled(
    tmp_path: Path, history_url: str
) -> None:
    async with projecting_apart(tmp_path, history_url) as h:
        await ran(h, D1, 1)
        await child(h).flush()
        first = child(h)._proc
        assert first is not None
        first.kill()
        await first.wait()
        await ran(h, D2, 2)
        async with asyncio.timeout(60):
            while True:  # refused while no child runs; the next one takes it
                try:
                    await child(h).flush()
                    break
                except StorageError:
                    await asyncio.sleep(0.05)
        assert child(h)._proc is not first
    log = await _log(tmp_path)
    async with HistoryStore(history_url) as store:
        stored = await views(store)
        assert stored["events"] == sorted(e.id for _, e in log)  # each once
        assert sorted((r.partition, r.status) for r in stored["runs"]) == [
            (D1, "succeeded"),
            (D2, "succeeded"),
        ]


def test_the_runtime_hands_the_listeners_what_the_child_stored_and_ignores_stray_lines(
    tmp_path: Path,
) -> None:
    store = HistoryStore(f"sqlite+aiosqlite:///{tmp_path / 'history.db'}")
    heard: list[list[str]] = []
    store.listeners.append(lambda events: heard.append([e.id for e in events]))
    process = HistoryProcess(tmp_path / "eventflow.db", store)
    one, two, three = (
        ef.DatasetProduced.of(ef.DatasetProducedData(dataset="d", partition="", version=v))
        for v in (1, 2, 3)
    )
    process.hand(10, [encode(one), encode(two)])
    process.hand(12, [encode(three)])
    assert not process._heard(b"Some library printed this\n")
    assert not process._heard(b"p\n")
    assert (process.position, heard) == (0, [])
    assert process._heard(b"p 10\n")  # the first of the two only: they wait
    assert (process.position, heard) == (10, [])
    assert process._heard(b"p 12\n")
    assert (process.position, heard) == (12, [[one.id, two.id, three.id]])


def test_what_was_committed_before_a_listener_came_reaches_it_once_stored(
    tmp_path: Path,
) -> None:
    """A live page that opens while the child is behind still hears of the events committed
    just before: the hand-off keeps them whether or not anybody listens yet."""
    store = HistoryStore(f"sqlite+aiosqlite:///{tmp_path / 'history.db'}")
    process = HistoryProcess(tmp_path / "eventflow.db", store)
    before, after = (
        ef.DatasetProduced.of(ef.DatasetProducedData(dataset="d", partition="", version=v))
        for v in (1, 2)
    )
    process.hand(1, [encode(before)])
    assert process._heard(b"p 0\n")
    heard: list[ef.Event] = []
    store.listeners.append(heard.extend)
    process.hand(2, [encode(after)])
    assert process._heard(b"p 2\n")
    assert heard == [before, after]


def test_after_a_lag_events_are_read_back_only_while_somebody_listens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A feed cut off for falling behind leaves the listeners; the rest is not read back."""
    monkeypatch.setattr(history_process, "HANDED_CHUNK", 2)
    store = HistoryStore(f"sqlite+aiosqlite:///{tmp_path / 'history.db'}")
    process = HistoryProcess(tmp_path / "eventflow.db", store)
    heard: list[int] = []

    def once(events: Sequence[ef.Event]) -> None:
        heard.extend(e.data.version for e in events)  # type: ignore[attr-defined]
        store.listeners.remove(once)

    store.listeners.append(once)
    events = [
        ef.DatasetProduced.of(ef.DatasetProducedData(dataset="d", partition="", version=v))
        for v in range(1, 6)
    ]
    process.hand(1, [encode(e) for e in events])
    read: list[bytes] = []

    def counted(raw: bytes, **limits: int) -> ef.Event:
        read.append(raw)
        return decode(raw, **limits)

    monkeypatch.setattr(history_store, "decode", counted)
    assert process._heard(b"p 5\n")
    assert heard == [1, 2] and len(read) == 2


async def test_a_listener_that_leaves_as_it_hears_does_not_cost_the_next_one_its_events(
    tmp_path: Path,
) -> None:
    leaving: list[str] = []
    staying: list[str] = []

    def leave(events: Sequence[ef.Event]) -> None:
        leaving.extend(e.id for e in events)
        store.listeners.remove(leave)

    async with HistoryStore(f"sqlite+aiosqlite:///{tmp_path / 'history.db'}") as store:
        store.listeners += [leave, lambda events: staying.extend(e.id for e in events)]
        event = ef.DatasetProduced.of(ef.DatasetProducedData(dataset="d", partition="", version=1))
        await store.apply([event])
    assert leaving == staying == [event.id]


def test_the_live_feed_listens_to_the_history_only_while_a_reader_is_there() -> None:
    """With no page open, the history hands nobody anything, so it reads nothing back."""
    listeners: list[Callable[[Sequence[ef.Event]], None]] = []
    fanout = Fanout(limit=1, listeners=listeners)
    assert listeners == []
    first, second = fanout.feed(), fanout.feed()
    assert listeners == [fanout.put_all]
    first.close()
    first.close()
    assert listeners == [fanout.put_all]
    second.close()
    assert listeners == []
    fanout.feed()  # cut off once it falls behind: it leaves as a closed one does
    assert listeners == [fanout.put_all]
    event = ef.DatasetProduced.of(ef.DatasetProducedData(dataset="d", partition="", version=1))
    fanout.put_all([event, event])
    assert listeners == []


async def test_a_failed_supervision_fails_the_runtime_which_still_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = EmbeddedHarness(cascade(), tmp_path, history_process=True)
    await h.start()
    try:

        def broken(line: bytes) -> bool:
            raise RuntimeError("a defect in following the child")

        monkeypatch.setattr(child(h), "_heard", broken)
        await h.emit("src", D1, 1)  # its commit wakes the child, whose answer breaks it
        await asyncio.wait_for(h.runtime.failed.wait(), 60)
        assert "a defect in following the child" in str(h.runtime.error)
    finally:
        await asyncio.wait_for(h.stop(), 120)  # no flush left waiting for an answer
    proc = child(h)._proc
    assert proc is not None and proc.returncode is not None, "the child was left running"
    assert not child(h).started
