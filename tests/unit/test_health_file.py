"""The health file keeps beating while the service works: an error reading the lag (a partition
given up while its offsets were being read) makes the lag unknown for one beat; it must not
freeze the file, or a supervisor would restart a worker that is fine."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from pydantic import SecretStr

import eventflow as ef
from eventflow import serving
from eventflow.kafka.worker import KafkaWorker, _Partition
from eventflow.lifecycle import Service


class Lagging(Service):
    """Ready at once; its first lag reading raises, the next ones answer 5."""

    name = "lagging"
    instance = "test:1"

    def __init__(self) -> None:
        super().__init__()
        self.readings = 0

    async def _open(self) -> None:
        self.ready.set()

    async def _close(self) -> None:
        pass

    def owns(self) -> list[int]:
        return [0]

    async def lag(self) -> int:
        self.readings += 1
        if self.readings == 1:
            raise KeyError("a partition given up meanwhile")
        return 5


async def test_a_failed_lag_reading_does_not_stop_the_health_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serving, "BEAT_S", 0.01)
    health = tmp_path / "health.json"
    service = Lagging()
    seen: list[int] = []
    async with service:
        beat = asyncio.create_task(serving._beat(service, "worker", health))  # type: ignore[arg-type]
        try:
            while 5 not in seen:
                assert not beat.done(), f"the beat ended: {beat.exception()!r}"
                if health.exists():
                    seen.append(orjson.loads(health.read_bytes())["lag"])
                await asyncio.sleep(0.01)
        finally:
            await Service.cancel(beat)
    assert seen[0] == -1, "the failed reading is reported as an unknown lag"


class GivenUpDuringRead:
    """A consumer whose offsets request returns after the worker gave partition 1 up."""

    def __init__(self, worker: KafkaWorker, tps: list[TopicPartition]) -> None:
        self.worker, self.tps = worker, tps

    def assignment(self) -> set[TopicPartition]:
        return set(self.tps)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        await self.worker._give_up(self.tps[1])
        return dict.fromkeys(tps, 10)

    async def position(self, tp: TopicPartition) -> int:
        return 7


async def test_worker_lag_counts_only_the_partitions_it_still_has(tmp_path: Path) -> None:
    worker = KafkaWorker(
        ef.App([]),
        ef.Settings(home=tmp_path, kafka_bootstrap="127.0.0.1:9", signing_key=SecretStr("k" * 32)),
        instance="w",
    )
    tps = [TopicPartition("eventflow.task-requests", n) for n in (0, 1)]
    worker.partitions = {tp: _Partition(running={1, 2}) for tp in tps}
    consumer: Any = GivenUpDuringRead(worker, tps)
    worker._consumer = consumer
    # Unread: 3 per partition (both were asked); running: 2, of partition 0 only.
    assert await worker.lag() == 3 + 3 + 2
