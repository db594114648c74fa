"""The embedded runtime's history projector: its SQLite event log, fed into the history store.

The projector reads the log (the `events` table of the state file, numbered by `seq`) after the
last `seq` it projected and hands the events to `HistoryStore.apply` in batches, with that `seq`
as its position. The position is kept in the history store, written in the transaction of the
rows it covers: kept in the state file instead, it would be committed apart from the rows (two
files, two transactions), and a crash between the two would lose or repeat a batch. Kept with the
rows, a restart resumes exactly after the last batch stored. The runtime's log retention trims
only events at or before that position, so nothing is trimmed before it is projected.

It runs beside the decision loop, never in it: the runtime only wakes it after each commit, and
it reads through a connection of its own (WAL lets it read while the runtime writes).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite

from ..errors import StorageError
from ..history import HistoryStore
from ..lifecycle import pause_after

log = logging.getLogger("eventflow.history")

#: Events per history transaction, at most: a busy instance's projector lags and takes full
#: batches, and each commit writes again every page it touched (the indexes' pages among them).
BATCH = 4000
#: Seconds between retention passes.
PRUNE_EVERY_S = 3600.0


class EmbeddedProjector:
    """Feeds `history` from the event log of the state file at `database`. `start()`/`stop()`
    are idempotent; `run()` is the loop the runtime supervises; `flush()` projects everything
    logged so far."""

    def __init__(self, database: Path, history: HistoryStore) -> None:
        self.database = database
        self.history = history
        #: The position's name in the history store: one per state file.
        self.name = f"embedded:{database.resolve()}"
        #: The last `seq` of the log the history store holds (0: none).
        self.position = 0
        self._db: aiosqlite.Connection | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._next_prune = 0.0

    async def start(self) -> None:
        """Open the history store and a read connection to the log; read the position."""
        if self._db is not None:
            return
        await self.history.start()
        try:
            self.position = (await self.history.positions(self.name)).get(self.name, 0)
            self._db = await aiosqlite.connect(self.database, isolation_level=None)
        except (sqlite3.Error, OSError) as e:
            await self.history.stop()
            raise StorageError(f"cannot read the event log of {self.database}: {e}") from e
        except BaseException:
            await self.history.stop()
            raise
        self._wake.set()

    async def stop(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()
            await self.history.stop()

    @property
    def started(self) -> bool:
        return self._db is not None

    def wake(self) -> None:
        """New events were committed to the log."""
        self._wake.set()

    async def run(self) -> None:
        """Project whatever the log gains, until cancelled. A history store that cannot take
        writes is tried again after a pause (the log keeps the events meanwhile)."""
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
                failures = 0
            except StorageError as e:
                failures += 1
                log.error("history projection failed (%d in a row): %s", failures, e)
                self._wake.set()
                await asyncio.sleep(pause_after(failures))

    async def flush(self) -> int:
        """Project every event logged after the position; returns how many were read."""
        async with self._lock:
            read = 0
            while True:
                rows = await self._read(self.position)
                if not rows:
                    break
                last = rows[-1][0]
                await self.history.apply_logged([body for _, body in rows], {self.name: last})
                self.position = last
                read += len(rows)
            await self._prune()
            return read

    async def _read(self, after: int) -> list[tuple[int, bytes]]:
        if self._db is None:
            raise StorageError("the history projector is not started")
        sql = "SELECT seq, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?"
        try:
            async with self._db.execute(sql, (after, BATCH)) as cur:
                return [(seq, bytes(body)) async for seq, body in cur]
        except sqlite3.Error as e:
            raise StorageError(f"cannot read the event log of {self.database}: {e}") from e

    async def _prune(self) -> None:
        loop = asyncio.get_running_loop()
        if self.history.retention_days > 0 and loop.time() >= self._next_prune:
            self._next_prune = loop.time() + PRUNE_EVERY_S
            await self.history.prune(datetime.now(UTC))


async def rebuild(database: Path, history: HistoryStore) -> int:
    """Empty the history store and project the whole event log of `database` again (what
    the log still holds: see `event_log_retention_s`); returns the events read."""
    projector = EmbeddedProjector(database, history)
    await projector.start()
    try:
        await history.clear()
        projector.position = 0
        return await projector.flush()
    finally:
        await projector.stop()
