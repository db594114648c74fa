"""The API served by uvicorn inside the service's own event loop, with the common lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn

from ..errors import ConfigurationError
from ..lifecycle import Service
from ..operations import Operations
from .app import create_app

log = logging.getLogger("eventflow.api")


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """The process's supervisor handles SIGINT and SIGTERM, not the server."""
        yield


class ApiServer(Service):
    """Serves the API of `ops` on the settings' host and port (port 0: a free one, see `url`)
    until stopped; `token` is the one it requires."""

    name = "api server"

    def __init__(self, ops: Operations, *, token: str, ui: bool = False) -> None:
        super().__init__()
        self.token = token
        self.ui = ui
        self.settings = ops.settings
        self.app = create_app(ops, token, ui=ui)
        self.host = ops.settings.api_host
        self.port = ops.settings.api_port
        self._server: _Uvicorn | None = None
        self._serving: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def _open(self) -> None:
        # Bound here, so a taken port is one clear error rather than uvicorn's exit.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say so. Without it
        # every answer on a kept-alive connection waits ~40 ms for the client's delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as e:
            sock.close()
            raise ConfigurationError(
                f"cannot serve the API on {self.host}:{self.port}: {e.strerror} "
                "(set EVENTFLOW_API_PORT or --port)"
            ) from None
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            # Server-sent event streams never end by themselves: do not wait long for them.
            timeout_graceful_shutdown=1,
        )
        server = self._server = _Uvicorn(config)
        # Listening already: connections wait in the backlog until uvicorn accepts them.
        sock.listen(config.backlog)
        self._serving = self.spawn(self._serve(server, sock), "eventflow api")
        log.info("API at %s", self.url)
        self.ready.set()

    async def _serve(self, server: _Uvicorn, sock: socket.socket) -> None:
        await server.serve(sockets=[sock])
        if not server.should_exit:
            raise RuntimeError("the API server stopped by itself")

    async def _close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.should_exit = True
            if self._serving is not None:
                # Open connections get uvicorn's graceful shutdown, then are cancelled.
                await asyncio.wait([self._serving], timeout=5)
        await self._stop_loops()
