"""The history store's contract, on SQLite and PostgreSQL: idempotent and order-free projection,
every query and filter, pagination, lineage, task logs and retention."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from eventflow.events import (
    Event,
    FreshnessData,
    FreshnessRecovered,
    FreshnessViolated,
    dead_letter,
    decode,
    encode,
)
from eventflow.history import HistoryStore, VersionRef, schema
from eventflow.history import store as history_store
from eventflow.history.projection import log_rows

from .events import (
    PART,
    RUN,
    TaskLog,
    at,
    chain,
    pipeline_run,
    produced,
    task_run,
    version,
)


async def snapshot(store: HistoryStore) -> dict[str, Any]:
    """Everything the queries say about the small history (event `seq`s aside: they number
    arrivals)."""
    lineage = await store.lineage("b", PART, 2, depth=3)
    return {
        "runs": (await store.runs()).model_dump(),
        "run": (await store.run(RUN)),
        "t1": await store.attempts("p", "t1"),
        "freshness": await store.freshness(now=at(100)),
        "versions": await store.versions("a"),
        "lineage": lineage.model_dump() if lineage else None,
        "checks": await store.checks(),
        "dead": await store.dead_letters(),
        "logs": await store.logs("t1:2026-11-01:h:2"),
        "events": sorted(e.id for e in await store.events(limit=1000)),
    }


async def test_replaying_the_same_events_changes_nothing(store: HistoryStore) -> None:
    events = chain()
    assert await store.apply(events) == len(events)
    before = await snapshot(store)
    assert await store.apply(events) == 0
    assert await store.apply(events[3:7] + events[:2]) == 0
    assert await snapshot(store) == before
    assert len(await store.events(limit=1000)) == len(events)


async def test_any_order_converges_to_the_same_history(store: HistoryStore) -> None:
    events = chain()
    await store.apply(events)
    expected = await snapshot(store)
    for seed in range(3):
        await store.clear()
        shuffled = events[:]
        random.Random(seed).shuffle(shuffled)
        for start in range(0, len(shuffled), 3):  # in small batches, as a projector sends them
            await store.apply(shuffled[start : start + 3])
        assert await snapshot(store) == expected, seed
    await store.clear()
    for event in reversed(events):
        await store.apply([event])
    assert await snapshot(store) == expected


async def test_a_start_arriving_after_the_end_does_not_reopen_the_attempt(
    store: HistoryStore,
) -> None:
    requested, started, succeeded, *_ = task_run("t1", [version("a", 1)], [version("b", 2)], 0)
    await store.apply([requested, succeeded])
    await store.apply([started])
    attempt = await store.attempt("t1:2026-11-01:h:1")
    assert attempt is not None
    assert (attempt.status, attempt.worker) == ("succeeded", "w1")
    assert (attempt.requested_at, attempt.started_at, attempt.ended_at) == (at(0), at(1), at(2))
    assert attempt.outputs == [VersionRef(dataset="b", partition=PART, version=2)]


async def test_of_two_endings_the_earlier_wins_in_either_order(store: HistoryStore) -> None:
    failed = task_run("t1", [], [], 0, fail="lost")[2]
    late = task_run("t1", [], [version("b", 2)], 5)[2]  # the same run id, reported later
    for order in ([failed, late], [late, failed]):
        await store.clear()
        for event in order:
            await store.apply([event])
        attempt = await store.attempt("t1:2026-11-01:h:1")
        assert attempt is not None
        assert (attempt.status, attempt.error, attempt.outputs) == ("failed", "lost", [])


async def test_a_run_and_its_attempts(store: HistoryStore) -> None:
    await store.apply(chain())
    detail = await store.run(RUN)
    assert detail is not None
    assert (detail.run.status, detail.run.started_at, detail.run.finished_at) == (
        "succeeded",
        at(2),
        at(40),
    )
    assert [(a.task, a.attempt, a.status) for a in detail.attempts] == [
        ("t1", 1, "failed"),
        ("t1", 2, "succeeded"),
        ("t2", 1, "succeeded"),
        ("t3", 1, "succeeded"),
    ]
    first = detail.attempts[0]
    assert (first.error, first.error_kind, first.worker) == ("boom", "error", "w1")
    assert first.inputs == [VersionRef(dataset="a", partition=PART, version=1)]
    assert await store.run("nope") is None
    t1 = await store.attempts("p", "t1")
    assert [a.attempt for a in t1] == [2, 1]
    assert await store.attempts("p", "t1", partition="other") == []


async def test_runs_filter_and_page(store: HistoryStore) -> None:
    events: list[Event] = []
    for i in range(7):
        status = "failed" if i % 3 == 0 else "succeeded"
        pipeline = "p" if i % 2 == 0 else "q"
        events += pipeline_run(f"r{i}", pipeline, f"k{i % 2}", i * 10, i * 10 + 5, status)
    events += pipeline_run("r7", "p", "k0", 70, None)  # still running
    await store.apply(events)

    page = await store.runs()
    assert page.total == 8 and page.next_cursor is None
    assert [r.run_id for r in page.items] == [f"r{i}" for i in range(7, -1, -1)]
    assert [r.run_id for r in (await store.runs(pipeline="q")).items] == ["r5", "r3", "r1"]
    assert [r.run_id for r in (await store.runs(partition="k0", status="failed")).items] == [
        "r6",
        "r0",
    ]
    assert [r.run_id for r in (await store.runs(status="running")).items] == ["r7"]
    window = await store.runs(since=at(20), until=at(50))
    assert [r.run_id for r in window.items] == ["r4", "r3", "r2"] and window.total == 3

    seen: list[str] = []
    cursor: str | None = None
    while True:
        got = await store.runs(limit=3, cursor=cursor)
        assert got.total == 8
        seen += [r.run_id for r in got.items]
        cursor = got.next_cursor
        if cursor is None:
            break
    assert seen == [f"r{i}" for i in range(7, -1, -1)]
    offset = await store.runs(limit=3, offset=3, pipeline="p")
    assert [r.run_id for r in offset.items] == ["r2", "r0"] and offset.total == 5


async def test_versions_and_freshness(store: HistoryStore) -> None:
    await store.apply(
        [
            produced("a", 1, 0),
            produced("a", 3, 10),
            produced("a", 2, 20),
            produced("a", 5, 5, partition="x"),
        ]
    )
    assert [v.version for v in await store.versions("a", partition=PART)] == [3, 2, 1]
    assert [v.version for v in await store.versions("a")] == [5, 3, 2, 1]
    fresh = await store.freshness(now=at(60))
    assert [(f.dataset, f.partition, f.version, f.age_s) for f in fresh] == [
        ("a", PART, 3, 50.0),
        ("a", "x", 5, 55.0),
    ]
    assert fresh[0].metadata == {"n": 3}
    assert await store.freshness("b") == []


async def test_lineage_up_and_down_a_three_step_chain(store: HistoryStore) -> None:
    await store.apply(chain())
    d = await store.lineage("d", PART, 4, depth=3)
    assert d is not None and d.producer is not None
    assert d.producer.task == "t3"
    [c] = d.upstream
    assert (c.dataset, c.version, c.producer and c.producer.task) == ("c", 3, "t2")
    [b] = c.upstream
    assert (b.dataset, b.producer and b.producer.run_id) == ("b", "t1:2026-11-01:h:2")
    [a] = b.upstream
    assert (a.dataset, a.producer, a.upstream) == ("a", None, [])
    assert d.downstream == []

    root = await store.lineage("a", PART, 1, depth=3)
    assert root is not None
    assert [(x.attempt.task, x.attempt.attempt) for x in root.downstream] == [("t1", 1), ("t1", 2)]
    failed, ok = root.downstream
    assert failed.outputs == []
    [b2] = ok.outputs
    [t2] = b2.downstream
    [c2] = t2.outputs
    [t3] = c2.downstream
    assert [(o.dataset, o.version, o.downstream) for o in t3.outputs] == [("d", 4, [])]

    shallow = await store.lineage("a", PART, 1, depth=1)
    assert shallow is not None
    assert [o.downstream for x in shallow.downstream for o in x.outputs] == [[]]
    assert await store.lineage("a", PART, 99) is None


async def test_checks_dead_letters_and_logs(store: HistoryStore) -> None:
    await store.apply(chain())
    [check] = await store.checks(dataset="a")
    assert (check.check, check.passed, check.version, check.message) == ("c1", True, 1, "ok")
    assert await store.checks(passed=False) == []
    assert await store.checks(dataset="b") == []
    [dead] = await store.dead_letters()
    assert (dead.reason, dead.origin, dead.size, dead.truncated) == (
        "not JSON: bad",
        "publish",
        10,
        False,
    )
    assert dead.excerpt == "\ufffd not json"
    assert await store.dead_letters(since=at(51)) == []
    lines = await store.logs("t1:2026-11-01:h:2")
    assert [(x.seq, x.line, x.level, x.message, x.time) for x in lines] == [
        (0, 0, "INFO", "reading a", at(13)),
        (0, 1, "WARNING", "slow\ufffddisk", at(13.5)),
    ]
    assert await store.logs("t2:2026-11-01:h:1") == []


def test_log_rows_read_the_task_log_payload_as_a_dict() -> None:
    data = {
        "run_id": "r",
        "task": "t",
        "pipeline": "p",
        "partition": "k",
        "attempt": 3,
        "seq": 7,
        "lines": [{"time": "2026-11-01T12:00:00+00:00", "level": "ERROR", "message": "x"}],
        "truncated": True,
    }
    [row] = log_rows(data)
    assert row | {"time": None} == {
        "run_id": "r",
        "seq": 7,
        "line": 0,
        "task": "t",
        "pipeline": "p",
        "partition": "k",
        "attempt": 3,
        "time": None,
        "level": "ERROR",
        "message": "x",
        "truncated": True,
    }
    assert row["time"] == at(0)


async def test_later_log_events_append_in_order(store: HistoryStore) -> None:
    [log] = [e for e in chain() if isinstance(e, TaskLog)]
    second = TaskLog.of(log.data.model_copy(update={"seq": 1}), time=at(15))
    await store.apply([second, log])
    assert [(x.seq, x.line) for x in await store.logs(log.data.run_id)] == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
    ]


async def test_events_filters(store: HistoryStore) -> None:
    events = chain()
    await store.apply(events)
    everything = await store.events(limit=1000)
    assert [e.id for e in everything] == [e.id for e in events]
    assert {e.type for e in await store.events(types=["eventflow.task.failed"])} == {
        "eventflow.task.failed"
    }
    a = await store.events(dataset="a")
    assert [e.type for e in a] == ["eventflow.dataset.produced", "eventflow.check.completed"]
    assert all(e.pipeline == "p" for e in await store.events(pipeline="p", limit=1000))
    in_p = [e.id for e in events if getattr(e.data, "pipeline", None) == "p"]
    assert [e.id for e in await store.events(pipeline="p", limit=1000)] == in_p
    after = await store.events(after_seq=everything[4].seq, limit=2)
    assert [e.id for e in after] == [e.id for e in events[5:7]]
    assert [e.id for e in await store.events(after_id=events[-2].id)] == [events[-1].id]
    assert [e.id for e in await store.events(since=at(40))] == [e.id for e in events[-2:]]
    assert everything[0].body["data"]["dataset"] == "a"


async def test_logged_bytes_make_the_same_history_as_the_events(store: HistoryStore) -> None:
    """The embedded log's bytes are projected from their JSON, not built into events again:
    every table must come out as from the events themselves, freshness included."""
    due = FreshnessData(
        kind="dataset",
        name="a",
        partition=PART,
        policy="deadline",
        expected_by=at(60),
        since=at(61),
        newest_version=1,
        message="a is late",
    )
    events = [
        *chain(),
        FreshnessViolated.of(due, time=at(61)),
        FreshnessRecovered.of(due.model_copy(update={"newest_version": 2}), time=at(70)),
    ]
    await store.apply(events)
    expected = await snapshot(store), await store.violations(open_only=False), await stored(store)
    assert expected[1], "the freshness events are part of what is compared"
    await store.clear()
    assert await store.apply_logged([encode(e) for e in events]) == len(events)
    assert (
        await snapshot(store),
        await store.violations(open_only=False),
        await stored(store),
    ) == expected
    assert await store.apply_logged([encode(e) for e in events]) == 0
    # A violation stored one way is closed by its recovery stored the other.
    await store.clear()
    await store.apply(events[:-1])
    await store.apply_logged([encode(events[-1])])
    assert await store.violations(open_only=False) == expected[1]
    assert await stored(store) == expected[2]


async def stored(store: HistoryStore) -> tuple[dict[str, Event], set[str]]:
    """The events' bodies as events (their times may be written `Z` or `+00:00`), and the
    freshness rows' keys: what `snapshot` does not show."""
    async with store.engine.connect() as conn:
        bodies = (await conn.execute(select(schema.events.c.id, schema.events.c.body))).all()
        keys = (await conn.scalars(select(schema.freshness.c.key))).all()
    return {i: decode(orjson.dumps(body)) for i, body in bodies}, set(keys)


