"""Clients for systems outside eventflow: announce datasets, react to pipeline-run outcomes,
and operators' tools: act on pipelines.

Both talk to a running `eventflow dev` over its control socket, or to Kafka when
`Settings.kafka_bootstrap` is set.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import datetime
from typing import Any

from .embedded.control import ControlClient
from .errors import BrokerError, ConfigurationError, EventError
from .events import (
    PIPELINE_RUN_EVENTS,
    Action,
    DatasetProduced,
    DatasetProducedData,
    Event,
    PipelineAction,
    PipelineRunData,
    check_metadata,
    encode,
    pipeline_action,
    version_now,
)
from .lifecycle import Lifecycle
from .settings import Settings
from .topics import destination


class Publisher(Lifecycle):
    """Announces dataset versions.

    On Kafka (`kafka_bootstrap` set) it is an idempotent producer with acks=all: `publish`
    returns once the broker has the event, and the coordinator dead-letters what it refuses. To a
    dev instance, `publish` returns once the instance has logged and routed the event, and raises
    `EventError` with the reason if it was refused.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        if self.settings.kafka_bootstrap:
            from .kafka.clients import KafkaPublisher

            self._kafka: KafkaPublisher | None = KafkaPublisher(self.settings)
            self._dev: ControlClient | None = None
        else:
            self._kafka = None
            self._dev = ControlClient(self.settings.control_socket)

    async def start(self) -> None:
        if self._kafka is not None:
            await self._kafka.start()
        if self._dev is not None:
            await self._dev.start()

    async def stop(self) -> None:
        if self._kafka is not None:
            await self._kafka.stop()
        if self._dev is not None:
            await self._dev.stop()

    async def publish(
        self,
        dataset: str,
        partition: str = "",
        *,
        version: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> DatasetProduced:
        """Announce a new version of `dataset` (of `partition`, if partitioned).

        `version` defaults to the time in microseconds, so later announcements win; `metadata`
        carries small facts about the data (a path, a row count), never the data. Returns the
        event as published.
        """
        data = DatasetProducedData(
            dataset=dataset,
            partition=partition,
            version=version if version is not None else version_now(),
            metadata=check_metadata(metadata or {}, self.settings.max_metadata_bytes),
        )
        event = DatasetProduced.of(data, source=self.settings.source)
        await self.publish_event(event)
        return event

    async def publish_event(self, event: Event) -> None:
        """Publish an event built elsewhere, keyed by its dataset as `publish` would."""
        key = event.data.dataset if isinstance(event.data, DatasetProducedData) else None
        reply = await self.publish_raw(encode(event), key=key)
        if reply.get("dead_letter"):
            raise EventError(reply["dead_letter"])
        if not reply.get("ok", False):
            raise BrokerError(f"not published: {reply.get('error', 'no reason given')}")

    async def publish_raw(
        self, raw: bytes, key: str | None = None, *, topic: str = "eventflow.datasets"
    ) -> dict[str, Any]:
        """Bytes as any producer would send them (on Kafka, to `topic`). From a dev instance
        the reply says whether they were dead-lettered; Kafka only acknowledges them."""
        if self._kafka is not None:
            await self._kafka.send(raw, key, topic)
            return {"ok": True}
        assert self._dev is not None
        return await self._dev.publish_raw(raw)

    async def act(
        self,
        pipeline: str,
        action: Action,
        *,
        reason: str,
        operator: str,
        partition: str = "",
        task: str | None = None,
    ) -> PipelineAction:
        """An operator's action on a pipeline: `pause`, `resume`, `rerun_task` (with `task`
        and `partition`), `rerun_run` or `cancel` (with `partition`). The coordinator decides
        it like any input, once. To a dev instance this returns once it is decided, and raises
        `EventError` with the reason if it was refused (a rerun of a task in flight, a cancel
        with no run); on Kafka it returns once the broker has it (a refusal becomes a dead
        letter) and needs `EVENTFLOW_SIGNING_KEY`, since only eventflow's own tools may act."""
        event = pipeline_action(
            pipeline,
            action,
            reason=reason,
            operator=operator,
            partition=partition,
            task=task,
            source=self.settings.source,
        )
        if self._kafka is not None and not self._kafka.signer.enabled:
            raise ConfigurationError("an action on Kafka is signed: set EVENTFLOW_SIGNING_KEY")
        topic, key = destination(event)
        reply = await self.publish_raw(encode(event), key=key, topic=topic)
        if reply.get("dead_letter"):
            raise EventError(reply["dead_letter"])
        if not reply.get("ok", False):
            raise BrokerError(f"not published: {reply.get('error', 'no reason given')}")
        return event


def publish(
    dataset: str,
    partition: str = "",
    *,
    version: int | None = None,
    metadata: dict[str, Any] | None = None,
    settings: Settings | None = None,
) -> DatasetProduced:
    """Announce one dataset version and wait until it is published, for scripts that are not
    async; each call connects anew, so a loop of announcements should use `Publisher`."""

    async def once() -> DatasetProduced:
        async with Publisher(settings) as publisher:
            return await publisher.publish(dataset, partition, version=version, metadata=metadata)

    return asyncio.run(once())


class Subscriber(Lifecycle):
    """Pipeline-run outcomes as they happen: `async for run in subscriber`.

    On Kafka, `group_id` makes it a consumer-group member (it resumes where the group left off);
    without one it starts at the end, or replays from `from_beginning`, `since` a time, or given
    `offsets` (partition -> offset of `eventflow.pipeline-runs`).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        pipelines: list[str] | None = None,
        finished_only: bool = True,
        group_id: str | None = None,
        from_beginning: bool = False,
        since: datetime | None = None,
        offsets: dict[int, int] | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.pipelines = set(pipelines or ())
        self.finished_only = finished_only
        if self.settings.kafka_bootstrap:
            from .kafka.clients import KafkaSubscriber

            self._kafka: KafkaSubscriber | None = KafkaSubscriber(
                self.settings,
                group_id=group_id,
                from_beginning=from_beginning,
                since=since,
                offsets=offsets,
            )
            self._dev: ControlClient | None = None
        else:
            self._kafka = None
            self._dev = ControlClient(self.settings.control_socket)
        self._stream: AsyncIterator[Event] | None = None
        self._iterators: list[AsyncGenerator[PipelineRunData, None]] = []

    async def start(self) -> None:
        if self._kafka is not None:
            await self._kafka.start()
            self._stream = self._kafka.events()
        elif self._dev is not None and self._stream is None:
            await self._dev.start()
            self._stream = await self._dev.watch()

    async def stop(self) -> None:
        for iterator in self._iterators:
            await iterator.aclose()
        self._iterators.clear()
        if self._stream is not None and hasattr(self._stream, "aclose"):
            await self._stream.aclose()
        self._stream = None
        if self._kafka is not None:
            await self._kafka.stop()
        if self._dev is not None:
            await self._dev.stop()

    def __aiter__(self) -> AsyncIterator[PipelineRunData]:
        """Runs of the chosen pipelines (finished ones only, unless `finished_only` is off)."""
        iterator = self._runs()
        self._iterators.append(iterator)
        return iterator

    async def _runs(self) -> AsyncGenerator[PipelineRunData, None]:
        if self._stream is None:
            await self.start()
        assert self._stream is not None
        async for event in self._stream:
            if not isinstance(event, PIPELINE_RUN_EVENTS):
                continue
            run = event.data
            if self.pipelines and run.pipeline not in self.pipelines:
                continue
            if self.finished_only and run.status == "running":
                continue
            yield run
