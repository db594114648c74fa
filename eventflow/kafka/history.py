"""The Kafka history projector: every event topic, read into the history store.

It reads every partition of every topic that carries CloudEvents (`topics.TOPICS` with events)
with read_committed, so an aborted step is never history, and takes what a trusted consumer
would: records that decode, belong on their topic and, for eventflow's own events, carry a valid
signature; with the App, outside dataset announcements it would refuse (unknown dataset, bad
partition key) are left out too (their dead letter is history instead). Delivery is at least
once: each batch goes to the store with the offsets it ends at, in one transaction, and the
store drops events it has (by id), so a restart resumes at the stored offsets and repeats
nothing. No consumer group is needed: the positions live in the store.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from ..core import Engine
from ..definitions import App
from ..errors import BrokerError, EventError
from ..events import DatasetProduced, Event, decode, is_external, structured
from ..history import HistoryStore
from ..lifecycle import Service
from ..metrics import HISTORY_LAG
from ..settings import Settings
from ..topics import SPECS, TOPICS
from .clients import _connected
from .config import KafkaConfig, broker_errors
from .signing import Signer

log = logging.getLogger("eventflow.history")

#: Records per history transaction.
BATCH = 1000
#: Seconds between retention passes.
PRUNE_EVERY_S = 3600.0
#: The topics a projector reads (unprefixed): those that carry events.
EVENT_TOPICS = tuple(spec.name for spec in TOPICS if spec.events)


class HistoryProjector(Service):
    """Projects the event topics of a deployment into `store` (the settings' history store by
    default). Needs the signing key, as any consumer of eventflow's own events does; `app`,
    when given, sorts outside dataset announcements as the router does."""

    name = "eventflow history projector"

    def __init__(
        self, settings: Settings, store: HistoryStore | None = None, *, app: App | None = None
    ) -> None:
        super().__init__()
        self.settings = settings
        self.config = KafkaConfig(settings)
        self.signer = Signer.of(settings, required_by="the history projector")
        self.store = store if store is not None else HistoryStore.of(settings)
        self._router = Engine(app).router if app is not None else None
        self._consumer: AIOKafkaConsumer | None = None
        self._tps: list[TopicPartition] = []
        #: Next offset to read per partition, as far as the store holds.
        self.offsets: dict[TopicPartition, int] = {}
        #: Set whenever `offsets` moves (or the service fails): what `caught_up` waits on.
        self._moved = asyncio.Event()

    @staticmethod
    def position_name(tp: TopicPartition) -> str:
        """A partition's position in the store: the full topic name keeps deployments that share
        a store (under different prefixes) apart."""
        return f"kafka:{tp.topic}:{tp.partition}"

    async def _open(self) -> None:
        await self.store.start()
        stored = await self.store.positions("kafka:")
        consumer = AIOKafkaConsumer(
            group_id=None,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self.config.client(),
        )
        self._consumer = await _connected(consumer, self.config)
        topics = [self.config.topic(name) for name in EVENT_TOPICS]
        with broker_errors("listing the topics"):
            missing = set(topics) - await consumer.topics()
        if missing:
            raise BrokerError(
                f"topic {sorted(missing)[0]} does not exist (run `eventflow topics apply`)",
                retriable=False,
            )
        self._tps = [
            TopicPartition(topic, p)
            for topic, name in zip(topics, EVENT_TOPICS, strict=True)
            for p in range(self.config.partitions(name))
        ]
        consumer.assign(self._tps)
        with broker_errors("seeking to the stored positions"):
            # One lookup for all partitions new to the store (one round trip per partition
            # took half a minute on a loaded machine).
            fresh = [tp for tp in self._tps if self.position_name(tp) not in stored]
            starts = await consumer.beginning_offsets(fresh) if fresh else {}
            for tp in self._tps:
                at = stored.get(self.position_name(tp))
                self.offsets[tp] = starts[tp] if at is None else at
                consumer.seek(tp, self.offsets[tp])
        self.spawn(self._run(), "history projection")
        self.spawn(self._measure(), "history lag")
        self.ready.set()

    async def _close(self) -> None:
        await self._stop_loops()
        try:
            if self._consumer is not None:
                consumer, self._consumer = self._consumer, None
                await consumer.stop()
        finally:
            await self.store.stop()

    async def caught_up(self) -> None:
        """Until the store holds every record committed to the event topics before the call
        (what `rebuild` and tests wait for)."""
        consumer = self._running()
        with broker_errors("reading the end offsets"):
            ends = await consumer.end_offsets(self._tps)
        while True:
            if self.error is not None:
                raise self.error
            if all(self.offsets.get(tp, 0) >= ends[tp] for tp in self._tps):
                return
            self._moved.clear()
            await self._moved.wait()

    async def lag(self) -> int:
        """Records of the event topics not yet in the store."""
        consumer = self._running()
        with broker_errors("reading the history lag"):
            ends = await consumer.end_offsets(self._tps)
        return sum(max(0, int(ends[tp]) - self.offsets.get(tp, 0)) for tp in self._tps)

    def _running(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise BrokerError("the history projector is not started", retriable=False)
        return self._consumer

    def _failing(self, error: BaseException) -> None:
        self._moved.set()

    async def _run(self) -> None:
        consumer = self._running()
        loop = asyncio.get_running_loop()
        next_prune = 0.0
        while True:
            with broker_errors("reading the event topics"):
                batches = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
            events: list[Event] = []
            positions: dict[str, int] = {}
            for tp, records in batches.items():
                for record in records:
                    event = self._admit(record)
                    if event is not None:
                        events.append(event)
                positions[self.position_name(tp)] = records[-1].offset + 1
            if positions:
                await self.store.apply(events, positions)
            with broker_errors("reading the positions"):
                # Past the records stored, and past transaction markers after them.
                done = {tp: await consumer.position(tp) for tp in self._tps}
            self.offsets.update(done)
            self._moved.set()
            if self.store.retention_days > 0 and loop.time() >= next_prune:
                next_prune = loop.time() + PRUNE_EVERY_S
                await self.store.prune(datetime.now(UTC))

    def _admit(self, record: Any) -> Event | None:
        """The record's event, if a trusted consumer would take it."""
        topic = self.config.unprefixed(record.topic)
        try:
            value = structured(record.value or b"", record.headers or ())
            event = decode(value, max_metadata_bytes=1 << 30)
            if event.type not in SPECS[topic].events:
                raise EventError(f"{event.type} does not belong on {topic}")
            self.signer.check(topic, event, value, record.headers or ())
            if isinstance(event, DatasetProduced) and is_external(event) and self._router:
                event = event.model_copy(update={"data": self._router.validate(event.data)})
        except EventError as e:
            log.debug("not history: a record of %s at %d: %s", topic, record.offset, e.reason)
            return None
        return event

    async def _measure(self) -> None:
        while True:
            try:
                HISTORY_LAG.set(await self.lag())
            except BrokerError:
                HISTORY_LAG.set(-1)
            await asyncio.sleep(1.0)


async def rebuild(settings: Settings, store: HistoryStore, *, app: App | None = None) -> None:
    """Empty `store` and project the event topics again from their beginning (what the topics
    still hold: see their retention). Stop the live projector of that store first."""
    async with store:
        await store.clear()
    projector = HistoryProjector(settings, store, app=app)
    async with projector:
        await projector.caught_up()
