"""The history store: the event log projected into tables that answer an operator's questions.

Chosen by URL in one place (`HistoryStore.of`): `sqlite+aiosqlite:///path` by default, or
`postgresql+asyncpg://...` for deployments with more than one server or long history. Writes come
from one projector at a time; `apply` takes a batch of events and the projector's positions and
writes both in one transaction, so a projector restarted from its stored positions neither loses
nor (thanks to the event ids) doubles anything.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Table, delete, event, func, not_, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ..errors import ConfigurationError, EventError, StorageError
from ..events import BY_TYPE, Event, decode
from ..lifecycle import Lifecycle
from ..settings import Settings
from . import schema as t
from .alerts import OPEN, AlertDeliveries
from .projection import Doc, Row, Rows, merge_attempt, merge_run, project
from .queries import WRITE, whole

log = logging.getLogger("eventflow.history")

#: Rows per statement where a list of keys is sent (SQLite bounds a statement's parameters).
CHUNK = 500
USE = "use sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DB"
#: Drivers by URL scheme, with what to install when one is missing.
DRIVERS = {
    "sqlite+aiosqlite": "aiosqlite",
    "postgresql+asyncpg": "asyncpg",
}


def _json(event: Event) -> Doc:
    """An event as the projection reads it."""
    return event.model_dump(mode="json", exclude_none=True)


def read_logged(bodies: Iterable[bytes]) -> list[Event]:
    """Logged events built again for the listeners; a warning for each that does not build."""
    events: list[Event] = []
    for body in bodies:
        try:
            events.append(decode(body, max_metadata_bytes=1 << 30))
        except EventError as e:
            log.warning("a logged event is not handed to the listeners: %s", e.reason)
    return events


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _private_file(path: Path) -> None:
    """An SQLite file readable by its owner only, in a folder created 0700 (events carry
    paths and errors that are the owner's business)."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))


def _sqlite_pragmas(connection: Any, record: Any) -> None:
    # WAL lets the API and the CLI read while the projector writes. The driver's own BEGIN is
    # off: `_sqlite_begin` says which kind.
    connection.isolation_level = None
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # A write transaction takes the write lock as it begins, so it waits its turn (busy_timeout)
    # where a deferred one that read first would fail with "database is locked" at its first
    # write, if another connection wrote in between.
    immediate = conn.get_execution_options().get(WRITE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class HistoryStore(AlertDeliveries, Lifecycle):
    """The history tables behind one URL; `start()`/`stop()` are idempotent, `async with` both.

    `retention_days` (0: forever) is what `prune` keeps.
    """

    def __init__(self, url: str, *, retention_days: float = 0) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError as e:
            raise ConfigurationError(
                f"history store URL {url!r} is not a URL ({e}): {USE}"
            ) from None
        if parsed.drivername not in DRIVERS:
            raise ConfigurationError(f"history store URL {parsed.render_as_string()!r}: {USE}")
        self.url = url
        self.retention_days = retention_days
        self._parsed = parsed
        self._engine: AsyncEngine | None = None
        #: Called with the events of each committed `apply`: what a reader of the history (the
        #: web UI) can now find in it. All of them, not only those new to this store: where
        #: several projectors feed one store, the one that stored an event first may not be
        #: this process's.
        self.listeners: list[Callable[[Sequence[Event]], None]] = []

    @classmethod
    def of(cls, settings: Settings) -> HistoryStore:
        """The store the settings name (`history_url`, else `history.db` in `home`)."""
        return cls(settings.history, retention_days=settings.history_retention_days)

    def __repr__(self) -> str:
        return f"HistoryStore({self._parsed.render_as_string()!r})"

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise StorageError("the history store is not started")
        return self._engine

    async def start(self) -> None:
        """Connect and create the tables that are missing."""
        if self._engine is not None:
            return
        driver = DRIVERS[self._parsed.drivername]
        try:
            __import__(driver)
        except ImportError:
            raise ConfigurationError(
                f"the history store at {self._parsed.drivername} needs {driver}: "
                f"pip install 'eventflow[postgres]'"
            ) from None
        options: dict[str, Any] = {"json_serializer": _dumps, "json_deserializer": orjson.loads}
        is_sqlite = self._parsed.get_backend_name() == "sqlite"
        try:
            if is_sqlite and self._parsed.database not in (None, "", ":memory:"):
                _private_file(Path(self._parsed.database or ""))
            engine = create_async_engine(self._parsed, **options)
        except (OSError, SQLAlchemyError) as e:
            raise StorageError(f"cannot open the history store {self!r}: {e}") from e
        if is_sqlite:
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(engine.sync_engine, "begin", _sqlite_begin)
        try:
            async with engine.execution_options(**{WRITE: True}).begin() as conn:
                await conn.run_sync(t.metadata.create_all)
        except (OSError, SQLAlchemyError) as e:
            await engine.dispose()
            raise StorageError(f"cannot open the history store {self!r}: {e}") from e
        self._engine = engine

    async def stop(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await engine.dispose()

    # -- writes ----------------------------------------------------------------------------------
    @whole
    async def apply(
        self, events: Sequence[Event], positions: Mapping[str, int] | None = None
    ) -> int:
        """Project `events` and store `positions`, in one transaction; returns how many events
        it added. Events the store has (by id) change nothing, so replays are harmless."""
        fresh = await self._store([_json(e) for e in events], positions)
        self._tell(events)
        return fresh

    @whole
    async def apply_logged(
        self, logged: Sequence[bytes], positions: Mapping[str, int] | None = None
    ) -> int:
        """`apply` for events as the embedded log holds them, encoded by the runtime that built
        or took them: projected from their JSON, not built and checked again (a quarter of the
        CPU of projecting them). Should the tables refuse a value (a log written by hand, or
        damaged), the batch is stored again from the events built and checked, which leaves
        out those that are not valid events. Events are also built for the listeners, if any."""
        docs: list[Doc] = []
        for body in logged:
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError as e:
                log.warning("a logged event is not projected: not JSON: %s", e)
                continue
            if (
                isinstance(doc, dict)
                and isinstance(doc.get("id"), str)
                and isinstance(doc.get("type"), str)
                and doc["type"] in BY_TYPE
            ):
                docs.append(doc)
            else:
                log.warning("a logged event is not projected: not an event: %.200r", body)
        events: list[Event] | None = None
        try:
            fresh = await self._store(docs, positions)
        except Exception as error:  # not only the driver's: a value out of a column's range
            log.warning("logged events were not taken as JSON (%s): taking them checked", error)
            events = read_logged(logged)
            fresh = await self._store([_json(e) for e in events], positions)
        if self.listeners:
            self._tell(read_logged(logged) if events is None else events)
        return fresh

    def _tell(self, events: Sequence[Event]) -> None:
        """The listeners, of a committed batch."""
        if events:
            for listener in list(self.listeners):  # a listener may leave as it hears them
                listener(events)

    async def _store(self, docs: Sequence[Doc], positions: Mapping[str, int] | None) -> int:
        try:
            async with self._writing() as conn:
                rows = project(await self._fresh(conn, docs))
                if rows.events:
                    await self._write(conn, rows)
                if positions:
                    await self._upsert(
                        conn,
                        t.positions,
                        [{"name": k, "position": v} for k, v in positions.items()],
                    )
        except SQLAlchemyError as e:
            raise StorageError(f"cannot write the history store {self!r}: {e}") from e
        return len(rows.events)

    async def positions(self, prefix: str = "") -> dict[str, int]:
        """Stored positions whose name starts with `prefix`."""
        sql = select(t.positions).where(t.positions.c.name.startswith(prefix, autoescape=True))
        async with self._read() as conn:
            return {r.name: r.position for r in (await conn.execute(sql)).all()}

    @whole
    async def clear(self) -> None:
        """Empty every table, positions included: what a rebuild starts from. The alert
        deliveries stay: they are no projection, and keep an event from being sent twice."""
        try:
            async with self._writing() as conn:
                for table in t.TABLES:
                    await conn.execute(delete(table))
        except SQLAlchemyError as e:
            raise StorageError(f"cannot clear the history store {self!r}: {e}") from e

    @whole
    async def prune(self, now: datetime) -> int:
        """Delete history older than `retention_days` before `now` (nothing when it is 0): events,
        ended runs and attempts, checks, dead letters, log lines, finished alert deliveries, and
        dataset versions except the newest of each partition, which is its freshness. Returns
        the rows deleted."""
        if self.retention_days <= 0:
            return 0
        cutoff = now - timedelta(days=self.retention_days)
        v = t.dataset_versions
        newest = (
            select(v.c.dataset, v.c.partition, func.max(v.c.version))
            .group_by(v.c.dataset, v.c.partition)
            .subquery()
        )
        old_attempts = select(t.task_attempts.c.run_id).where(t.task_attempts.c.ended_at < cutoff)
        statements = [
            delete(t.attempt_inputs).where(t.attempt_inputs.c.run_id.in_(old_attempts)),
            delete(t.task_attempts).where(t.task_attempts.c.ended_at < cutoff),
            delete(t.pipeline_runs).where(t.pipeline_runs.c.finished_at < cutoff),
            delete(t.events).where(t.events.c.time < cutoff),
            delete(t.checks).where(t.checks.c.time < cutoff),
            delete(t.dead_letters).where(t.dead_letters.c.time < cutoff),
            delete(t.task_logs).where(t.task_logs.c.time < cutoff),
            delete(t.alert_deliveries).where(
                t.alert_deliveries.c.finished_at < cutoff, t.alert_deliveries.c.state.not_in(OPEN)
            ),
            delete(v).where(
                v.c.time < cutoff,
                not_(tuple_(v.c.dataset, v.c.partition, v.c.version).in_(select(newest))),
            ),
        ]
        deleted = 0
        try:
            async with self._writing() as conn:
                for statement in statements:
                    deleted += max((await conn.execute(statement)).rowcount, 0)
        except SQLAlchemyError as e:
            raise StorageError(f"cannot prune the history store {self!r}: {e}") from e
        return deleted

    async def _fresh(self, conn: AsyncConnection, docs: Sequence[Doc]) -> list[Doc]:
        """The events of the batch the store does not have yet, each once."""
        unique: dict[str, Doc] = {}
        for doc in docs:
            unique.setdefault(doc["id"], doc)
        known: set[str] = set()
        ids = list(unique)
        for start in range(0, len(ids), CHUNK):
            sql = select(t.events.c.id).where(t.events.c.id.in_(ids[start : start + CHUNK]))
            known.update((await conn.scalars(sql)).all())
        return [doc for i, doc in unique.items() if i not in known]

    async def _write(self, conn: AsyncConnection, rows: Rows) -> None:
        await conn.execute(t.events.insert(), rows.events)
        for table, new in (
            (t.dataset_versions, rows.versions),
            (t.attempt_inputs, rows.inputs),
            (t.checks, rows.checks),
            (t.dead_letters, rows.dead_letters),
            (t.task_logs, rows.logs),
        ):
            if new:
                await conn.execute(self._insert(table).on_conflict_do_nothing(), new)
        for new in (rows.violated, rows.recovered):
            if new:  # each sets only its own columns, so the order they come in does not matter
                insert = self._insert(t.freshness)
                own = {k: insert.excluded[k] for k in new[0] if k != "key"}
                await conn.execute(
                    insert.on_conflict_do_update(index_elements=["key"], set_=own), new
                )
        if rows.attempts:
            old = await self._rows(conn, t.task_attempts, rows.attempts)
            merged = [merge_attempt(old[k], p) if k in old else p for k, p in rows.attempts.items()]
            await self._upsert(conn, t.task_attempts, [_full(t.task_attempts, r) for r in merged])
        if rows.runs:
            old = await self._rows(conn, t.pipeline_runs, rows.runs)
            merged = [merge_run(old[k], p) if k in old else p for k, p in rows.runs.items()]
            await self._upsert(conn, t.pipeline_runs, [_full(t.pipeline_runs, r) for r in merged])

    async def _rows(
        self, conn: AsyncConnection, table: Table, keys: Iterable[str]
    ) -> dict[str, Row]:
        """Rows of `table` by run id."""
        found: dict[str, Row] = {}
        wanted = list(keys)
        for start in range(0, len(wanted), CHUNK):
            sql = select(table).where(table.c.run_id.in_(wanted[start : start + CHUNK]))
            for r in (await conn.execute(sql)).mappings():
                found[r["run_id"]] = dict(r)
        return found

    def _insert(self, table: Table) -> Any:
        """The dialect's INSERT, which knows ON CONFLICT (the same API on both backends)."""
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    async def _upsert(self, conn: AsyncConnection, table: Table, rows: list[Row]) -> None:
        insert = self._insert(table)
        keys = [c.name for c in table.primary_key.columns]
        values = {c.name: insert.excluded[c.name] for c in table.columns if c.name not in keys}
        await conn.execute(insert.on_conflict_do_update(index_elements=keys, set_=values), rows)


def _full(table: Table, values: Row) -> Row:
    """Every column of `table`, those the row lacks as None (one statement takes many rows
    only when they name the same columns)."""
    return {c.name: values.get(c.name) for c in table.columns}


def utc(value: datetime | None = None) -> datetime:
    """`value` as an aware UTC datetime; now when not given."""
    if value is None:
        return datetime.now(UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