def _logged(event: Event, change: Callable[[dict[str, Any]], object]) -> bytes:
    """`event` as logged, then changed as a damaged or hand-written log would have it."""
    doc = orjson.loads(encode(event))
    change(doc)
    return orjson.dumps(doc)


async def test_a_logged_event_that_does_not_project_is_left_out_and_the_rest_kept(
    store: HistoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    good = produced("a", 1, 0)
    [started] = pipeline_run("r9", "p", PART, 1, None)
    no_hash = dead_letter(b"x", "bad", origin="publish")
    logged = [
        b"\xff not json",
        b"[1, 2]",
        _logged(good, lambda d: d.update(type=["a list"])),
        _logged(good, lambda d: d.update(id="other", type="no.such.type")),
        _logged(produced("a", 2, 1), lambda d: d["data"].pop("version")),
        _logged(started, lambda d: d["data"].update(status="bogus")),
        _logged(no_hash, lambda d: d["data"].pop("sha256")),
        encode(good),
    ]
    assert await store.apply_logged(logged, {"embedded:x": 4}) == 2
    assert {e.id for e in await store.events(limit=10)} == {good.id, no_hash.id}
    assert [v.version for v in await store.versions("a")] == [1]
    assert (await store.runs()).items == []
    assert [d.id for d in await store.dead_letters()] == [no_hash.id]
    assert await store.positions() == {"embedded:x": 4}
    refused = [r.getMessage() for r in caplog.records if "not projected" in r.getMessage()]
    assert len(refused) == 6
    assert "version" in refused[-2] and "bogus" in refused[-1]


async def test_a_logged_value_the_tables_refuse_sends_the_batch_the_checked_way(
    store: HistoryStore,
) -> None:
    """A value of the wrong type passes the projection and is refused by the database; the
    batch is then taken from the events built and checked, which leave it out."""
    good = produced("a", 1, 0)
    check = next(e for e in chain() if e.type == "eventflow.check.completed")
    logged = [_logged(check, lambda d: d["data"].update(passed="maybe")), encode(good)]
    assert await store.apply_logged(logged, {"embedded:x": 2}) == 1
    assert [e.id for e in await store.events(limit=10)] == [good.id]
    assert await store.checks() == []
    assert await store.positions() == {"embedded:x": 2}


async def test_logged_events_are_built_again_only_for_listeners(
    store: HistoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[bytes] = []

    def counted(raw: bytes, **limits: int) -> Event:
        built.append(raw)
        return decode(raw, **limits)

    monkeypatch.setattr(history_store, "decode", counted)
    first, second = produced("a", 1, 0), produced("a", 2, 1)
    await store.apply_logged([encode(first)])
    assert built == []
    heard: list[str] = []
    store.listeners.append(lambda events: heard.extend(e.id for e in events))
    await store.apply_logged([encode(second)])
    assert heard == [second.id] and built == [encode(second)]


async def test_positions_are_stored_with_the_rows(store: HistoryStore) -> None:
    await store.apply(chain()[:2], {"kafka:eventflow.datasets:0": 2, "embedded:x": 9})
    await store.apply([], {"kafka:eventflow.datasets:0": 5})
    assert await store.positions("kafka:") == {"kafka:eventflow.datasets:0": 5}
    assert await store.positions() == {"kafka:eventflow.datasets:0": 5, "embedded:x": 9}
    await store.clear()
    assert await store.positions() == {}


async def test_retention_prunes_old_history_but_keeps_freshness(store: HistoryStore) -> None:
    events = chain()
    await store.apply(events)
    await store.apply(
        [
            *pipeline_run("new", "p", "k", 100 * 86400, None),
            produced("a", 9, 100 * 86400, partition="k"),
        ]
    )
    assert store.retention_days == 30
    deleted = await store.prune(at(40 * 86400))
    assert deleted > 0
    assert [r.run_id for r in (await store.runs()).items] == ["new"]
    assert await store.run(RUN) is None
    assert await store.attempts("p", "t1") == []
    assert await store.checks() == [] and await store.dead_letters() == []
    assert await store.logs("t1:2026-11-01:h:2") == []
    assert len(await store.events(limit=1000)) == 2
    assert [(f.dataset, f.version) for f in await store.freshness()] == [
        ("a", 1),
        ("a", 9),
        ("b", 2),
        ("c", 3),
        ("d", 4),
    ]
    assert await store.prune(at(40 * 86400)) == 0


async def test_no_retention_keeps_everything(history_url: str) -> None:
    async with HistoryStore(history_url) as store:
        await store.apply(chain())
        assert await store.prune(at(0) + timedelta(days=10_000)) == 0
        assert len(await store.events(limit=1000)) == len(chain())


@pytest.mark.parametrize("url", ["mysql://x/y", "not a url", "sqlite:///plain-driver.db"])
def test_unknown_urls_are_refused_with_what_to_use(url: str) -> None:
    from eventflow.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="sqlite\\+aiosqlite"):
        HistoryStore(url)


async def test_start_and_stop_are_idempotent(history_url: str) -> None:
    store = HistoryStore(history_url)
    await store.start()
    await store.start()
    await store.apply([produced("a", 1, 0)])
    await store.stop()
    await store.stop()
    async with HistoryStore(history_url) as again:
        assert [v.version for v in await again.versions("a")] == [1]


async def test_sqlite_write_transactions_hold_the_write_lock_from_their_start(
    tmp_path: Path,
) -> None:
    """Several processes write one SQLite history (a dev instance and the alerts service, say).
    A write transaction that began deferred and read first fails with "database is locked" if
    another wrote meanwhile, whatever the busy timeout; taking the lock as it begins makes a
    writer wait its turn instead. Reads take no lock."""
    path = tmp_path / "history.db"
    async with HistoryStore(f"sqlite+aiosqlite:///{path}") as store:
        other = sqlite3.connect(path, timeout=0, isolation_level=None)

        def other_can_write() -> bool:
            try:
                other.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                return False
            other.execute("ROLLBACK")
            return True

        try:
            async with store._read() as conn:
                await conn.execute(select(func.count()).select_from(schema.events))
                assert other_can_write(), "a read holds the write lock"
            async with store._writing() as conn:
                assert not other_can_write(), "a write transaction began without the lock"
                await conn.execute(select(func.count()).select_from(schema.events))
            assert other_can_write()
        finally:
            other.close()


async def test_a_cancelled_write_lets_go_of_the_sqlite_write_lock(tmp_path: Path) -> None:
    """A runtime that stops cancels its projector, maybe inside `apply`. Cut off while the
    driver's thread holds the transaction, the write left its pooled connection holding the
    write lock, and every later writer of the file (the runtime's last flush, the next start)
    waited out the busy timeout and failed with "database is locked"."""
    path = tmp_path / "history.db"
    async with HistoryStore(f"sqlite+aiosqlite:///{path}") as store:
        inserting = asyncio.Event()

        def statement(*args: Any) -> None:  # conn, cursor, sql, parameters, context, many
            if args[-1]:
                inserting.set()

        sa_event.listen(store.engine.sync_engine, "before_cursor_execute", statement, named=False)
        for n in range(3):  # cut while the driver's thread inserts rows
            inserting.clear()
            batch = [produced(f"a{n}", v, v) for v in range(1, 2001)]
            writing = asyncio.create_task(store.apply(batch))
            await inserting.wait()
            writing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writing
            other = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")  # "database is locked" at once if held
                other.execute("ROLLBACK")
            finally:
                other.close()
        await store.apply([produced("b", 1, 0)])
        assert [v.version for v in await store.versions("b")] == [1]
