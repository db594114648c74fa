"""The operations plane of a Kafka deployment, as `eventflow server` runs it: a signed
publisher for what operators hand in, and one reader of every topic for the live feed."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from ..definitions import App
from ..events import Event, encode
from ..kafka.clients import KafkaPublisher, KafkaSubscriber
from ..kafka.signing import Signer
from ..settings import Settings
from ..topics import TOPICS, destination
from .base import Fanout, Operations, Submitted

log = logging.getLogger("eventflow.operations")

#: Every topic that carries CloudEvents, for the live feed.
EVENT_TOPICS = [spec.name for spec in TOPICS if spec.events]


class KafkaOperations(Operations):
    """Hands events to the topics, signed (operators' actions must be), and follows them."""

    name = "operations (kafka)"

    def __init__(self, app: App, settings: Settings) -> None:
        super().__init__(app, settings)
        Signer.of(settings, required_by="eventflow server")
        self.publisher = KafkaPublisher(settings)
        self.reader = KafkaSubscriber(settings, topic=EVENT_TOPICS)
        self.fanout = Fanout()

    async def _open(self) -> None:
        await self.publisher.start()
        await self.reader.start()
        self.spawn(self._follow(), "eventflow live feed")
        self.ready.set()

    async def _close(self) -> None:
        await self._stop_loops()
        await self.reader.stop()
        await self.publisher.stop()

    async def _follow(self) -> None:
        async for event in self.reader.events():
            self.fanout.put(event)

    async def submit(self, event: Event) -> Submitted:
        """Published, not yet decided: the coordinator dead-letters what it refuses."""
        _, key = destination(event)
        await self.publisher.send(encode(event), key)
        return Submitted(event.id)

    def live(self) -> AsyncIterator[Event]:
        return self.fanout.events()
