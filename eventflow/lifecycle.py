"""Idempotent `start()` / `stop()` and `async with`, for every service and client; supervised
background loops for services.

A service's loops are part of it: one that ends with an error fails the whole service (`fail`),
which logs it once, sets `failed` and fails whatever waits on the service, so nothing hangs on a
loop that is gone. What follows is the caller's to decide: `eventflow.serving` ends the process
with a non-zero exit, so a supervisor restarts it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

log = logging.getLogger("eventflow")

#: Exit status of a process whose service failed (`serving`).
FAILED = 1
#: Exit status when nothing went wrong and nothing happened: no run started.
NOTHING = 3


def instance_id() -> str:
    """This process, as workers and coordinators name themselves: `host:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


T = TypeVar("T")


def pause_after(failures: int, *, first_s: float = 0.1, max_s: float = 30.0) -> float:
    """Seconds to wait before trying again after `failures` in a row: doubling from twice
    `first_s`, at most `max_s`."""
    return min(max_s, first_s * 2.0 ** min(failures, 30))


class Lifecycle:
    """Start and stop, each safe to call twice, or `async with` for both."""

    async def start(self) -> None:
        """Connect and begin work; does nothing if already started."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Let go of connections and tasks; does nothing if not started."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class Service(Lifecycle):
    """A long-running service: `ready` once it does its work, `failed` (with `error`) once one of
    its loops died, and `healthy()` in between.

    Subclasses implement `_open`, which may `spawn` loops and sets `ready` when the service is
    ready, and `_close`, which must also undo a partly done `_open`: a start that raises leaves
    nothing open and can be tried again. `_close` stops the loops (`_stop_loops`) where its
    order needs; any still running after it are cancelled.
    """

    #: Names the service in logs and errors.
    name = "service"

    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.failed = asyncio.Event()
        #: Why the service failed; None while it has not.
        self.error: BaseException | None = None
        self._started = False
        self._loops: set[asyncio.Task[Any]] = set()

    @property
    def started(self) -> bool:
        """Between a `start` that succeeded (or is under way) and `stop`."""
        return self._started

    async def start(self) -> None:
        """Open and begin work; does nothing if started. If it raises, nothing is left open."""
        if self._started:
            return
        self._started = True
        self.failed.clear()
        self.error = None
        try:
            await self._open()
        except BaseException:
            self._started = False
            await self._shut()
            raise

    async def stop(self) -> None:
        """Stop the loops and let go of everything; does nothing if not started."""
        if not self._started:
            return
        self._started = False
        await self._shut()

    def healthy(self) -> bool:
        """Started, ready, and not failed."""
        return self._started and self.ready.is_set() and not self.failed.is_set()

    def spawn(self, work: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        """Run `work` in the background as part of this service: if it raises, the service
        fails. Cancelled by `stop` if still running."""
        task = asyncio.create_task(work, name=name)
        self._loops.add(task)
        task.add_done_callback(self._loop_ended)
        return task

    def fail(self, error: BaseException, where: str | None = None) -> None:
        """The service cannot go on: log it (once), set `failed`, fail what waits on it."""
        if self.failed.is_set():
            return
        self.error = error
        log.critical("%s: %s stopped", self.name, where or "the service", exc_info=error)
        self.failed.set()
        self._failing(error)

    @staticmethod
    async def cancel(*tasks: asyncio.Task[Any]) -> None:
        """Cancel `tasks` and wait until they have ended."""
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _open(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    async def _stop_loops(self) -> None:
        """Cancel every loop `spawn` started that is still running, and wait for them."""
        await self.cancel(*self._loops)

    def _failing(self, error: BaseException) -> None:
        """Fail the calls waiting on the service; none by default."""

    async def _shut(self) -> None:
        self.ready.clear()
        try:
            await self._close()
        finally:
            await self._stop_loops()

    def _loop_ended(self, task: asyncio.Task[Any]) -> None:
        self._loops.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            self.fail(error, task.get_name())
