from __future__ import annotations

import asyncio
import faulthandler
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Generator, Iterator
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
"""How long past its timeout a test may go on before its process writes every thread's stack and
ends. pytest-timeout's one alarm does not cover a cleanup that hangs after it fired, and it is
cancelled as soon as a phase fails (its `pytest_exception_interact`), so the teardown of a failed
test has no limit at all. A worker that ends so is reported as crashed, and the run goes on."""
_HANGS = "EVENTFLOW_TEST_HANGS"  # the folder of the stacks, made by the controller
_stacks: IO[str] | None = None
_deadline: float | None = None  # of the test running, on time.monotonic


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # workers start later, and inherit it
        os.environ[_HANGS] = tempfile.mkdtemp(prefix="eventflow-hangs-")


def pytest_report_header(config: pytest.Config) -> str:
    return f"stacks of a test that hangs: {os.environ[_HANGS]}"


def pytest_unconfigure(config: pytest.Config) -> None:
    global _stacks
    faulthandler.cancel_dump_traceback_later()
    if _stacks is not None:
        _stacks.close()
        _stacks = None
    if not hasattr(config, "workerinput"):
        shutil.rmtree(os.environ.pop(_HANGS), ignore_errors=True)


def _stacks_file() -> IO[str]:
    global _stacks
    if _stacks is None:
        _stacks = open(Path(os.environ[_HANGS]) / f"{os.getpid()}.txt", "w")  # noqa: SIM115
    return _stacks


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> None:
    """As pytest-timeout sets its own timer, with the limit it settled on (marker, option,
    variable or ini; not called for no limit). Returns None, so that its timer is set too."""
    global _deadline
    if item.config.getoption("usepdb"):
        return  # a debugger may take its time
    stacks = _stacks_file()
    stacks.write(
        f"{item.nodeid} was running when its process ended ({settings.timeout:g} s limit)\n"
    )
    stacks.flush()
    _deadline = time.monotonic() + settings.timeout + HANG_GRACE_S
    _arm()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """The test's setup, call and teardown (not its timer's cancel at a failure) disarm it."""
    global _deadline
    try:
        return (yield)
    finally:
        _deadline = None
        faulthandler.cancel_dump_traceback_later()
        if _stacks is not None:
            _stacks.seek(0)
            _stacks.truncate()


@pytest.hookimpl(trylast=True)
def pytest_exception_interact() -> None:
    """pytest's faulthandler plugin cancels the one timer a process has at every failure."""
    _arm()


def _arm() -> None:
    if _deadline is not None:
        left = max(1.0, _deadline - time.monotonic())
        faulthandler.dump_traceback_later(left, exit=True, file=_stacks_file())


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
