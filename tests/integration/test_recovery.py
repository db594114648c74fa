"""Coordinators restoring a large changelog keep their group membership and their state whole.

The changelog holds tens of thousands of real states (`bench/state.py`: one recorded run per
pipeline of the scale app, copied to further days). Coordinators run in this process, so the
tests read their engines and assignment counts directly; a restore is held open where a test
needs it to still be under way, and everything else waits on what the coordinators report.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pydantic import SecretStr

import eventflow as ef
from bench.apps import SCALE_PIPELINES, scale
from bench.state import FIRST_KEY, States
from eventflow.kafka import admin, changelog
from eventflow.kafka.config import KafkaConfig, partition_for
from eventflow.kafka.coordinator import KafkaCoordinator

from ..kafka_broker import Broker
from .cluster import SIGNING_KEY

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(300)]

STATES = 30_000  # 30 days of the 1,000 pipelines: 90,000 changelog records with their datasets
TASKS = 6


async def until(condition: Callable[[], object], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def states() -> States:
    built = States(STATES)
    asyncio.run(built.record())
    return built


@pytest.fixture
async def settings(kafka: Broker, states: States) -> ef.Settings:
    """A topic prefix of its own, its changelog written; a short session timeout, so that a
    restore blocking the loop for seconds would cost the membership."""
    made = ef.Settings(
        kafka_bootstrap=kafka.bootstrap,
        topic_prefix=f"r{uuid.uuid4().hex[:10]}.",
        kafka_session_timeout_ms=6000,
        signing_key=SecretStr(SIGNING_KEY),
    )
    await admin.apply(KafkaConfig(made))
    await states.write_changelog(made)
    return made


class HeldRestores:
    """Holds the changelog read of chosen calls (by order) until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, calls: set[int]) -> None:
        self.calls = calls
        self.count = 0
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self.task: int | None = None
        self._read = changelog.read
        monkeypatch.setattr(changelog, "read", self.read)

    async def read(self, config: KafkaConfig, n: int, **options: Any) -> changelog.Snapshot:
        self.count += 1
        if self.count in self.calls:
            self.task = n
            self.held.set()
            await self.release.wait()
        return await self._read(config, n, **options)


@pytest.fixture
async def coordinators(settings: ef.Settings) -> AsyncIterator[list[KafkaCoordinator]]:
    made: list[KafkaCoordinator] = []
    yield made
    for coordinator in made:
        await coordinator.stop()


def held_states(coordinator: KafkaCoordinator) -> int:
    return sum(len(pst.partitions) for pst in coordinator.engine.pipelines.values())


def states_of(tasks: list[int], states: States) -> int:
    """How many of the written (pipeline, partition) states belong to these stream tasks."""
    pipelines = [f"s{p}" for p in range(SCALE_PIPELINES)]
    return states.days * sum(partition_for(name, TASKS) in tasks for name in pipelines)


def trigger(tasks: list[int]) -> tuple[str, str]:
    """A pipeline whose input dataset and itself both belong to `tasks`: (dataset, pipeline)."""
    for p in range(SCALE_PIPELINES):
        dataset, pipeline = f"bench.s{p}.in", f"s{p}"
        if partition_for(dataset, TASKS) in tasks and partition_for(pipeline, TASKS) in tasks:
            return dataset, pipeline
    raise AssertionError(f"no pipeline of the scale app lies in stream tasks {tasks}")


def requested(coordinator: KafkaCoordinator, pipeline: str, key: str, version: int) -> bool:
    """Whether the coordinator decided a run of `pipeline` on `key` for this input version."""
    part = coordinator.engine.pipelines[pipeline].partitions.get(key)
    run = part.runs.get(f"{pipeline}.load") if part is not None else None
    return run is not None and version in run.inputs.values()


def newest(coordinator: KafkaCoordinator, pipeline: str, key: str, dataset: str) -> int:
    """The newest version of `dataset` the coordinator has recorded for `pipeline` on `key`."""
    part = coordinator.engine.pipelines[pipeline].partitions.get(key)
    found = part.inputs.get(dataset) if part is not None else None
    return found.version if found is not None else -1


