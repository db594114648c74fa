"""Kafka backends of `Publisher` and `Subscriber`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError

from ..errors import BrokerError, EventError
from ..events import Event, decode
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

    async def send(self, raw: bytes, key: str | None, topic: str = "eventflow.datasets") -> None:
        """`topic` unprefixed, as `eventflow.topics` names it."""
        if self._producer is None:
            raise BrokerError("the publisher is not started", retriable=False)
        try:
            await self._producer.send_and_wait(
                self.config.topic(topic),
                raw,
                key=key.encode() if key else None,
                headers=self.signer.headers(topic, raw),
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
    given start (`from_beginning`, `since` a time, or explicit offsets) to replay what was missed.
    With a signing key, eventflow's own events without a valid signature are skipped."""

    def __init__(
        self,
        settings: Settings,
        *,
        topic: str | list[str] = "eventflow.pipeline-runs",
        group_id: str | None = None,
        from_beginning: bool = False,
        since: datetime | None = None,
        offsets: dict[int, int] | None = None,
    ) -> None:
        self.config = KafkaConfig(settings)
        self.settings = settings
        self.signer = Signer.of(settings)
        names = [topic] if isinstance(topic, str) else topic
        self.topics = [self.config.topic(name) for name in names]
        self.group_id = group_id
        self.from_beginning = from_beginning
        self.since = since
        self.offsets = offsets
        self._consumer: AIOKafkaConsumer | None = None
        self.subscribed = asyncio.Event()

    async def start(self) -> None:
        if self._consumer is not None:
            return
        consumer = AIOKafkaConsumer(
            group_id=self.group_id,
            isolation_level="read_committed",
            auto_offset_reset="earliest" if self.from_beginning else "latest",
            enable_auto_commit=self.group_id is not None,
            **self.config.client(),
        )
        self._consumer = consumer = await _connected(consumer, self.config)
        if self.group_id is not None:
            consumer.subscribe(self.topics)
            return
        missing = set(self.topics) - await consumer.topics()
        if missing:
            await consumer.stop()
            self._consumer = None
            raise BrokerError(
                f"topic {sorted(missing)[0]} does not exist (run `eventflow topics apply`)",
                retriable=False,
            )
        tps = [
            TopicPartition(topic, p)
            for topic in self.topics
            for p in range(self.config.partitions(self.config.unprefixed(topic)))
        ]
        consumer.assign(tps)
        if self.offsets is not None:
            for tp in tps:
                consumer.seek(tp, self.offsets.get(tp.partition, 0))
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
        for tp in tps:
            await consumer.position(tp)  # resolve now: nothing published from here on is missed

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()

    async def events(self) -> AsyncIterator[Event]:
        if self._consumer is None:
            raise BrokerError("the subscriber is not started", retriable=False)
        async for record in self._consumer:
            value = record.value or b""
            try:
                event = decode(value, max_metadata_bytes=1 << 30)
                self.signer.check(
                    self.config.unprefixed(record.topic), event, value, record.headers or ()
                )
            except EventError as e:
                log.warning("skipping a record of %s: %s", record.topic, e.reason)
                continue
            yield event
