"""The embedded runtime's SQLite file: event log, engine state, freshness and run history.

One transaction per processed batch holds the events and every state change they caused, so a
process killed at any moment restarts from a state that matches its log. The state is the
records of `core.codec`, the same the Kafka changelog holds. WAL mode lets `eventflow status`
read while a dev instance writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import orjson

from ..core import Engine, codec
from ..core.codec import Snapshot
from ..core.state import bulk_load
from ..errors import StorageError
from ..events import (
    DatasetProduced,
    Event,
    PipelineRunFailed,
    PipelineRunStarted,
    PipelineRunSucceeded,
    TaskRequested,
    decode,
    encode,
)
from ..lifecycle import Lifecycle
from ..runtime.step import Outcome
from . import subscriptions

#: Commits, or bytes logged, between two checkpoints of the WAL: well before the 1,000 pages
#: at which SQLite would checkpoint by itself. A commit writes each page it changes whole: a
#: trigger's commit of a few rows writes about a dozen pages, a batch of thousands of rows
#: shares its pages.
CHECKPOINT_COMMITS = 32
CHECKPOINT_BYTES = 1 << 20
#: Passes of one checkpoint at most, each copying what commits wrote during the one before.
CATCH_UP = 4
#: Bytes the WAL file is cut back to when it starts over (it is reused, not truncated).
WAL_LIMIT = 4 << 20
#: Bytes of WAL file past which a commit checkpoints after all, just before it begins. The
#: WAL starts over only when a write begins with all of it copied, which under steady writes
#: no checkpoint beside them achieves. The checkpointer has copied all but the last commits
#: by then, so this one is short. (The file grows past `WAL_LIMIT` only with what was written
#: since it last started over: its size says how far behind it is.)
BEHIND_BYTES = 2 * WAL_LIMIT

log = logging.getLogger("eventflow.store")
T = TypeVar("T")

#: Copies what it can of the WAL into the file, waiting for nobody: (busy, pages, copied).
CHECKPOINT = "PRAGMA wal_checkpoint(PASSIVE)"
LOG_EVENTS = "INSERT INTO events (id, type, subject, correlation, time, body) VALUES "
ROW = "(?, ?, ?, ?, ?, ?)"
FRESHEN = (
    "INSERT INTO freshness VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (dataset, partition) DO UPDATE SET version = excluded.version, "
    "metadata = excluded.metadata, produced_at = excluded.produced_at, "
    "producer = excluded.producer WHERE excluded.version > freshness.version"
)
#: A state record replaced where it lies (its rowid and the key's index entry stay).
KEEP_STATE = (
    "INSERT INTO state VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
#: How the record of a dataset partition with no version pending ends (`state.dump`).
IDLE_DATASET = b'"pending":{}}'
#: Events per logging statement (SQLite takes at most 32,766 parameters in one; six per event).
LOG_CHUNK = 1000

STATE_COLUMNS = "(key BLOB PRIMARY KEY, value BLOB NOT NULL)"
SCHEMA = (
    f"""
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL, type TEXT NOT NULL, subject TEXT, correlation TEXT,
    time TEXT NOT NULL, body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS events_type ON events(type, seq);
CREATE INDEX IF NOT EXISTS events_time ON events(time);
CREATE TABLE IF NOT EXISTS state {STATE_COLUMNS};
CREATE TABLE IF NOT EXISTS freshness (
    dataset TEXT NOT NULL, partition TEXT NOT NULL, version INTEGER NOT NULL,
    metadata TEXT NOT NULL, produced_at TEXT NOT NULL, producer TEXT,
    PRIMARY KEY (dataset, partition));
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, partition TEXT NOT NULL,
    status TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT, body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at);
