"""A hop whose state one stream task holds costs no extra transaction on Kafka.

A dataset that a pipeline produces keeps its router state in that pipeline's stream task
(`App.home_of`), so the coordinator step that takes a task's result also routes its output and,
for a consumer in the same pipeline, requests the next task. The events it decided on the way
are still published, as echoes the stream task skips when it reads them back.
"""

from __future__ import annotations

from typing import Any

import pytest

import eventflow as ef
from eventflow.events import (
    DatasetProduced,
    DatasetProducedData,
    Event,
    PipelineInput,
    TaskRequested,
    TaskSucceeded,
    encode,
)
from eventflow.kafka import coordinator as coordinating
from eventflow.kafka.config import partition_for
from eventflow.kafka.coordinator import FORWARDED
from eventflow.runtime.step import Outcome
from eventflow.testing import KafkaHarness
from eventflow.topics import SPECS

from ..kafka_broker import Broker

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

TASKS = SPECS["eventflow.pipeline-inputs"].partitions


def named(prefix: str, avoid: set[int]) -> str:
    """The first name `prefix`N whose stream task is none of `avoid`."""
    return next(
        f"{prefix}{i}" for i in range(10_000) if partition_for(f"{prefix}{i}", TASKS) not in avoid
    )


CHAIN = "chain"
HOME = partition_for(CHAIN, TASKS)
# Keyed by their own names, these land elsewhere: only their home puts them with the chain.
SOURCE, FIRST, SECOND = (named(f"{n}-", {HOME}) for n in ("source", "first", "second"))
OTHER = named("other-", {HOME})  # a pipeline of another stream task, consuming FIRST


def app() -> ef.App:
    chain = ef.Pipeline(CHAIN)
    chain.task(inputs=[ef.Dataset(SOURCE)], outputs=[ef.Dataset(FIRST)], name="a")(_emit(FIRST))
    chain.task(inputs=[ef.Dataset(FIRST)], outputs=[ef.Dataset(SECOND)], name="b")(_emit(SECOND))
    other = ef.Pipeline(OTHER)
    other.task(inputs=[ef.Dataset(FIRST)], name="c")(_nothing)
    return ef.App([chain, other])


def _emit(dataset: str) -> Any:
    def body(ctx: ef.TaskContext) -> None:
        ctx.emit(dataset)

    return body


def _nothing(ctx: ef.TaskContext) -> None:
    pass


class Steps:
    """What each committed coordinator step took in, sent on and echoed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: list[tuple[int, list[Event], Outcome]] = []
        commit = coordinating._Transaction.commit

        async def recorded(transaction: Any, outcome: Outcome, records: list[Any]) -> None:
            await commit(transaction, outcome, records)
            inputs = [receipt.event for receipt in outcome.receipts.values()]
            self.seen.append((transaction.n, inputs, outcome))

        monkeypatch.setattr(coordinating._Transaction, "commit", recorded)

    def taking(self, kind: type[Event], task: str) -> tuple[int, Outcome]:
        """The step that took `task`'s result."""
        [found] = [
            (n, outcome)
            for n, inputs, outcome in self.seen
            if any(isinstance(e, kind) and getattr(e.data, "task", None) == task for e in inputs)
        ]
        return found


def sent(messages: list[tuple[str, str, Event]]) -> set[tuple[str, str]]:
    """(event type, dataset or task) of each message."""
    return {
        (type(e).__name__, str(getattr(e.data, "dataset", None) or getattr(e.data, "task", "")))
        for _, _, e in messages
    }


