"""The embedded state file's layout: a file written with an earlier one opens and goes on."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import eventflow as ef
from eventflow.embedded.store import Store


def app(ran: list[tuple[str, int]]) -> ef.App:
    src, out = ef.Dataset("src", ef.daily()), ef.Dataset("out", ef.daily())
    p = ef.Pipeline("p")

    @p.task(inputs=[src], outputs=[out])
    def load(ctx: ef.TaskContext) -> None:
        ran.append((ctx.partition, ctx.inputs["src"].version))

    return ef.App([p])


def query(path: Path, sql: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


def records(path: Path) -> list[tuple[object, ...]]:
    return query(path, "SELECT key, value FROM state ORDER BY key")


def table_sql(path: Path) -> str:
    ((sql,),) = query(path, "SELECT sql FROM sqlite_master WHERE name = 'state'")
    return str(sql)


async def test_a_state_table_without_rowids_is_copied_into_one_with_them(tmp_path: Path) -> None:
    ran: list[tuple[str, int]] = []
    settings = ef.Settings(home=tmp_path / "home")
    async with ef.EmbeddedRuntime(app(ran), settings) as runtime:
        await runtime.emit("src", "2026-01-01", version=1)
        await runtime.emit("src", "2026-01-02", version=1)
        await asyncio.wait_for(runtime.wait_idle(), 60)
    path = settings.database
    assert "WITHOUT ROWID" not in table_sql(path).upper()

    # As files were written before: the same records in a WITHOUT ROWID table.
    before = records(path)
    db = sqlite3.connect(path)
    with db:
        db.execute("ALTER TABLE state RENAME TO rows")
        db.execute("CREATE TABLE state (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
        db.execute("INSERT INTO state SELECT key, value FROM rows")
        db.execute("DROP TABLE rows")
    db.close()
    assert "WITHOUT ROWID" in table_sql(path).upper()
    store = Store(path)
    await store.start()
    await store.stop()
    assert "WITHOUT ROWID" not in table_sql(path).upper()
    assert records(path) == before, "every record, as it was"

    async with ef.EmbeddedRuntime(app(ran), settings) as restarted:
        await restarted.emit("src", "2026-01-01", version=1)  # seen before: nothing runs
        await restarted.emit("src", "2026-01-02", version=2)
        await asyncio.wait_for(restarted.wait_idle(), 60)
    assert sorted(ran) == [("2026-01-01", 1), ("2026-01-02", 1), ("2026-01-02", 2)]
