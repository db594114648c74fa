"""A Kafka coordinator counts its workers' silence only from when it hears them: after it takes a
stream task, after a broker outage, and after it gives the task up and takes it over again, from
the first record written to the task's partition since (not the first fetch: workers may take
longer than the coordinator to produce again after a broker restart, and records read again
prove nothing), or else a whole heartbeat window of silence after that fetch (so that workers
that died meanwhile are still found)."""

from __future__ import annotations

import time
from dataclasses import dataclass
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


@dataclass
class Written:
    """A fetched record, as far as hearing goes: when it was written (ms)."""

    timestamp: int


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
        topic = self.coordinator.config.topic("eventflow.task-events")
        batches: dict[TopicPartition, list[Any]] = {
            TopicPartition(topic, int(p[1:])): [Written(int(at * 1000))]
            for p, at in written_at.items()
        }
        consumer: Any = self.fetched
        self.coordinator._listen(consumer, now, batches)
        return dict(self.coordinator._heard_since)


def test_after_an_outage_silence_counts_from_a_new_record_or_a_silent_window(
    tmp_path: Path,
) -> None:
    c = Listening(tmp_path)
    t = 1000.0
    assert c.listen(t) == {}, "nothing fetched yet: nothing heard"
    c.fetched.fetch(t + 1)
    assert c.listen(t + 1, p0=t - 5) == {}, "taken and fetched; a record from before proves nothing"
    assert c.listen(t + 2, p0=t + 1.5) == {0: t + 2}, "a record written since: heard"
    c.fetched.fetch(t + 7)
    assert c.listen(t + 7) == {0: t + 2, 1: t + 7}, "a whole window silent: heard as such"
    for second in range(8, 40):  # the broker is gone; the loop turns once a second
        heard = c.listen(t + second)
    assert heard == {}, "not fetched for 5 s and more: nothing is heard"
    c.fetched.fetch(t + 40)
    assert c.listen(t + 40) == {}, "fetched again, but no worker heard yet"
    assert c.listen(t + 41, p0=t + 8) == {}, "a record from before the outage proves nothing"
    assert c.listen(t + 41.5, p0=t + 41) == {0: t + 41.5}, "a new record: heard"
    c.fetched.fetch(t + 45)
    assert c.listen(t + 45) == {0: t + 41.5}, "partition 1 still silent, within a window"
    c.fetched.fetch(t + 46)
    assert c.listen(t + 46) == {0: t + 41.5, 1: t + 46}, "a whole window silent: heard as such"


def test_a_task_given_up_and_taken_over_again_hears_from_a_new_record(tmp_path: Path) -> None:
    """As after a step that failed on the broker (`drop_held`, at the time it happens)."""
    c = Listening(tmp_path)
    t = time.time()
    c.fetched.fetch(t)
    assert c.listen(t) == {}
    assert c.listen(t + 0.5, p0=t + 0.2, p1=t + 0.2) == {0: t + 0.5, 1: t + 0.5}
    given_up = time.time()
    c.coordinator.drop_held(0)
    assert c.listen(t + 1, p0=t - 1) == {1: t + 0.5}, "a record read again, from before"
    assert c.listen(t + 2, p0=given_up + 1) == {0: t + 2, 1: t + 0.5}, "a record written since"


def test_a_task_given_up_while_it_waits_waits_a_whole_window_again(tmp_path: Path) -> None:
    c = Listening(tmp_path)
    t = 1000.0
    for second in range(8):  # fetched, once a second, and silent
        c.fetched.fetch(t + second)
        heard = c.listen(t + second)
        if second == 1:
            c.coordinator.drop_held(0)  # a step of task 0 failed on the broker
        if second in (6, 7):
            assert heard == {1: t + 6}, "task 0 waits from its take-over, not from t"
    c.fetched.fetch(t + 8)
    assert c.listen(t + 8) == {0: t + 8, 1: t + 6}, "task 0: a window since its first fetch again"
