"""The operations plane of a Kafka deployment, as `eventflow server` runs it: a signed
publisher for what operators hand in, one reader of every topic for the live feed, and a
replica of the coordinators' state to explain from."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from asyncio import FIRST_COMPLETED

from ..core import Engine, Explanation
from ..definitions import App
from ..events import DeadLetter, Event, PipelineAction, dead_letter, encode
from ..kafka.clients import KafkaPublisher, KafkaSubscriber
from ..kafka.history import HistoryProjector
from ..kafka.replica import StateReplica
from ..kafka.signing import Signer
from ..lifecycle import Service
from ..settings import Settings
from ..topics import TOPICS, destination
from .base import Fanout, Feed, Operations, Submitted

log = logging.getLogger("eventflow.operations")

#: Seconds an operator's action is waited for before the answer says "not decided yet".
DECIDE_S = 10.0

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
        """Published; an operator's action is also waited for until a coordinator carried it
        out (its id in the pipeline's state) or refused it (a dead letter of its bytes), for
        `DECIDE_S` at most."""
        raw = encode(event)
        topic, key = destination(event)
        if not isinstance(event, PipelineAction):
            await self.publisher.send(raw, key, topic)
            return Submitted(event.id, decided=False)
        feed = self.live()  # before sending: the refusal cannot come before the feed
        try:
            await self.publisher.send(raw, key, topic)
            return await self._decided(event, raw, feed)
        finally:
            feed.close()

    async def refuse(self, raw: bytes, reason: str, origin: str) -> None:
        letter = dead_letter(raw, reason, origin=origin, source=self.settings.source)
        await self.publisher.send(encode(letter), None, "eventflow.deadletter")

    async def _decided(self, event: PipelineAction, raw: bytes, feed: Feed) -> Submitted:
        digest = hashlib.sha256(raw).hexdigest()

        async def refused() -> str | None:
            async for seen in feed:
                if isinstance(seen, DeadLetter) and seen.data.sha256 == digest:
                    return seen.data.reason
            return None  # the feed was cut: no answer from it

        pipeline = event.data.pipeline
        applied = asyncio.ensure_future(
            self.replica.until(lambda e: event.id in e.pipelines[pipeline].acted)
        )
        refusal = asyncio.ensure_future(refused())
        try:
            await asyncio.wait([applied, refusal], timeout=DECIDE_S, return_when=FIRST_COMPLETED)
        finally:
            for waiting in (applied, refusal):
                waiting.cancel()
        if refusal.done() and not refusal.cancelled() and refusal.result() is not None:
            return Submitted(event.id, refusal.result())
        return Submitted(event.id, decided=applied.done() and not applied.cancelled())

    def live(self) -> Feed:
        return self.fanout.feed()

    async def engine(self) -> Engine:
        await self.replica.sync()
        return self.replica.engine

    async def explain(self, pipeline: str, task: str, partition: str) -> Explanation:
        return (await self.engine()).explain(pipeline, task, partition)
