"""Clients for systems outside eventflow: announce datasets, react to pipeline-run outcomes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

from .embedded.control import ControlClient
from .errors import EventError
from .events import (
    PIPELINE_RUN_EVENTS,
    DatasetProduced,
    DatasetProducedData,
    Event,
    PipelineRunData,
    check_metadata,
)
from .settings import Settings


class Publisher:
    """Announces dataset versions to a running eventflow dev instance.

    `publish` returns once the instance has logged and routed the event; an event it refuses
    (unknown dataset, bad partition key) raises `EventError` with the dead letter's reason.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self._client = ControlClient(self.settings.control_socket)

    async def start(self) -> None:
        await self._client.start()

    async def stop(self) -> None:
        await self._client.stop()

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def publish(
        self,
        dataset: str,
        partition: str = "",
        *,
        version: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Event:
        data = DatasetProducedData(
            dataset=dataset, partition=partition,
            version=version if version is not None else time.time_ns() // 1000,
            metadata=check_metadata(metadata or {}, self.settings.max_metadata_bytes),
        )  # fmt: skip
        event = DatasetProduced.of(data, source=self.settings.source)
        await self.publish_event(event)
        return event

    async def publish_event(self, event: Event) -> None:
        reply = await self._client.publish(event)
        if reply.get("dead_letter"):
            raise EventError(reply["dead_letter"])

    async def publish_raw(self, raw: bytes) -> dict[str, Any]:
        """Bytes as any producer would send them; the reply says if they were dead-lettered."""
        return await self._client.publish_raw(raw)


def publish(
    dataset: str,
    partition: str = "",
    *,
    version: int | None = None,
    metadata: dict[str, Any] | None = None,
    settings: Settings | None = None,
) -> Event:
    """Blocking one-shot publish, for scripts that are not async."""

    async def once() -> Event:
        async with Publisher(settings) as publisher:
            return await publisher.publish(
                dataset, partition, version=version, metadata=metadata
            )

    return asyncio.run(once())


class Subscriber:
    """Pipeline-run outcomes as they happen: `async for run in subscriber`."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        pipelines: list[str] | None = None,
        finished_only: bool = True,
    ) -> None:
        self.settings = settings or Settings()
        self.pipelines = set(pipelines or ())
        self.finished_only = finished_only
        self._client = ControlClient(self.settings.control_socket)

    async def start(self) -> None:
        await self._client.start()

    async def stop(self) -> None:
        await self._client.stop()

    async def __aenter__(self) -> Subscriber:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def __aiter__(self) -> AsyncIterator[PipelineRunData]:
        return self._runs()

    async def _runs(self) -> AsyncIterator[PipelineRunData]:
        async for event in await self._client.watch():
            if not isinstance(event, PIPELINE_RUN_EVENTS):
                continue
            run = event.data
            assert isinstance(run, PipelineRunData)
            if self.pipelines and run.pipeline not in self.pipelines:
                continue
            if self.finished_only and run.status == "running":
                continue
            yield run
