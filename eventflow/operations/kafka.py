"""The operations plane of a Kafka deployment, as `eventflow server` runs it: a signed
publisher for what operators hand in, one reader of every topic for the live feed, and a
replica of the coordinators' state to explain from."""

from __future__ import annotations

import logging

from ..definitions import App
from ..events import Event, encode
from ..kafka.clients import KafkaPublisher, KafkaSubscriber
from ..kafka.replica import StateReplica
from ..kafka.signing import Signer
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
        super().__init__(app, settings)
        Signer.of(settings, required_by="eventflow server")
        self.publisher = KafkaPublisher(settings)
        self.reader = KafkaSubscriber(settings, topic=EVENT_TOPICS)
        self.fanout = Fanout()
        self.replica = StateReplica(app, settings)

    async def _open(self) -> None:
        await self.publisher.start()
        await self.reader.start()
        await self.replica.start()
        self.spawn(self._follow(), "eventflow live feed")
        self.spawn(self._replicate(), "eventflow state replica")

    async def _close(self) -> None:
        await self._stop_loops()
        await self.replica.stop()
        await self.reader.stop()
        await self.publisher.stop()

    async def _replicate(self) -> None:
        """Ready once the replica has caught up; failed if it fails."""
        await self.replica.ready.wait()
        self.ready.set()
        await self.replica.failed.wait()
        raise RuntimeError(f"the state replica failed: {self.replica.error}")

    async def _follow(self) -> None:
        async for event in self.reader.events():
            self.fanout.put(event)

    async def submit(self, event: Event) -> Submitted:
        """Published, not yet decided: the coordinator dead-letters what it refuses."""
        _, key = destination(event)
        await self.publisher.send(encode(event), key)
        return Submitted(event.id)

    def live(self) -> Feed:
        return self.fanout.feed()
