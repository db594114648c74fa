"""After a broker outage a Kafka coordinator counts its workers' silence only from when it hears
them again: the first record on a stream task's partition, not the first fetch (workers may take
longer than the coordinator to produce again after a broker restart), or else a whole heartbeat
window of silence after that fetch (so that workers that died meanwhile are still found)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiokafka import TopicPartition
from pydantic import SecretStr

import eventflow as ef
from eventflow.kafka.coordinator import KafkaCoordinator


class Fetched:
    """A consumer of the task-events partitions, with when each was last fetched (ms)."""

    def __init__(self, topic: str, partitions: list[int]) -> None:
        self.at: dict[TopicPartition, int | None] = {
            TopicPartition(topic, n): None for n in partitions
        }

    def fetch(self, now: float) -> None:
        self.at = dict.fromkeys(self.at, int(now * 1000))

    def assignment(self) -> set[TopicPartition]:
        return set(self.at)

    def last_poll_timestamp(self, tp: TopicPartition) -> int | None:
        return self.at[tp]


def test_after_an_outage_silence_counts_from_the_first_record_or_a_silent_window(
    tmp_path: Path,
) -> None:
    settings = ef.Settings(
        home=tmp_path,
        kafka_bootstrap="127.0.0.1:9",
        signing_key=SecretStr("k" * 32),
        heartbeat_timeout_ms=6000,
    )
    coordinator = KafkaCoordinator(ef.App([]), settings, instance="c")
    coordinator.stream_tasks.owned = {0, 1}
    fetched = Fetched(coordinator.config.topic("eventflow.task-events"), [0, 1])
    consumer: Any = fetched

    def listen(now: float, *spoke: int) -> dict[int, float]:
        coordinator._listen(consumer, now, set(spoke))
        return dict(coordinator._heard_since)

    t = 1000.0
    assert listen(t) == {}, "nothing fetched yet: nothing heard"
    fetched.fetch(t + 1)
    assert listen(t + 1) == {0: t + 1, 1: t + 1}, "at the start, the first fetch counts"
    assert listen(t + 10) == {}, "not fetched for 9 s: an outage, nothing is heard"
    fetched.fetch(t + 40)
    assert listen(t + 40) == {}, "fetched again, but no worker heard yet"
    assert listen(t + 41, 0) == {0: t + 41}, "a record on partition 0: its workers are heard"
    fetched.fetch(t + 45)
    assert listen(t + 45) == {0: t + 41}, "partition 1 still silent, within a window"
    fetched.fetch(t + 46)
    assert listen(t + 46) == {0: t + 41, 1: t + 46}, "a whole window silent: heard, as silent"
