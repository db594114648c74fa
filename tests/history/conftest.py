"""The history contract runs on both backends (`history_url`: SQLite, and a real PostgreSQL
server in a database of its own)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from eventflow.history import HistoryStore


@pytest.fixture
async def store(history_url: str) -> AsyncIterator[HistoryStore]:
    async with HistoryStore(history_url, retention_days=30) as started:
        yield started
