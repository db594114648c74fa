"""The OpenLineage Kafka transport's topic, read by `eventflow server`.

One consumer group (`eventflow.openlineage`) shares the topic's partitions between servers.
The transport keys a run's events by its job, so one server sees all the events of a run, in
order, which the merge by `runId` needs. Offsets are committed after the events before them
were handed on, so a crash repeats events (a repeated COMPLETE announces a version the router
drops) rather than losing them.
"""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from ..errors import BrokerError
from ..kafka.config import KafkaConfig
from ..lifecycle import Service
from ..operations import Operations

log = logging.getLogger("eventflow.openlineage")

TOPIC = "eventflow.openlineage"
GROUP = "eventflow.openlineage"


class LineageConsumer(Service):
    """Hands the RunEvents of `eventflow.openlineage` to `ops.lineage`."""

    name = "openlineage intake"

    def __init__(self, ops: Operations) -> None:
        super().__init__()
        self.ops = ops
        self.config = KafkaConfig(ops.settings)
        self._consumer: AIOKafkaConsumer | None = None
        #: RunEvents taken since the start.
        self.taken = 0

    async def _open(self) -> None:
        consumer = AIOKafkaConsumer(
            self.config.topic(TOPIC),
            group_id=self.config.name(GROUP),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            **self.config.client(),
        )
        try:
            await consumer.start()
        except KafkaError as e:
            await consumer.stop()
            raise BrokerError(f"cannot reach Kafka at {self.config.bootstrap}: {e}") from e
        self._consumer = consumer
        self.spawn(self._read(consumer), "openlineage intake")
        self.ready.set()

    async def _close(self) -> None:
        await self._stop_loops()
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=1000, max_records=100)
            except KafkaError as e:
                raise BrokerError(f"reading {TOPIC} failed: {e}", retriable=e.retriable) from e
            for tp, records in batches.items():
                for record in records:
                    received = await self.ops.lineage.take(record.value or b"", TOPIC)
                    if received.refused is not None:
                        log.warning(
                            "%s[%d]@%d refused: %s",
                            TOPIC,
                            tp.partition,
                            record.offset,
                            received.refused,
                        )
                    self.taken += 1
            if batches:
                try:
                    await consumer.commit()
                except KafkaError as e:
                    raise BrokerError(f"committing {TOPIC} failed: {e}") from e
