"""Idempotent `start()` / `stop()` and `async with`, for every service and client."""

from __future__ import annotations

from types import TracebackType
from typing import Self


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
