"""State scale: a coordinator restarting onto 1,000,000 (pipeline, partition) states.

The records are real: the scale app first runs once per pipeline in this process (embedded
runtime, one daily partition each), so each template is what the coordinator itself wrote after
a successful run. Templates are copied to further days (partition key and run ids rewritten)
and written where a coordinator restores from, the SQLite file or the `eventflow.state` changelog,
together with the router's state of each run's input and output dataset.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import eventflow as ef
from eventflow.core import codec
from eventflow.core.state import dump
from eventflow.embedded import EmbeddedRuntime

from .apps import scale

FIRST = datetime(2020, 1, 1)
FIRST_KEY = FIRST.strftime("%Y-%m-%d")


class States:
    """`states` (pipeline, partition) records built from one real run per pipeline."""

    def __init__(self, states: int) -> None:
        self.days = max(1, states // len(scale.pipelines))
        self.partitions: dict[str, bytes] = {}
        self.datasets: dict[str, bytes] = {}

    @property
    def count(self) -> int:
        return self.days * len(self.partitions)

    async def record(self) -> None:
        home = Path(tempfile.mkdtemp(prefix="eventflow-bench-state-"))
        async with EmbeddedRuntime(scale, ef.Settings(home=home)) as runtime:
            for pipeline in scale.pipelines.values():
                for dataset in pipeline.tasks[0].inputs:
                    await runtime.emit(dataset, FIRST_KEY, version=1)
            await runtime.wait_idle()
            for name, pst in runtime.engine.pipelines.items():
                self.partitions[name] = dump(pst.partitions[FIRST_KEY])
            for (dataset, _), dst in runtime.engine.datasets.items():
                self.datasets[dataset] = dump(dst)

    def stored_bytes(self) -> dict[str, float]:
        """Mean serialized size: a (pipeline, partition) state, a (dataset, partition) state."""
        return {
            "partition": sum(map(len, self.partitions.values())) / len(self.partitions),
            "dataset": sum(map(len, self.datasets.values())) / len(self.datasets),
        }

    def _days(self) -> Iterator[tuple[str, bytes]]:
        for day in range(self.days):
            key = (FIRST + timedelta(days=day)).strftime("%Y-%m-%d")
            yield key, key.encode()

    def records(self) -> Iterator[tuple[str, bytes, bytes]]:
        """(name of its stream task, key, value) as `core.codec` lays the state out."""
        first = FIRST_KEY.encode()
        for key, raw_key in self._days():
            for pipeline, body in self.partitions.items():
                yield pipeline, codec.partition_key(pipeline, key), body.replace(first, raw_key)
            for dataset, body in self.datasets.items():
                yield scale.home_of(dataset), codec.dataset_key(dataset, key), body

    def write_sqlite(self, database: Path) -> None:
        """Into an embedded state file, as `Store.commit` writes it."""
        from eventflow.embedded.store import SCHEMA

        database.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(database)
        try:
            db.executescript(SCHEMA)
            rows = ((key, value) for _, key, value in self.records())
            db.executemany("INSERT INTO state VALUES (?, ?)", rows)
            db.commit()
        finally:
            db.close()

    async def write_changelog(self, settings: ef.Settings) -> int:
        """Onto the state changelog, keyed and partitioned as the Kafka coordinator does."""
        from aiokafka import AIOKafkaProducer

        from eventflow.kafka.config import KafkaConfig, partition_for

        config = KafkaConfig(settings)
        topic = config.topic("eventflow.state")
        tasks = config.partitions("eventflow.pipeline-inputs")
        producer = AIOKafkaProducer(
            acks="all",
            linger_ms=20,
            max_batch_size=1 << 20,
            compression_type=None,
            **config.client(),
        )
        await producer.start()
        written = 0
        try:
            pending = []
            for name, record, body in self.records():
                pending.append(
                    await producer.send(
                        topic, body, key=record, partition=partition_for(name, tasks)
                    )
                )
                written += len(body) + len(record)
                if len(pending) >= 50_000:
                    for future in pending:
                        await future
                    pending.clear()
            for future in pending:
                await future
        finally:
            await producer.stop()
        return written
