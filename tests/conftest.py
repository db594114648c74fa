from __future__ import annotations

import asyncio
import faulthandler
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from .kafka_broker import Broker, start_broker
from .postgres_server import start_postgres

HANG_GRACE_S = 60.0
"""How long past pytest-timeout's limit a test may go on before its process writes every thread's
stack and ends: the cleanup of a test that timed out can hang too, once the one alarm has fired.
A worker that ends so is reported as crashed, and the run goes on instead of stalling."""
_HANGS = "EVENTFLOW_TEST_HANGS"  # the folder of the stacks, made by the controller
_stacks: IO[str] | None = None


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # workers start later, and inherit it
        os.environ[_HANGS] = tempfile.mkdtemp(prefix="eventflow-hangs-")


def pytest_unconfigure(config: pytest.Config) -> None:
    faulthandler.cancel_dump_traceback_later()
    if _stacks is not None:
        _stacks.close()
    if not hasattr(config, "workerinput"):
        shutil.rmtree(os.environ.pop(_HANGS), ignore_errors=True)


def _stacks_file() -> IO[str]:
    global _stacks
    if _stacks is None:
        _stacks = open(Path(os.environ[_HANGS]) / f"{os.getpid()}.txt", "w")  # noqa: SIM115
    return _stacks


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> None:
    """Beside pytest-timeout's own timer (this returns None, so that one is set too)."""
    stacks = _stacks_file()
    stacks.write(f"{item.nodeid} went {HANG_GRACE_S:.0f} s past its {settings.timeout} s timeout\n")
    stacks.flush()
    faulthandler.dump_traceback_later(settings.timeout + HANG_GRACE_S, exit=True, file=stacks)


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_cancel_timer(item: pytest.Item) -> None:
    faulthandler.cancel_dump_traceback_later()
    stacks = _stacks_file()
    stacks.seek(0)
    stacks.truncate()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The stacks of every test that hung, from whichever worker ran it."""
    if hasattr(config, "workerinput"):
        return
    for dump in sorted(Path(os.environ[_HANGS]).glob("*.txt")):
        if text := dump.read_text():
            terminalreporter.write_sep("=", "a test that hung, and its threads")
            terminalreporter.write(text)


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


async def _admin(url: str, sql: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@pytest.fixture
def postgres_url(postgres: str) -> Iterator[str]:
    """A database of its own on the session's PostgreSQL server, dropped after the test (on a
    loop of its own, so that any fixture, async or not, can ask for it)."""
    name = f"history_{uuid.uuid4().hex}"
    _apart(_admin(postgres, f"CREATE DATABASE {name}"))
    try:
        yield make_url(postgres).set(database=name).render_as_string(hide_password=False)
    finally:
        _apart(_admin(postgres, f"DROP DATABASE {name} WITH (FORCE)"))


def _apart(work: Coroutine[Any, Any, None]) -> None:
    """Run `work` to its end on a loop in a thread of its own, whatever loop runs here."""
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, work).result()


@pytest.fixture(params=["sqlite", "postgresql"])
def history_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A history store URL with nothing in it yet."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'history.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url