async def test_a_task_output_is_routed_and_its_consumer_requested_in_one_step(
    kafka: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = Steps(monkeypatch)
    async with KafkaHarness(app(), kafka.bootstrap) as h:
        await h.emit(SOURCE, version=1)
        await h.wait_for_runs(2, timeout=60)
        await h.wait_for(lambda: len(h.produced(SECOND)) == 1, 30)

        n, outcome = steps.taking(TaskSucceeded, "a")
        assert n == HOME
        assert sent(outcome.echoes) == {("DatasetProduced", FIRST), ("PipelineInput", FIRST)}
        assert ("TaskRequested", "b") in sent(outcome.messages)
        # The consumer in another stream task gets its input through the topic, as before.
        assert ("PipelineInput", FIRST) in sent(outcome.messages)
        assert [r.pipeline for r in h.runs(OTHER)] == [OTHER]

        # Echoes are on their topics for every reader, once, and decided once.
        assert len(h.produced(FIRST)) == 1
        routed = [e for e in h.events if isinstance(e, PipelineInput) and e.data.dataset == FIRST]
        assert sorted(e.data.pipeline for e in routed) == sorted([CHAIN, OTHER])
        requested = [
            e.data.task
            for _, _, outcome in steps.seen
            for _, _, e in outcome.messages
            if isinstance(e, TaskRequested)
        ]
        assert sorted(requested) == ["a", "b", "c"]
        assert [r.task for r in h.task_results()].count("b") == 1
        assert not h.dead_letters()
        decided = [e for _, inputs, _ in steps.seen for e in inputs]
        assert not [
            e for e in decided if isinstance(e, DatasetProduced) and e.data.dataset == FIRST
        ]
        assert not [
            e
            for e in decided
            if isinstance(e, PipelineInput) and (e.data.pipeline, e.data.dataset) == (CHAIN, FIRST)
        ], "an echo was decided again"


async def test_echoes_read_again_after_a_restart_are_skipped_again(
    kafka: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last step's echoes have no step of their own to commit their offsets: a new
    coordinator reads them again, and skips them again."""
    async with KafkaHarness(app(), kafka.bootstrap) as h:
        await h.emit(SOURCE, version=1)
        await h.wait_for_runs(2, timeout=60)
        await h.restart()
        steps = Steps(monkeypatch)
        await h.emit(SOURCE, version=2)
        await h.wait_for(lambda: len(h.runs(CHAIN)) == 2 and len(h.runs(OTHER)) == 2, 60)
        assert sorted(r.task for r in h.task_results()) == ["a", "a", "b", "b", "c", "c"]
        decided = [e for _, inputs, _ in steps.seen for e in inputs]
        assert not [
            e for e in decided if isinstance(e, DatasetProduced) and e.data.dataset == FIRST
        ]
        assert not h.dead_letters()


async def test_an_announcement_of_a_produced_dataset_is_forwarded_to_its_home(
    kafka: Broker,
) -> None:
    """Keyed by the dataset's name, as outside producers do, it lands on a partition that does
    not hold the dataset's state, and is forwarded to the one that does."""
    async with KafkaHarness(app(), kafka.bootstrap) as h:
        assert partition_for(FIRST, TASKS) != HOME
        await h.emit(FIRST, version=5)
        runs = await h.wait_for_runs(2, timeout=60)
        assert {r.pipeline for r in runs} == {CHAIN, OTHER}
        assert sorted(r.task for r in h.task_results()) == ["b", "c"]
        assert not h.dead_letters()


async def test_a_forged_decided_mark_does_not_make_a_record_skipped(kafka: Broker) -> None:
    async with KafkaHarness(app(), kafka.bootstrap) as h:
        event = DatasetProduced.of(DatasetProducedData(dataset=SOURCE, partition="", version=3))
        await h.publish_raw(encode(event), headers=[("eventflow-decided", b"x" * 32)])
        [run] = await h.wait_for_runs(1, pipeline=CHAIN, timeout=60)
        assert run.status == "succeeded"


async def test_a_record_forwarded_once_is_dead_lettered_rather_than_forwarded_again(
    kafka: Broker,
) -> None:
    """Coordinators disagreeing on a dataset's home (two App versions during a deploy) would
    pass its records back and forth; the second forward is refused with the reason instead."""
    async with KafkaHarness(app(), kafka.bootstrap) as h:
        assert partition_for("raw", TASKS) != HOME  # where `publish_raw` lands: not FIRST's home
        event = DatasetProduced.of(DatasetProducedData(dataset=FIRST, partition="", version=7))
        await h.publish_raw(encode(event), headers=[(FORWARDED, b"")])
        await h.wait_for(lambda: bool(h.dead_letters()), 60)
        [letter] = h.dead_letters()
        assert "forwarded once already" in letter.reason
        assert not h.runs()
