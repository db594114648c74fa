"""A read-only copy of every coordinator's state, following the `eventflow.state` changelog.

The operations plane explains decisions ("why didn't it run?") from the very state the
coordinators decide on, with the engine's own code, instead of a second reading of the rules.
Coordinators split that state by stream task and only hold their own; the replica reads every
partition of the changelog (read_committed, so only state of committed steps) into one engine
that never decides anything. It lags the coordinators by a changelog fetch: `sync()` waits until
it has read what was committed when it was called.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from ..core import Engine
from ..core.codec import Snapshot
from ..definitions import App
from ..lifecycle import Service
from ..settings import Settings
from .changelog import TaskStates
from .config import KafkaConfig, broker_errors

log = logging.getLogger("eventflow.replica")


class StateReplica(Service):
    """Every stream task's state in one engine, kept up to date from the changelog."""

    name = "state replica"

    def __init__(self, app: App, settings: Settings) -> None:
        super().__init__()
        self.config = KafkaConfig(settings)
        self.engine = Engine(
            app,
            default_timeout_s=settings.default_timeout_s,
            heartbeat_timeout_s=settings.heartbeat_timeout_ms / 1000,
            source=settings.source,
            local_pools=False,
        )
        topic = self.config.topic("eventflow.state")
        self.partitions = [
            TopicPartition(topic, n) for n in range(self.config.partitions("eventflow.state"))
        ]
        self._tasks = TaskStates(self.engine, len(self.partitions))
        self._consumer: AIOKafkaConsumer | None = None
        self._read = asyncio.Condition()

    async def _open(self) -> None:
        """Read the changelog from its beginning; `ready` once what it held at start is in."""
        self._consumer = AIOKafkaConsumer(
            enable_auto_commit=False, isolation_level="read_committed", **self.config.client()
        )
        with broker_errors(f"cannot reach Kafka at {self.config.bootstrap}"):
            await self._consumer.start()
            self._consumer.assign(self.partitions)
            await self._consumer.seek_to_beginning(*self.partitions)
            ends = await self._consumer.end_offsets(self.partitions)
        self.spawn(self._follow(self._consumer, ends), "eventflow state replica")

    async def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        await self._stop_loops()
        if consumer is not None:
            await consumer.stop()

    async def _follow(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> None:
        while True:
            with broker_errors("following the state changelog"):
                fetched = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, records in fetched.items():
                snapshot = Snapshot()
                for record in records:
                    if record.key is not None and record.value is not None:
                        snapshot.add(record.key.decode(), record.value)
                snapshot.forget_datasets(self._tasks.elsewhere(tp.partition))
                snapshot.update(self.engine)
            if not self.ready.is_set() and await self._reached(consumer, ends):
                self.ready.set()
            async with self._read:
                self._read.notify_all()

    @staticmethod
    async def _reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
        for tp, end in ends.items():
            if await consumer.position(tp) < end:
                return False
        return True

    async def until(self, holds: Callable[[Engine], bool]) -> None:
        """Wait until `holds(engine)` is true of the state read so far."""
        async with self._read:
            while not holds(self.engine):
                await self._read.wait()

    async def sync(self, timeout: float = 10.0) -> None:
        """Wait until the replica holds every step committed before this call (read your own
        writes: an explain right after an action sees the action decided, if it was)."""
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("the state replica is not started")
        with broker_errors("reading the state changelog's end"):
            ends = await consumer.end_offsets(self.partitions)

        async def caught_up() -> None:
            async with self._read:
                while not await self._reached(consumer, ends):
                    await self._read.wait()

        await asyncio.wait_for(caught_up(), timeout)