"""
    + subscriptions.SCHEMA
)

RUN_EVENTS = (PipelineRunStarted, PipelineRunSucceeded, PipelineRunFailed)


def private_folder(folder: Path) -> None:
    """Create the state folder 0700: events and state are the owner's business. A folder that
    exists already keeps its mode (it may be shared on purpose)."""
    if not folder.exists():
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)


def private(path: Path) -> None:
    """The file 0600, in a private folder."""
    private_folder(path.parent)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    os.chmod(path, 0o600)


async def _state_with_rowids(db: aiosqlite.Connection) -> None:
    """Files whose `state` was a WITHOUT ROWID table: copy it into a table with rowids, in one
    transaction. Such a table keeps at most about a quarter of a page of a row in its tree and
    the rest in overflow pages, and a partition's record of a chain run in progress is 1 to 6
    KB: replacing one cost twice what it costs in a rowid table (`docs/benchmarks.md`)."""
    sql = "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'state'"
    async with db.execute(sql) as cur:
        row = await cur.fetchone()
    if row is None or "WITHOUT ROWID" not in row[0].upper():
        return
    log.info("copying the state records into a table with rowids (once per file)")
    await db.execute("BEGIN IMMEDIATE")  # on failure, closing the connection rolls it back
    await db.execute(f"CREATE TABLE state_rows {STATE_COLUMNS}")
    await db.execute("INSERT INTO state_rows SELECT key, value FROM state ORDER BY key")
    await db.execute("DROP TABLE state")
    await db.execute("ALTER TABLE state_rows RENAME TO state")
    await db.execute("COMMIT")


async def _migrate(db: aiosqlite.Connection) -> None:
    """Files written before the state was kept as codec records: move their three state
    tables into `state`, in one transaction."""
    sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'partitions'"
    async with db.execute(sql) as cur:
        if await cur.fetchone() is None:
            return
    records: list[codec.Record] = []
    async with db.execute("SELECT pipeline, partition, body FROM partitions") as cur:
        records += [(codec.partition_key(p, k), body) async for p, k, body in cur]
    async with db.execute("SELECT pipeline, active, waiting FROM pipelines") as cur:
        async for pipeline, active, waiting in cur:
            head = {"active": orjson.loads(active), "waiting": orjson.loads(waiting)}
            records.append((codec.header_key(pipeline), orjson.dumps(head)))
    async with db.execute("SELECT dataset, partition, body FROM datasets") as cur:
        records += [(codec.dataset_key(d, k), body) async for d, k, body in cur]
    await db.execute("BEGIN IMMEDIATE")
    await db.executemany(KEEP_STATE, records)
    for table in ("partitions", "pipelines", "datasets"):
        await db.execute(f"DROP TABLE {table}")
    await db.execute("COMMIT")


class Checkpointer(Lifecycle):
    """Copies the WAL back into the file on a connection of its own, beside the commits.

    SQLite checkpoints inside the commit that fills the WAL past its limit, and a checkpoint
    waits for the disk: one commit in about eighty took ten times as long as the others, and
    the trigger that made it waited. This connection does it in its own thread once enough has
    been logged (a passive checkpoint takes no lock that a commit needs); the store's own only
    as a commit begins, while the WAL is `behind` (`BEHIND_BYTES`), and this one stands aside
    then. The WAL file is cut back to `WAL_LIMIT` whenever it starts over."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._running: asyncio.Task[None] | None = None
        self._written = 0
        self._commits = 0
        self._again = False  # asked for while one was under way
        self.behind = False

    async def start(self) -> None:
        if self._db is None:
            self._db = await aiosqlite.connect(self.path, isolation_level=None)

    async def stop(self) -> None:
        db, self._db = self._db, None  # no checkpoint starts from here on
        try:
            await self.idle()
        finally:
            if db is not None:
                await db.close()

    async def idle(self) -> None:
        """Until no checkpoint is under way or asked for."""
        while self._running is not None and not self._running.done():
            await asyncio.shield(self._running)

    def logged(self, size: int) -> None:
        """A commit of `size` bytes; checkpoint once enough were."""
        self._written += size
        self._commits += 1
        if self._written >= CHECKPOINT_BYTES or self._commits >= CHECKPOINT_COMMITS:
            self.request()

    def request(self) -> None:
        """Checkpoint now, or again once the one under way has ended; not while `behind`, when
        the next commit checkpoints and must not find this one holding SQLite's lock."""
        if self._running is not None and not self._running.done():
            self._again = True
        elif self._db is not None and not self.behind:
            self._running = asyncio.create_task(self._checkpoint(), name="checkpoint")

    async def _checkpoint(self) -> None:
        self._again = True
        while self._again and not self.behind and (db := self._db) is not None:
            self._again = False
            self._written = self._commits = 0
            try:
                for _ in range(CATCH_UP):
                    # The WAL starts over only once all of it is in the file: what commits
                    # wrote during a pass is copied by the next, which has less to do.
                    async with db.execute(CHECKPOINT) as cur:
                        busy, pages, copied = await cur.fetchone() or (1, 0, 0)
                    if busy or self.behind or copied >= pages:
                        break
            except (sqlite3.Error, ValueError) as e:  # ValueError: aiosqlite's closed connection
                log.warning("checkpoint of %s skipped: %s", self.path, e)