async def test_processing_and_membership_continue_during_a_restore(
    settings: ef.Settings,
    states: States,
    coordinators: list[KafkaCoordinator],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the last stream task's restore is under way, the others process events; the
    member joins once and stays, and ends with every state loaded."""
    hold = HeldRestores(monkeypatch, calls={TASKS})
    coordinator = KafkaCoordinator(scale, settings)
    coordinators.append(coordinator)
    await coordinator.start()
    await asyncio.wait_for(hold.held.wait(), 120)
    await until(lambda: len(coordinator.owns()) == TASKS - 1, "the other tasks restored")
    dataset, pipeline = trigger(coordinator.owns())
    async with ef.Publisher(settings) as publisher:
        await publisher.publish(dataset, "2030-01-01", version=7)
    await until(lambda: requested(coordinator, pipeline, "2030-01-01", 7), "the event decided")
    assert not coordinator.ready.is_set() and hold.task not in coordinator.owns()
    hold.release.set()
    await asyncio.wait_for(coordinator.wait_ready(), 120)
    assert coordinator.owns() == list(range(TASKS))
    assert coordinator.assignments == 1, "the member was expelled and rejoined"
    assert held_states(coordinator) == states.count + 1
    assert len(coordinator.engine.datasets) == 2 * states.count + 1


async def test_a_restore_cancelled_by_a_rebalance_leaves_no_state_behind(
    settings: ef.Settings,
    states: States,
    coordinators: list[KafkaCoordinator],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A second coordinator joins while the first is restoring: the first's restore is revoked
    mid-way, and in the end each holds the state of exactly the tasks it owns."""
    hold = HeldRestores(monkeypatch, calls={1})
    first = KafkaCoordinator(scale, settings, instance="first")
    coordinators.append(first)
    await first.start()
    await asyncio.wait_for(hold.held.wait(), 120)
    second = KafkaCoordinator(scale, settings, instance="second")
    coordinators.append(second)
    await second.start()
    await until(lambda: first.assignments == 2, "the rebalance to reach the first")
    hold.release.set()
    await asyncio.wait_for(asyncio.gather(first.wait_ready(), second.wait_ready()), 120)
    await until(
        lambda: (
            len(first.owns()) + len(second.owns()) == TASKS
            and not first.stream_tasks.restoring()
            and not first.stream_tasks.dropping()
        ),
        "both restored",
    )
    assert sorted(first.owns() + second.owns()) == list(range(TASKS))
    for coordinator in (first, second):
        assert held_states(coordinator) == states_of(coordinator.owns(), states)


async def test_state_kept_over_a_rebalance_is_not_read_again(
    settings: ef.Settings,
    states: States,
    coordinators: list[KafkaCoordinator],
) -> None:
    """The first coordinator processes events in its tasks, a second one joins and leaves:
    the first gets its tasks back with the very state objects it held (its changelog ended
    where its own commits left it), takes the second's over, and decides on that state: a newer
    input waits for the run still in flight instead of starting another."""
    first = KafkaCoordinator(scale, settings, instance="first")
    coordinators.append(first)
    await first.start()
    await asyncio.wait_for(first.wait_ready(), 120)
    second = KafkaCoordinator(scale, settings, instance="second")
    coordinators.append(second)
    await second.start()
    await until(
        lambda: (
            len(first.owns()) + len(second.owns()) == TASKS
            and first.assignments == 2
            and not first.stream_tasks.restoring()
            and second.ready.is_set()
        ),
        "the tasks split between the two",
    )
    dataset, pipeline = trigger(first.owns())
    async with ef.Publisher(settings) as publisher:
        await publisher.publish(dataset, "2030-01-01", version=7)
        await until(lambda: requested(first, pipeline, "2030-01-01", 7), "the event decided")
        kept = first.engine.pipelines[pipeline].partitions[FIRST_KEY]
        await second.stop()
        await until(
            lambda: first.owns() == list(range(TASKS)) and not first.stream_tasks.restoring(),
            "the first to own every task",
        )
        assert first.engine.pipelines[pipeline].partitions[FIRST_KEY] is kept
        assert held_states(first) == states.count + 1
        await publisher.publish(dataset, "2030-01-01", version=8)
        await until(lambda: newest(first, pipeline, "2030-01-01", dataset) == 8, "the next decided")
    assert requested(first, pipeline, "2030-01-01", 7), "the run in flight is the one on 7"
    assert first.assignments == 3
