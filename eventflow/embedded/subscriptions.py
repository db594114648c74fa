"""Subscriptions of a dev instance: replay and live delivery read the event log by `seq`, and a
durable subscription's position is kept in the state file.

Live delivery reads the log too (the runtime only says that something was committed), so a
replay turns into live delivery with nothing lost or repeated at the seam, and a slow
subscriber is never cut off: it reads on from where it is. Reads go through a connection of
their own, which sees committed events only (WAL).

Retention: the position of every durable subscription holds the log's retention back, so a
durable subscriber that stays away misses nothing; `forget` drops a subscription that is no
longer wanted, and with it what it held back.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from ..errors import ConfigurationError, StorageError
from ..events import Event, decode

SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (
    name TEXT PRIMARY KEY, position INTEGER NOT NULL, updated_at TEXT NOT NULL);
"""

#: Events read from the log per query.
PAGE = 500


class SubscriptionLog:
    """The event log and the subscriptions' positions of one state file, read and written
    through a connection apart from the runtime's."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self._db: aiosqlite.Connection | None = None
        #: Durable subscriptions being served now, by the task serving each: a name is
        #: served to one client at a time.
        self.in_use: dict[str, asyncio.Task[None]] = {}

    async def start(self) -> None:
        if self._db is not None:
            return
        db: aiosqlite.Connection | None = None
        try:
            db = await aiosqlite.connect(self.database, isolation_level=None)
            await db.execute("PRAGMA busy_timeout=5000")
            await db.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as e:
            if db is not None:
                await db.close()  # its thread would keep the process from exiting
            raise StorageError(f"cannot open the event log of {self.database}: {e}") from e
        self._db = db

    async def stop(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StorageError("the subscription log is not started")
        return self._db

    async def _one(self, sql: str, *args: Any) -> Any:
        try:
            async with self.db.execute(sql, args) as cur:
                row = await cur.fetchone()
        except sqlite3.Error as e:
            raise StorageError(f"cannot read the event log of {self.database}: {e}") from e
        return None if row is None else row[0]

    async def bounds(self) -> tuple[int, int]:
        """The first `seq` still in the log (what retention left) and the last one committed;
        (last + 1, last) when the log is empty."""
        last = await self._one("SELECT seq FROM sqlite_sequence WHERE name = 'events'") or 0
        first = await self._one("SELECT MIN(seq) FROM events")
        return (first if first is not None else last + 1), last

    async def at(self, since: datetime) -> int:
        """The first `seq` of an event stamped at `since` or later."""
        cutoff = since.astimezone(UTC).isoformat()
        found = await self._one("SELECT MIN(seq) FROM events WHERE time >= ?", cutoff)
        if found is not None:
            return int(found)
        return (await self.bounds())[1] + 1

    async def read(self, start: int, upto: int, types: list[str]) -> list[tuple[int, Event]]:
        """Events of `types` with `start <= seq <= upto`, at most `PAGE`, in `seq` order."""
        where = f"AND type IN ({', '.join('?' * len(types))})" if types else ""
        sql = (
            f"SELECT seq, body FROM events WHERE seq >= ? AND seq <= ? {where} "
            f"ORDER BY seq LIMIT {PAGE}"
        )
        try:
            async with self.db.execute(sql, (start, upto, *types)) as cur:
                rows = await cur.fetchall()
        except sqlite3.Error as e:
            raise StorageError(f"cannot read the event log of {self.database}: {e}") from e
        return [(seq, decode(body, max_metadata_bytes=1 << 30)) for seq, body in rows]

    async def position(self, name: str) -> int | None:
        """The next `seq` the durable subscription `name` reads; None if it never ran."""
        found = await self._one("SELECT position FROM subscriptions WHERE name = ?", name)
        return None if found is None else int(found)

    async def store(self, name: str, position: int) -> None:
        """Move `name` on to `position` (never back: acknowledgements may cross)."""
        now = datetime.now(UTC).isoformat()
        try:
            await self.db.execute(
                "INSERT INTO subscriptions VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "position = MAX(position, excluded.position), updated_at = excluded.updated_at",
                (name, position, now),
            )
        except sqlite3.Error as e:
            raise StorageError(f"cannot store the position of {name!r}: {e}") from e

    async def named(self) -> list[tuple[str, int, str]]:
        """Every durable subscription: its name, the next `seq` it reads, when it last moved."""
        try:
            async with self.db.execute(
                "SELECT name, position, updated_at FROM subscriptions ORDER BY name"
            ) as cur:
                rows = await cur.fetchall()
        except sqlite3.Error as e:
            raise StorageError(f"cannot read the subscriptions of {self.database}: {e}") from e
        return [(str(n), int(p), str(u)) for n, p, u in rows]

    async def forget(self, name: str) -> bool:
        """Drop a durable subscription; True if there was one."""
        try:
            cur = await self.db.execute("DELETE FROM subscriptions WHERE name = ?", (name,))
            gone = cur.rowcount > 0
            await cur.close()
        except sqlite3.Error as e:
            raise StorageError(f"cannot drop the subscription {name!r}: {e}") from e
        return gone


async def start_position(log: SubscriptionLog, request: dict[str, Any]) -> int:
    """The first `seq` a subscription request reads: its stored position (durable), the
    beginning, the first event at a time, a given position, or the end. A position before what
    retention left is refused: those events are gone, and saying so beats skipping them; one
    after the end is refused too: it would wait for events that are not logged yet."""
    first, last = await log.bounds()
    name = request.get("name")
    start: int | None = None
    if name is not None:
        start = await log.position(name)
    if start is None:
        since, position = request.get("since"), request.get("position")
        if request.get("from_beginning"):
            start = first
        elif since is not None:
            if not isinstance(since, str):
                raise ConfigurationError(f"`since` is an ISO time, not {since!r}")
            try:
                when = datetime.fromisoformat(since)
            except ValueError:
                raise ConfigurationError(f"`since` is an ISO time, not {since!r}") from None
            start = await log.at(when)
        elif position is not None:
            if not isinstance(position, int) or isinstance(position, bool):
                raise ConfigurationError(f"a log position is a whole number, not {position!r}")
            if position < 1:
                raise ConfigurationError(f"a log position is 1 or more: cannot start at {position}")
            if position > last + 1:  # the events logged meanwhile up to there would be skipped
                raise ConfigurationError(
                    f"the event log ends at seq {last}: cannot start at {position}"
                )
            start = position
        else:
            start = last + 1
        if name is not None:
            await log.store(name, start)
    if start < first and start <= last:  # `seq` is never reused: those were logged, then trimmed
        raise ConfigurationError(
            f"events before seq {first} have left the event log "
            f"(EVENTFLOW_EVENT_LOG_RETENTION_S): cannot start at {start}"
        )
    return start


class Acks:
    """What a durable subscriber has acknowledged, written to the state file at most every
    `every` seconds and when the subscriber goes (a crash of the instance in between means
    those events come again: delivery is at least once)."""

    def __init__(self, log: SubscriptionLog, name: str, position: int, every: float = 0.2) -> None:
        self.log = log
        self.name = name
        self.acked = position
        self.stored = position
        self.every = every
        self._dirty = asyncio.Event()

    def ack(self, position: int) -> None:
        if position > self.acked:
            self.acked = position
            self._dirty.set()

    async def run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self.flush()
            await asyncio.sleep(self.every)

    async def flush(self) -> None:
        if self.acked > self.stored:
            position = self.acked
            await self.log.store(self.name, position)
            self.stored = position
