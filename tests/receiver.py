"""A real webhook receiver for alert tests: a Starlette app served by uvicorn on 127.0.0.1,
recording every request and answering with the statuses it is told to, then 200."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from eventflow.lifecycle import Lifecycle


class _Quiet(uvicorn.Server):
    """Leaves signals to the test runner."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def free_port() -> int:
    """A port nothing listens on now (and, bound and let go at once, nothing will soon)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class Receiver(Lifecycle):
    """Listens on `port` (a free one if not given) once started; `url(path)` addresses it
    before that too, so a rule can point at a receiver that is down. `answers` are the
    statuses of the next requests, in order; `always` gives a path's status for good; the
    rest get 200."""

    def __init__(
        self,
        port: int | None = None,
        answers: list[int] | None = None,
        always: dict[str, int] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.answers = list(answers or [])
        self.always = dict(always or {})
        self.received: list[Received] = []
        self._arrived = asyncio.Condition()
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        self.received.append(Received(request.url.path, dict(request.headers), body))
        status = self.always.get(request.url.path) or (self.answers.pop(0) if self.answers else 200)
        async with self._arrived:
            self._arrived.notify_all()
        return Response(b"busy" if status >= 500 else b"", status_code=status)

    async def start(self) -> None:
        if self._server is not None:
            return
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", ws="none"
        )
        self._server = server = _Quiet(config)
        self._task = asyncio.create_task(server.serve())
        async with asyncio.timeout(10):
            while not server.started:
                if self._task.done():
                    await self._task
                    raise RuntimeError("the receiver stopped before it listened")
                await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        await self._task
        self._server = self._task = None

    async def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        """Until at least `count` requests came; all of them."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.received) >= count)
        return list(self.received)
