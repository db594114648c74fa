"""One face over each runtime, so every scenario runs unchanged on all of them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import eventflow as ef
from eventflow.events import (
    PIPELINE_RUN_EVENTS,
    CheckCompletedData,
    DeadLetterData,
    Event,
    PipelineRunData,
)


@dataclass
class Recorder:
    """What task bodies did, in order; thread-safe because blocking bodies run in threads."""

    calls: list[tuple[str, str, dict[str, int]]] = field(default_factory=list)
    active: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self, ctx: ef.TaskContext, group: str = "") -> None:
        with self.lock:
            versions = {name: i.version for name, i in ctx.inputs.items()}
            self.calls.append((ctx.task.name, ctx.partition, versions))
            if group:
                self.active[group] = self.active.get(group, 0) + 1
                self.peak[group] = max(self.peak.get(group, 0), self.active[group])

    def leave(self, group: str) -> None:
        with self.lock:
            self.active[group] -= 1

    def tasks(self) -> list[str]:
        return [task for task, _, _ in self.calls]


class Harness(Protocol):
    events: list[Event]

    async def emit(
        self, dataset: str, partition: str = "", version: int | None = None, **meta: Any
    ) -> None: ...

    async def publish_raw(self, raw: bytes) -> None: ...

    async def wait_idle(self, timeout: float = 30) -> None: ...


class EmbeddedHarness:
    def __init__(self, app: ef.App, home: Path, **settings: Any) -> None:
        self.runtime = ef.EmbeddedRuntime(app, ef.Settings(home=home, **settings))
        self.events: list[Event] = []
        self._collector: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.runtime.start()
        queue = self.runtime.subscribe()

        async def collect() -> None:
            while True:
                self.events.append(await queue.get())

        self._collector = asyncio.create_task(collect())

    async def stop(self) -> None:
        if self._collector is not None:
            self._collector.cancel()
            await asyncio.gather(self._collector, return_exceptions=True)
        await self.runtime.stop()

    async def emit(
        self, dataset: str, partition: str = "", version: int | None = None, **meta: Any
    ) -> None:
        await self.runtime.emit(dataset, partition, version=version, metadata=meta)

    async def publish_raw(self, raw: bytes) -> None:
        await self.runtime.publish_raw(raw, origin="test")

    async def wait_idle(self, timeout: float = 30) -> None:
        await asyncio.wait_for(self.runtime.wait_idle(), timeout)
        await asyncio.sleep(0)  # let the collector take the last events


def runs(h: Harness) -> list[PipelineRunData]:
    out = []
    for e in h.events:
        if isinstance(e, PIPELINE_RUN_EVENTS) and e.data.status != "running":
            assert isinstance(e.data, PipelineRunData)
            out.append(e.data)
    return out


def dead_letters(h: Harness) -> list[DeadLetterData]:
    return [e.data for e in h.events if isinstance(e.data, DeadLetterData)]


def checks(h: Harness) -> list[CheckCompletedData]:
    return [e.data for e in h.events if isinstance(e.data, CheckCompletedData)]


@asynccontextmanager
async def embedded(app: ef.App, home: Path, **settings: Any) -> AsyncIterator[EmbeddedHarness]:
    harness = EmbeddedHarness(app, home, **settings)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()
