"""One lifecycle for every service: idempotent start and stop, a failed start that can be tried
again, and a dead loop that fails the service loudly instead of leaving callers hanging."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

import eventflow as ef
from eventflow.embedded import ControlClient, ControlServer
from eventflow.errors import ConfigurationError, NotRunning, StorageError
from eventflow.lifecycle import Service
from eventflow.runtime.step import Outcome

src, out = ef.Dataset("src"), ef.Dataset("out")


def runtime(home: Path) -> ef.EmbeddedRuntime:
    p = ef.Pipeline("p")

    @p.task(inputs=[src], outputs=[out])
    def body(ctx: ef.TaskContext) -> None:
        ctx.emit(out)

    return ef.EmbeddedRuntime(ef.App([p]), ef.Settings(home=home))


class Flaky(Service):
    """Opens on the second try; its loop raises once `breaks` is set."""

    name = "flaky"

    def __init__(self) -> None:
        super().__init__()
        self.opens = 0
        self.closes = 0
        self.breaks = asyncio.Event()
        self.failing: list[BaseException] = []

    async def _open(self) -> None:
        self.opens += 1
        self.spawn(self._loop(), "flaky loop")
        if self.opens == 1:
            raise OSError("not yet")
        self.ready.set()

    async def _close(self) -> None:
        self.closes += 1

    async def _loop(self) -> None:
        await self.breaks.wait()
        raise RuntimeError("loop broke")

    def _failing(self, error: BaseException) -> None:
        self.failing.append(error)


async def test_a_failed_start_closes_what_it_opened_and_can_be_retried() -> None:
    service = Flaky()
    with pytest.raises(OSError, match="not yet"):
        await service.start()
    assert (service.opens, service.closes) == (1, 1)
    assert not service.started and not service.failed.is_set() and not service.healthy()
    await service.stop()  # not started: nothing to do
    assert service.closes == 1
    async with service:
        await service.start()
        assert service.opens == 2 and service.healthy()
    await service.stop()
    assert service.closes == 2 and not service.healthy()


async def test_a_dead_loop_fails_the_service_once(caplog: pytest.LogCaptureFixture) -> None:
    service = Flaky()
    with pytest.raises(OSError):
        await service.start()
    async with service:
        service.breaks.set()
        await asyncio.wait_for(service.failed.wait(), 10)
        service.fail(RuntimeError("again"))  # a second failure changes nothing
        assert isinstance(service.error, RuntimeError) and str(service.error) == "loop broke"
        assert service.failing == [service.error]
        assert not service.healthy()
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert [r.getMessage() for r in critical] == ["flaky: flaky loop stopped"]


async def test_embedded_start_on_a_file_that_is_not_sqlite_fails_and_can_be_retried(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    state = home / "eventflow.db"
    state.write_bytes(b"not a database" * 100)
    instance = runtime(home)
    with pytest.raises(StorageError, match="cannot open"):
        await instance.start()
    assert not instance.started and not instance.failed.is_set() and not instance.ready.is_set()
    with pytest.raises(StorageError, match="not started"):
        _ = instance.store.db  # nothing left open
    state.unlink()
    await instance.start()
    try:
        assert instance.healthy()
        assert (await instance.emit("src", version=1)).accepted
        await asyncio.wait_for(instance.wait_idle(), 30)
    finally:
        await instance.stop()
        await instance.stop()
    assert not instance.started and not instance.healthy()


async def test_embedded_stop_twice_and_start_again(tmp_path: Path) -> None:
    instance = runtime(tmp_path / "home")
    await instance.stop()  # never started
    async with instance:
        await instance.start()  # already started: nothing happens
        assert (await instance.emit("src", version=1)).accepted
        await asyncio.wait_for(instance.wait_idle(), 30)
    await instance.stop()
    with pytest.raises(NotRunning):
        await instance.emit("src", version=2)
    async with instance:  # the state is read back
        assert (await instance.emit("src", version=2)).accepted
        await asyncio.wait_for(instance.wait_idle(), 30)


async def test_a_dead_processor_fails_pending_and_later_publishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = runtime(tmp_path / "home")
    async with instance:

        async def broken(outcome: Outcome, records: list[object]) -> None:
            raise RuntimeError("a defect in the store")

        monkeypatch.setattr(instance.store, "commit", broken)
        pending = [asyncio.ensure_future(instance.emit("src", version=v)) for v in (1, 2, 3)]
        results = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 10)
        assert all(isinstance(r, NotRunning) for r in results), results
        assert "a defect in the store" in str(results[0])
        assert instance.failed.is_set() and isinstance(instance.error, RuntimeError)
        assert not instance.healthy()
        with pytest.raises(NotRunning, match="a defect in the store"):
            await asyncio.wait_for(instance.emit("src", version=4), 10)
    assert not instance.started


async def test_control_server_start_and_stop_are_idempotent(tmp_path: Path) -> None:
    home = tmp_path / "home"
    instance = runtime(home)
    server = ControlServer(instance, home / "dev.sock")
    await server.stop()  # never started
    await server.start()
    await server.start()
    assert server.healthy()
    async with ControlClient(server.path) as client:
        assert (await client.ping())["ok"] is True
    await server.stop()
    await server.stop()
    assert not server.path.exists() and not server.healthy()
    with pytest.raises(NotRunning):
        await ControlClient(server.path).start()


async def test_the_control_socket_takes_its_name_only_once_it_listens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clients (and `eventflow dev`'s callers) take the socket's name as the sign that it
    serves; a name that appeared at bind, before listen, refused their connections."""
    home = tmp_path / "home"
    server = ControlServer(runtime(home), home / "dev.sock")
    named_before_listening = []
    start_serving = asyncio.Server._start_serving  # type: ignore[attr-defined]

    def listen(self: asyncio.Server) -> None:
        named_before_listening.append(server.path.exists())
        start_serving(self)

    monkeypatch.setattr(asyncio.Server, "_start_serving", listen)
    async with server:
        assert named_before_listening == [False]
        assert server.path.exists() and not (home / "dev.sock~").exists()


async def test_control_server_start_refused_while_another_answers_then_retried(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    instance = runtime(home)
    first = ControlServer(instance, home / "dev.sock")
    second = ControlServer(instance, home / "dev.sock")
    async with first:
        with pytest.raises(ConfigurationError, match="another eventflow dev instance"):
            await second.start()
        assert not second.started and not second.failed.is_set()
        async with ControlClient(first.path) as client:  # the first one is untouched
            assert (await client.ping())["ok"] is True
    async with second, ControlClient(second.path) as client:
        assert (await client.ping())["ok"] is True
