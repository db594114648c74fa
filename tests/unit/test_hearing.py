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


class Listening:
    """A coordinator owning stream tasks 0 and 1, its loop listening as `listen(now)` says."""

    def __init__(self, home: Path) -> None:
        settings = ef.Settings(
            home=home,
            kafka_bootstrap="127.0.0.1:9",
            signing_key=SecretStr("k" * 32),
            heartbeat_timeout_ms=6000,
        )
        self.coordinator = KafkaCoordinator(ef.App([]), settings, instance="c")
        self.coordinator.stream_tasks.owned = {0, 1}
        self.fetched = Fetched(self.coordinator.config.topic("eventflow.task-events"), [0, 1])

    def listen(self, now: float, **written_at: float) -> dict[int, float]:
        """One turn of the loop at `now`, which fetched records on partition `pN` written at
        the time given: since when each task hears its workers."""
        newest = {int(p[1:]): int(at * 1000) for p, at in written_at.items()}
        consumer: Any = self.fetched
        self.coordinator._listen(consumer, now, newest)
        return dict(self.coordinator._heard_since)


T = 1000.0


def test_after_an_outage_silence_counts_from_a_new_record_or_a_silent_window(
    tmp_path: Path,
) -> None:
    c = Listening(tmp_path)
    assert c.listen(T) == {}, "nothing fetched yet: nothing heard"
    c.fetched.fetch(T + 1)
    assert c.listen(T + 1) == {0: T + 1, 1: T + 1}, "at the start, the first fetch counts"
    for second in range(2, 40):  # the broker is gone; the loop turns once a second
        heard = c.listen(T + second)
    assert heard == {}, "not fetched for 5 s and more: nothing is heard"
    c.fetched.fetch(T + 40)
    assert c.listen(T + 40) == {}, "fetched again, but no worker heard yet"
    assert c.listen(T + 41, p0=T + 2) == {}, "a record from before the outage proves nothing"
    assert c.listen(T + 41.5, p0=T + 41) == {0: T + 41.5}, "a new record: heard"
    c.fetched.fetch(T + 45)
    assert c.listen(T + 45) == {0: T + 41.5}, "partition 1 still silent, within a window"
    c.fetched.fetch(T + 46)
    assert c.listen(T + 46) == {0: T + 41.5, 1: T + 46}, "a whole window silent: heard as such"


def test_a_task_taken_over_again_hears_from_a_new_record(tmp_path: Path) -> None:
    """As after a step that failed on the broker: given up, then taken over again."""
    c = Listening(tmp_path)
    c.fetched.fetch(T)
    assert c.listen(T) == {0: T, 1: T}
    c.coordinator.stream_tasks.owned = {1}
    assert c.listen(T + 1) == {1: T}
    c.coordinator.stream_tasks.owned = {0, 1}
    c.fetched.fetch(T + 2)
    assert c.listen(T + 2, p0=T + 0.5) == {1: T}, "its records read again prove nothing"
    assert c.listen(T + 3, p0=T + 2.5) == {0: T + 3, 1: T}
