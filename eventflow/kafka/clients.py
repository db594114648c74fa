"""Kafka backends of `Publisher` and `Subscriber`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError

from ..errors import BrokerError, ConfigurationError, EventError
from ..events import Event, decode, structured
from ..settings import Settings
from .config import KafkaConfig
from .signing import Signer

log = logging.getLogger("eventflow.clients")


async def _connected(client: Any, config: KafkaConfig) -> Any:
    """Start an aiokafka client, or close it and say which cluster could not be reached."""
    try:
        await client.start()
    except KafkaError as e:
        await client.stop()
        raise BrokerError(f"cannot reach Kafka at {config.bootstrap}: {e}") from e
    return client


class KafkaPublisher:
    """An idempotent producer with acks=all onto `eventflow.datasets` (keyed by dataset), or
    the topic an operator's action goes to. With a signing key (operators' tools) what it sends
    is signed, as a reset or an action must be."""

    def __init__(self, settings: Settings) -> None:
        self.config = KafkaConfig(settings)
        self.signer = Signer.of(settings)
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        if self._producer is not None:
            return
        producer = AIOKafkaProducer(enable_idempotence=True, acks="all", **self.config.client())
        self._producer = await _connected(producer, self.config)

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def send(
        self,
        raw: bytes,
        key: str | None,
        topic: str = "eventflow.datasets",
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """`topic` unprefixed, as `eventflow.topics` names it; `headers` go with the record
        (CloudEvents binary mode puts the attributes there)."""
        if self._producer is None:
            raise BrokerError("the publisher is not started", retriable=False)
        try:
            await self._producer.send_and_wait(
                self.config.topic(topic),
                raw,
                key=key.encode() if key else None,
                headers=[*headers, *self.signer.headers(topic, raw)],
            )
        except UnknownTopicOrPartitionError as e:
            raise BrokerError(
                f"topic {self.config.topic(topic)} does not exist (run `eventflow topics apply`)",
                retriable=False,
            ) from e
        except KafkaError as e:
            raise BrokerError(f"publishing failed: {e}", retriable=e.retriable) from e


class KafkaSubscriber:
    """Reads `eventflow.pipeline-runs` (or any of our topics) as a group member, or from a
    given start (`from_beginning`, `since` a time, or a `position` naming every partition) to
    replay what was missed. With a signing key, eventflow's own events without a valid
    signature are skipped.

    A group resumes from its committed offsets. A partition it has none for yet starts at the
    end (the beginning with `from_beginning`), and that start is committed as soon as it is
    assigned, so a member stopped before its first event still resumes there. A committed
    offset that retention has passed resumes at the oldest record kept.

    `items()` (what `Subscriber` reads) also says when the subscriber has caught up with the
    topics' ends as they were when its partitions were assigned, and `ack` commits, in a group,
    the offsets of what was handled: the group resumes after the last event handled, not the
    last one fetched."""

    def __init__(
        self,
        settings: Settings,
        *,
        topic: str | list[str] = "eventflow.pipeline-runs",
        group_id: str | None = None,
        from_beginning: bool = False,
        since: datetime | None = None,
        position: dict[str, int] | None = None,
    ) -> None:
        self.config = KafkaConfig(settings)
        self.settings = settings
        self.signer = Signer.of(settings)
        names = [topic] if isinstance(topic, str) else topic
        self.topics = [self.config.topic(name) for name in names]
        self.group_id = group_id
        self.from_beginning = from_beginning
        self.since = since
        self.position = position
        self._consumer: AIOKafkaConsumer | None = None
        self.subscribed = asyncio.Event()
        #: The end of each partition when it was assigned: caught up once every one is reached.
        self.ends: dict[TopicPartition, int] = {}
        self._acked: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}

    def stream(self, tp: TopicPartition) -> str:
        """A partition's name in a `Position`: `topic/partition`, the topic unprefixed."""
        return f"{self.config.unprefixed(tp.topic)}/{tp.partition}"

    async def start(self) -> None:
        if self._consumer is not None:
            return
        consumer = AIOKafkaConsumer(
            group_id=self.group_id,
            isolation_level="read_committed",
            # Every start is sought explicitly (`_position`, `_assigned`): this only applies to
            # an offset that retention has passed, where the oldest record kept loses least.
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            **self.config.client(),
        )
        self._consumer = consumer = await _connected(consumer, self.config)
        try:
            await self._position(consumer)
        except BaseException:
            self._consumer = None
            await consumer.stop()
            raise

    async def _position(self, consumer: AIOKafkaConsumer) -> None:
        missing = set(self.topics) - await consumer.topics()
        if missing:
            raise BrokerError(
                f"topic {sorted(missing)[0]} does not exist (run `eventflow topics apply`)",
                retriable=False,
            )
        if self.group_id is not None:
            assigned = asyncio.Event()
            consumer.subscribe(self.topics, listener=_Assigned(self, assigned))
            try:
                await asyncio.wait_for(assigned.wait(), 60)
            except TimeoutError as e:
                raise BrokerError(f"{self.group_id}: no partitions assigned within 60s") from e
            return
        tps = [
            TopicPartition(topic, p)
            for topic in self.topics
            for p in range(self.config.partitions(self.config.unprefixed(topic)))
        ]
        consumer.assign(tps)
        if self.position is not None:
            streams = {self.stream(tp): tp for tp in tps}
            unknown = sorted(set(self.position) - set(streams))
            if unknown:
                raise ConfigurationError(
                    f"position names {unknown[0]!r}, not a partition of this subscription "
                    f"(one of {', '.join(sorted(streams))})"
                )
            missing = sorted(set(streams) - set(self.position))
            if missing:
                raise ConfigurationError(
                    "a position on Kafka names every partition of the topics subscribed to, as "
                    f"`Subscriber.position` gives it: {missing[0]!r} is missing"
                )
            await self._within(consumer, {tp: self.position[name] for name, tp in streams.items()})
            for name, tp in streams.items():
                consumer.seek(tp, self.position[name])
        elif self.since is not None:
            found = await consumer.offsets_for_times(
                {tp: int(self.since.timestamp() * 1000) for tp in tps}
            )
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                consumer.seek(tp, found[tp].offset if found.get(tp) else ends[tp])
        elif self.from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        await self._assigned(tps)

    async def _within(self, consumer: AIOKafkaConsumer, starts: dict[TopicPartition, int]) -> None:
        """Refuse a start outside what a partition holds, as embedded mode does: before its
        first record those records are gone, beyond its end the next ones would be skipped."""
        firsts = await consumer.beginning_offsets(list(starts))
        ends = await consumer.end_offsets(list(starts))
        for tp, offset in sorted(starts.items()):
            if offset < firsts[tp]:
                raise ConfigurationError(
                    f"records of {self.stream(tp)} before offset {firsts[tp]} have left the "
                    f"topic (its retention): cannot start at {offset}"
                )
            if offset > ends[tp]:
                raise ConfigurationError(
                    f"{self.stream(tp)} ends at offset {ends[tp]}: cannot start at {offset}"
                )

    async def _assigned(self, tps: list[TopicPartition]) -> None:
        """Resolve where each partition starts (nothing published from here on is missed) and
        where it ends now. In a group, a partition with no committed offset starts at the end
        (or the beginning), committed at once: otherwise a member stopped before handling an
        event would leave nothing committed, and the next would start at a later end."""
        consumer = self._consumer
        assert consumer is not None
        fresh: list[TopicPartition] = []
        if self.group_id is not None:
            fresh = [tp for tp in tps if await consumer.committed(tp) is None]
            if fresh and self.from_beginning:
                await consumer.seek_to_beginning(*fresh)
            elif fresh:
                await consumer.seek_to_end(*fresh)
        for tp in tps:
            self._acked[tp] = await consumer.position(tp)
            if tp in fresh:
                self._committed.pop(tp, None)
            else:
                self._committed[tp] = self._acked[tp]
        self.ends.update(await consumer.end_offsets(tps))
        try:
            await self.commit()
        except BrokerError as e:  # committed by the next `commit`, before the next fetch
            log.warning("%s: start positions not committed yet: %s", self.group_id, e)

    async def stop(self) -> None:
        if self._consumer is not None:
            try:
                await self.commit()
            except BrokerError as e:
                log.warning("%s: last acknowledgements not committed: %s", self.group_id, e)
            consumer, self._consumer = self._consumer, None
            await consumer.stop()

    def ack(self, tp: TopicPartition, offset: int) -> None:
        """The record at `offset` is handled; committed by the next `commit`."""
        if offset + 1 > self._acked.get(tp, -1):
            self._acked[tp] = offset + 1

    async def commit(self) -> None:
        """Commit, in a group, what was acknowledged since the last commit."""
        consumer = self._consumer
        if consumer is None or self.group_id is None:
            return
        owned = consumer.assignment()
        moved = {
            tp: n for tp, n in self._acked.items() if tp in owned and self._committed.get(tp) != n
        }
        if not moved:
            return
        try:
            await consumer.commit(moved)
        except KafkaError as e:
            raise BrokerError(f"{self.group_id}: commit failed: {e}", retriable=e.retriable) from e
        self._committed.update(moved)

    def positions(self) -> dict[str, int]:
        """The next offset to read per partition, after what was acknowledged."""
        return {self.stream(tp): n for tp, n in self._acked.items()}

    async def caught_up(self) -> bool:
        consumer = self._consumer
        if consumer is None:
            return False
        owned = consumer.assignment()
        for tp, end in self.ends.items():
            if tp in owned and await consumer.position(tp) < end:
                return False
        return True

    async def items(self) -> AsyncIterator[tuple[TopicPartition, int, Event] | None]:
        """Records as events with where they came from, and `None` once when caught up.
        Acknowledgements are committed before each fetch."""
        consumer = self._consumer
        if consumer is None:
            raise BrokerError("the subscriber is not started", retriable=False)
        said = False
        while True:
            await self.commit()
            if not said and await self.caught_up():
                said = True
                yield None
            batches = await consumer.getmany(timeout_ms=200 if said else 50)
            for tp, records in batches.items():
                for record in records:
                    event = self._decode(record)
                    if event is None:
                        self.ack(tp, record.offset)
                    else:
                        yield tp, record.offset, event

    def _decode(self, record: Any) -> Event | None:
        try:
            value = structured(record.value or b"", record.headers or ())
            event = decode(value, max_metadata_bytes=1 << 30)
            self.signer.check(
                self.config.unprefixed(record.topic), event, value, record.headers or ()
            )
        except EventError as e:
            log.warning("skipping a record of %s: %s", record.topic, e.reason)
            return None
        return event

    async def events(self) -> AsyncIterator[Event]:
        if self._consumer is None:
            raise BrokerError("the subscriber is not started", retriable=False)
        async for record in self._consumer:
            event = self._decode(record)
            if event is not None:
                yield event


class _Assigned(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """Positions and ends of a group member's partitions as they are assigned."""

    def __init__(self, reader: KafkaSubscriber, assigned: asyncio.Event) -> None:
        self.reader = reader
        self.assigned = assigned

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        try:
            await self.reader.commit()
        except BrokerError as e:
            log.warning("%s: acknowledgements not committed: %s", self.reader.group_id, e)
        for tp in revoked:
            self.reader.ends.pop(tp, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.reader._assigned(list(assigned))
        self.assigned.set()
