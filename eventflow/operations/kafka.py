"""The operations plane of a Kafka deployment, as `eventflow server` runs it: a signed
publisher for what operators hand in, one reader of every topic for the live feed, and a
replica of the coordinators' state to explain from."""

from __future__ import annotations

import asyncio
import logging

from ..definitions import App
from ..events import Event, encode
from ..kafka.clients import KafkaPublisher, KafkaSubscriber
from ..kafka.history import HistoryProjector
from ..kafka.replica import StateReplica
from ..kafka.signing import Signer
from ..lifecycle import Service
from ..settings import Settings
from ..topics import TOPICS, destination
from .base import Fanout, Feed, Operations, Submitted

log = logging.getLogger("eventflow.operations")

#: Every topic that carries CloudEvents, for the live feed.
EVENT_TOPICS = [spec.name for spec in TOPICS if spec.events]


class KafkaOperations(Operations):
    """Hands events to the topics, signed (operators' actions must be), and follows them."""

    name = "operations (kafka)"

    def __init__(self, app: App, settings: Settings) -> None:
        Signer.of(settings, required_by="eventflow server")
        self.projector = HistoryProjector(settings, app=app)
        super().__init__(app, settings, self.projector.store)
        self.publisher = KafkaPublisher(settings)
        self.reader = KafkaSubscriber(settings, topic=EVENT_TOPICS)
        self.fanout = Fanout()
        self.replica = StateReplica(app, settings)

    async def _open(self) -> None:
        await self.publisher.start()
        await self.reader.start()
        for part in self.parts:
            await part.start()
        self.spawn(self._follow(), "eventflow live feed")
        self.spawn(self._watch(), "eventflow operations")

    async def _close(self) -> None:
        await self._stop_loops()
        for part in reversed(self.parts):
            await part.stop()
        await self.reader.stop()
        await self.publisher.stop()

    @property
    def parts(self) -> list[Service]:
        return [self.projector, self.replica]

    async def _watch(self) -> None:
        """Ready once the history and the replica have caught up; failed if one fails."""
        for part in self.parts:
            await part.ready.wait()
        self.ready.set()
        failures = [asyncio.ensure_future(part.failed.wait()) for part in self.parts]
        try:
            await asyncio.wait(failures, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in failures:
                waiting.cancel()
        failed = next(part for part in self.parts if part.failed.is_set())
        raise RuntimeError(f"{failed.name} failed: {failed.error}")

    async def _follow(self) -> None:
        async for event in self.reader.events():
            self.fanout.put(event)

    async def submit(self, event: Event) -> Submitted:
        """Published, not yet decided: the coordinator dead-letters what it refuses."""
        topic, key = destination(event)
        await self.publisher.send(encode(event), key, topic)
        return Submitted(event.id)

    def live(self) -> Feed:
        return self.fanout.feed()
