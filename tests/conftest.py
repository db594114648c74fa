from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from .kafka_broker import Broker, start_broker
from .postgres_server import start_postgres


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks running on its loop."""
    yield
    await asyncio.sleep(0)
    current = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not leaked, f"leaked asyncio tasks: {leaked}"


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A real Kafka broker for the whole session, started on first use."""
    yield from start_broker(tmp_path_factory.mktemp("kafka"))


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server for the whole session, started on first use: its URL."""
    yield from start_postgres(tmp_path_factory.mktemp("postgres"))
