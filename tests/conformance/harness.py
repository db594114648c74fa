"""One face over each runtime, so every scenario runs unchanged on all of them."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import eventflow as ef
from eventflow.embedded.control import control_allows
from eventflow.events import (
    PIPELINE_RUN_EVENTS,
    CheckCompletedData,
    DeadLetterData,
    Event,
    PipelineRunData,
    encode,
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
    @property
    def events(self) -> list[Event]:
        """Everything the runtime committed so far, oldest first."""
        ...

    async def emit(
        self, dataset: str, partition: str = "", version: int | None = None, **meta: Any
    ) -> None: ...

    async def publish_raw(self, raw: bytes) -> None: ...

    async def forge(self, event: Event) -> bytes:
        """Send `event` as an outsider would: over the control socket, or unsigned onto the
        topic it belongs on. Returns the bytes sent."""
        ...

    async def inject(self, event: Event) -> None:
        """Send `event` as one of eventflow's own services would (trusted, signed)."""
        ...

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

    async def forge(self, event: Event) -> bytes:
        raw = encode(event)
        await self.runtime.publish_raw(raw, origin="control", allowed=control_allows)
        return raw

    async def inject(self, event: Event) -> None:
        await self.runtime.publish(event)

    async def wait_idle(self, timeout: float = 30) -> None:
        await asyncio.wait_for(self.runtime.wait_idle(), timeout)
        await asyncio.sleep(0)  # let the collector take the last events


def runs(h: Harness) -> list[PipelineRunData]:
    out = []
    for e in h.events:
        if isinstance(e, PIPELINE_RUN_EVENTS) and e.data.status != "running":
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


class KafkaHarness:
    """A coordinator and a worker in this process, on a real broker, under a topic prefix of
    their own; `events` is everything they published, in the order it was created."""

    def __init__(self, app: ef.App, bootstrap: str, workers: int = 1, **settings: Any) -> None:
        from eventflow.kafka.coordinator import KafkaCoordinator
        from eventflow.kafka.worker import KafkaWorker

        settings.setdefault("kafka_session_timeout_ms", 3000)
        settings.setdefault("signing_key", "conformance-signing-key-0123456789")
        self.settings = ef.Settings(
            kafka_bootstrap=bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}.", **settings
        )
        self.app = app
        self.coordinator = KafkaCoordinator(app, self.settings, instance="coordinator-1")
        self.workers = [
            KafkaWorker(app, self.settings, instance=f"worker-{n}") for n in range(workers)
        ]
        self.publisher = ef.Publisher(self.settings)
        self._seen: list[Event] = []
        self._collector: asyncio.Future[list[None]] | None = None
        self._last_seen = time.monotonic()

    @property
    def events(self) -> list[Event]:
        return sorted(self._seen, key=lambda e: e.time)

    async def start(self) -> None:
        from eventflow.kafka import admin
        from eventflow.kafka.clients import KafkaSubscriber
        from eventflow.kafka.config import KafkaConfig

        await admin.apply(KafkaConfig(self.settings))
        readers = [
            KafkaSubscriber(self.settings, topic=topic, from_beginning=True)
            for topic in (
                "eventflow.datasets",
                "eventflow.pipeline-runs",
                "eventflow.deadletter",
                "eventflow.task-events",
            )
        ]
        for reader in readers:
            await reader.start()

        async def collect(reader: KafkaSubscriber) -> None:
            try:
                async for event in reader.events():
                    self._seen.append(event)
                    self._last_seen = time.monotonic()
            finally:
                await reader.stop()

        self._collector = asyncio.ensure_future(asyncio.gather(*(collect(r) for r in readers)))
        await self.coordinator.start()
        for worker in self.workers:
            await worker.start()
        await asyncio.wait_for(self.coordinator.wait_ready(), 60)
        for worker in self.workers:
            await asyncio.wait_for(worker.ready.wait(), 60)
        await self.publisher.start()

    async def stop(self) -> None:
        await self.publisher.stop()
        for worker in self.workers:
            await worker.stop()
        await self.coordinator.stop()
        if self._collector is not None:
            self._collector.cancel()
            await asyncio.gather(self._collector, return_exceptions=True)

    async def emit(
        self, dataset: str, partition: str = "", version: int | None = None, **meta: Any
    ) -> None:
        await self.publisher.publish(dataset, partition, version=version, metadata=meta)

    async def publish_raw(self, raw: bytes) -> None:
        await self.publisher.publish_raw(raw, key="raw")  # one key: kept in order

    async def forge(self, event: Event) -> bytes:
        raw = encode(event)
        await self._produce(event, raw, signed=False)
        return raw

    async def inject(self, event: Event) -> None:
        await self._produce(event, encode(event), signed=True)

    async def _produce(self, event: Event, raw: bytes, *, signed: bool) -> None:
        from aiokafka import AIOKafkaProducer

        from eventflow.kafka.config import KafkaConfig
        from eventflow.kafka.signing import Signer
        from eventflow.topics import destination

        topic, key = destination(event)
        headers = Signer.of(self.settings).headers(topic, raw) if signed else []
        producer = AIOKafkaProducer(**KafkaConfig(self.settings).client())
        await producer.start()
        try:
            await producer.send_and_wait(
                self.settings.topic_prefix + topic, raw, key=key.encode() or None, headers=headers
            )
        finally:
            await producer.stop()

    async def wait_idle(self, timeout: float = 60) -> None:
        """Every input processed, no run in progress, twice in a row 50 ms apart."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while time.monotonic() < deadline:
            lags = [await self.coordinator.lag()] + [await w.lag() for w in self.workers]
            idle = self.coordinator.engine.idle() and not any(lags)
            quiet = quiet + 1 if idle else 0
            if quiet >= 2:
                await asyncio.sleep(0.2)  # let the collector read the last events
                return
            await asyncio.sleep(0.05)
        raise TimeoutError("the Kafka runtime did not go idle")


@asynccontextmanager
async def on_kafka(app: ef.App, bootstrap: str, **settings: Any) -> AsyncIterator[KafkaHarness]:
    harness = KafkaHarness(app, bootstrap, **settings)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()