class Store(Lifecycle):
    """Async access to one SQLite file; `start()`/`stop()` are idempotent."""

    def __init__(
        self, path: Path, logged: Callable[[int, list[bytes]], None] | None = None
    ) -> None:
        """`logged` hears, after each commit, the `seq` of the first event it logged and the
        events as logged: a history projected in another process (`HistoryProcess`) hands
        them to the history store's listeners once the child says it holds them."""
        self.path = path
        self.logged = logged
        self._db: aiosqlite.Connection | None = None
        self.checkpoints = Checkpointer(path)
        self._restart_at = BEHIND_BYTES

    def _wal_size(self) -> int:
        try:
            return os.stat(f"{self.path}-wal").st_size
        except OSError:
            return 0

    async def start(self) -> None:
        """Open (or create) the file, readable by its owner only; a file that is not an
        eventflow store fails here with one line, leaving nothing open."""
        if self._db is not None:
            return
        db: aiosqlite.Connection | None = None
        try:
            private(self.path)
            # Rows come over from aiosqlite's thread in chunks: 64 per hop made a restore of a
            # million states spend its time in thread hand-offs.
            db = await aiosqlite.connect(self.path, isolation_level=None, iter_chunk_size=4096)
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA busy_timeout=5000")
            await db.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's work
            await db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
            await db.executescript(SCHEMA)
            await _state_with_rowids(db)
            await _migrate(db)
            await self.checkpoints.start()
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.chmod(f"{self.path}{suffix}", 0o600)
        except BaseException as e:  # cancelled too: aiosqlite's thread would keep the process
            await self.checkpoints.stop()
            if db is not None:
                await db.close()
            if isinstance(e, sqlite3.Error | OSError):
                raise StorageError(f"cannot open {self.path}: {e}") from e
            raise
        self._db = db

    async def stop(self) -> None:
        try:
            await self.checkpoints.stop()
        finally:
            if self._db is not None:
                db, self._db = self._db, None
                await db.close()

    async def _in_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(connection)` in the connection's own thread, after what is queued there: a whole
        transaction in one hand-off instead of one per statement (each costs a wake-up of the
        loop). aiosqlite's queue, reached through its private `_execute`; the suite's storage
        tests would catch a change of it."""
        db = self.db
        return await db._execute(fn, db._conn)  # type: ignore[no-untyped-call,no-any-return]

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StorageError("the store is not started")
        return self._db

    async def load(self, engine: Engine) -> None:
        """Fill the engine with the live state: partitions with a run in progress, waiting
        for a slot or holding a decision back (debounce, cooldown), each pipeline's
        unpartitioned inputs, and dataset versions waiting for checks. The rest is read on
        demand (`page_in_*`), so memory follows activity, not history. Pipelines
        the App no longer has are skipped."""
        try:
            with bulk_load():
                snapshot = Snapshot()
                heads = await self._range(codec.header_key(""))
                for key, value in heads:
                    snapshot.add(key, value)
                for pipeline, (active, waiting) in snapshot.headers.items():
                    if pipeline in engine.pipelines:
                        live = {"", *active, *waiting, *snapshot.held.get(pipeline, [])}
                        keys = [codec.partition_key(pipeline, k) for k in live]
                        backfills = snapshot.backfills.get(pipeline, {}).values()
                        if any(bf.status == "running" for bf in backfills):
                            # A backfill goes on judging partitions, from memory.
                            rows = await self._range(codec.partition_key(pipeline, ""))
                        else:
                            rows = await self._exact(keys)
                        for key, value in rows:
                            snapshot.add(key, value)
                # A record is `{"seen":N,"pending":{...}}` (orjson, in field order): those
                # with versions pending end otherwise than an empty dict does. (Not `LIKE`: in
                # builds such as Debian's it matches no BLOB, so every dataset state was read.)
                for key, value in await self._range(
                    codec.dataset_key("", "")[:2],
                    f"AND substr(value, -{len(IDLE_DATASET)}) <> ?",
                    IDLE_DATASET,
                ):
                    snapshot.add(key, value)
                for key, value in await self._range(codec.freshness_key("")[:2]):
                    snapshot.add(key, value)
                snapshot.install(engine)
        except (sqlite3.Error, ValueError) as e:  # pydantic's ValidationError is a ValueError
            raise StorageError(f"cannot read the state in {self.path}: {e}") from e

    async def page_in_partitions(
        self, engine: Engine, pipeline: str, keys: list[str] | None
    ) -> None:
        """Read these partitions of a pipeline (all when `keys` is None) into the engine, where
        they are not in memory already."""
        try:
            if keys is None:
                rows = await self._range(codec.partition_key(pipeline, ""))
            else:
                rows = await self._exact([codec.partition_key(pipeline, k) for k in keys])
            snapshot = Snapshot(compact=False)  # read in to be decided now
            for key, value in rows:
                snapshot.add(key, value)
            snapshot.install(engine, merge=True)
        except (sqlite3.Error, ValueError) as e:
            raise StorageError(f"cannot read the state in {self.path}: {e}") from e

    async def page_in_datasets(self, engine: Engine, keys: list[tuple[str, str]]) -> None:
        """Read these (dataset, partition) states into the engine, in one query."""
        try:
            snapshot = Snapshot()
            for k, value in await self._exact([codec.dataset_key(d, p) for d, p in keys]):
                snapshot.add(k, value)
            snapshot.install(engine, merge=True)
        except (sqlite3.Error, ValueError) as e:
            raise StorageError(f"cannot read the state in {self.path}: {e}") from e

    async def _range(
        self, prefix: bytes, where: str = "", *params: object
    ) -> list[tuple[str, bytes]]:
        """Records whose key starts with `prefix` (keys are text with NUL separators, so the
        range ends before the prefix with its last byte raised by one), and that meet `where`
        with its `params`."""
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        sql = f"SELECT key, value FROM state WHERE key >= ? AND key < ? {where}"
        async with self.db.execute(sql, (prefix, end, *params)) as cur:
            return [(bytes(key).decode(), value) async for key, value in cur]

    async def _exact(self, keys: list[bytes]) -> list[tuple[str, bytes]]:
        found: list[tuple[str, bytes]] = []
        for start in range(0, len(keys), 500):  # SQLite bounds the parameters of a statement
            chunk = keys[start : start + 500]
            sql = f"SELECT key, value FROM state WHERE key IN ({', '.join('?' * len(chunk))})"
            async with self.db.execute(sql, chunk) as cur:
                found += [(bytes(key).decode(), value) async for key, value in cur]
        return found

    async def commit(self, outcome: Outcome, records: list[codec.Record]) -> None:
        """Write a step's events and the state records it changed, atomically (the
        `StateLog` of the embedded runtime). The task requests it sends are logged too: they
        are what says which input versions a task run consumed (its lineage, in the history)."""
        requests = [e for _, _, e in outcome.messages if isinstance(e, TaskRequested)]
        events = [*outcome.events, *requests] if requests else outcome.events
        rows = [
            (
                e.id,
                e.type,
                e.subject,
                e.correlationid,
                e.time.astimezone(UTC).isoformat(),
                encode(e),
            )
            for e in events
        ]
        fresh = [
            (
                e.data.dataset,
                e.data.partition,
                e.data.version,
                orjson.dumps(e.data.metadata),
                e.time.isoformat(),
                e.data.producer,
            )
            for e in events
            if isinstance(e, DatasetProduced)
        ]
        runs = [
            (
                e.data.run_id,
                e.data.pipeline,
                e.data.partition,
                e.data.status,
                e.data.started_at.isoformat(),
                e.data.finished_at.isoformat() if e.data.finished_at else None,
                row[-1],  # as logged
            )
            for e, row in zip(events, rows, strict=True)
            if isinstance(e, RUN_EVENTS)
        ]

        wal = self._wal_size()
        restart = self.checkpoints.behind = wal >= self._restart_at

        def write(db: sqlite3.Connection) -> tuple[list[int], bool]:
            seqs: list[int] = []
            caught_up = False
            if restart:
                # All of the WAL copied as this write begins: its first page starts it over.
                with contextlib.suppress(sqlite3.Error):
                    busy, pages, copied = db.execute(CHECKPOINT).fetchone()
                    caught_up = not busy and copied >= pages
            try:
                db.execute("BEGIN IMMEDIATE")
                # One statement per chunk, answering the numbers the log gave the events.
                for start in range(0, len(rows), LOG_CHUNK):
                    chunk = rows[start : start + LOG_CHUNK]
                    sql = LOG_EVENTS + ", ".join([ROW] * len(chunk)) + " RETURNING seq"
                    seqs += [seq for (seq,) in db.execute(sql, list(chain(*chunk)))]
                if records:
                    db.executemany(KEEP_STATE, records)
                if fresh:
                    db.executemany(FRESHEN, fresh)
                if runs:
                    db.executemany("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)", runs)
                db.execute("COMMIT")
            except BaseException:
                # SQLite may have rolled back already (a full disk does): roll back only if not.
                with contextlib.suppress(sqlite3.Error):
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                raise
            return seqs, caught_up

        try:
            seqs, restarted = await self._in_thread(write)
        except (sqlite3.Error, OverflowError, ValueError) as e:
            raise StorageError(f"cannot write {self.path}: {e}") from e
        if restart:
            # Started over; or all copied and still not (a reader held the old WAL): then not
            # again before it has grown by `WAL_LIMIT`; or the lock was taken: the next commit.
            after = self._wal_size()
            held = restarted and after >= wal
            self._restart_at = after + WAL_LIMIT if held else BEHIND_BYTES
            self.checkpoints.behind = False
        bodies = [row[5] for row in rows]
        self.checkpoints.logged(sum(map(len, bodies)) + sum(len(v) for _, v in records))
        if self.logged is not None and seqs:
            seqs.sort()
            if seqs[-1] - seqs[0] + 1 == len(events):  # numbered in order, none in between
                self.logged(seqs[0], bodies)

    async def trim(self, before: float, *, upto: int | None = None) -> int:
        """Drop events logged before `before` (epoch seconds), and only up to `seq` `upto` when
        given, and have the WAL checkpointed; returns how many went."""
        cutoff = datetime.fromtimestamp(before, UTC).isoformat()
        db = self.db
        try:
            if upto is None:
                cur = await db.execute("DELETE FROM events WHERE time < ?", (cutoff,))
            else:
                sql = "DELETE FROM events WHERE time < ? AND seq <= ?"
                cur = await db.execute(sql, (cutoff, upto))
            dropped = cur.rowcount
            await cur.close()
        except sqlite3.Error as e:
            raise StorageError(f"cannot trim the event log of {self.path}: {e}") from e
        self.checkpoints.request()
        return max(dropped, 0)

    async def subscriptions_from(self) -> int | None:
        """The lowest position of the durable subscriptions: retention keeps what follows."""
        try:
            async with self.db.execute("SELECT MIN(position) FROM subscriptions") as cur:
                row = await cur.fetchone()
        except sqlite3.Error as e:
            raise StorageError(f"cannot read the subscriptions in {self.path}: {e}") from e
        return None if row is None or row[0] is None else int(row[0])

    # -- reads for status, watch and tests -----------------------------------------------------
    async def events(
        self, *types: str, after: int = 0, limit: int = 10_000
    ) -> list[tuple[int, Event]]:
        where = f"AND type IN ({', '.join('?' * len(types))})" if types else ""
        sql = f"SELECT seq, body FROM events WHERE seq > ? {where} ORDER BY seq LIMIT ?"
        async with self.db.execute(sql, (after, *types, limit)) as cur:
            return [(seq, decode(body, max_metadata_bytes=1 << 30)) async for seq, body in cur]

    async def freshness(self) -> list[dict[str, Any]]:
        sql = (
            "SELECT dataset, partition, version, metadata, produced_at, producer FROM freshness "
            "ORDER BY dataset, partition"
        )
        async with self.db.execute(sql) as cur:
            return [
                {
                    "dataset": d,
                    "partition": p,
                    "version": v,
                    "metadata": orjson.loads(m),
                    "produced_at": at,
                    "producer": prod,
                }
                async for d, p, v, m, at, prod in cur
            ]

    async def runs(self, limit: int = 20) -> list[Event]:
        sql = "SELECT body FROM runs ORDER BY started_at DESC, run_id DESC LIMIT ?"
        async with self.db.execute(sql, (limit,)) as cur:
            return [decode(body, max_metadata_bytes=1 << 30) async for (body,) in cur]
