"""Every history test runs on both backends: SQLite, and a real PostgreSQL server in a database
of its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from eventflow.history import HistoryStore


async def _admin(url: str, sql: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def history_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A history store URL with nothing in it yet."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'history.db'}"
        return
    server: str = request.getfixturevalue("postgres")
    name = f"history_{uuid.uuid4().hex}"
    await _admin(server, f"CREATE DATABASE {name}")
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        await _admin(server, f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
async def store(history_url: str) -> AsyncIterator[HistoryStore]:
    async with HistoryStore(history_url, retention_days=30) as started:
        yield started
