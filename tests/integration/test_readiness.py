"""A coordinator or worker that the group assigns nothing (more members than partitions) is
ready as soon as it has joined: its readiness (the "ready" line, the health file) must not wait
for a take-over that never comes."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

import eventflow as ef
from eventflow.kafka import admin, config
from eventflow.kafka.coordinator import KafkaCoordinator
from eventflow.kafka.worker import KafkaWorker
from eventflow.testing import KafkaHarness
from eventflow.topics import TOPICS

from ..kafka_broker import Broker

pytestmark = pytest.mark.kafka


def app() -> ef.App:
    p = ef.Pipeline("p")

    @p.task(inputs=[ef.Dataset("raw")])
    def body(ctx: ef.TaskContext) -> None:
        pass

    return ef.App([p])


async def test_a_member_assigned_no_partition_is_ready_owning_none(
    kafka: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One partition per topic: a second member of either group gets nothing.
    single = tuple(dataclasses.replace(spec, partitions=1) for spec in TOPICS)
    monkeypatch.setattr(admin, "TOPICS", single)
    monkeypatch.setattr(config, "TOPICS", single)
    async with KafkaHarness(app(), kafka.bootstrap) as h:
        # Instance names sort after the first members', so the assignors (range for
        # coordinators, round robin for workers, both over sorted member ids) give these none.
        worker = KafkaWorker(h.app, h.settings, instance="worker-9")
        coordinator = KafkaCoordinator(h.app, h.settings, instance="coordinator-9")
        async with worker, coordinator:
            await asyncio.wait_for(worker.ready.wait(), 60)
            await asyncio.wait_for(coordinator.ready.wait(), 60)
            assert worker.owns() == [] and worker.healthy()
            assert coordinator.owns() == [] and coordinator.healthy()
            await h.emit("raw")
            [run] = await h.wait_for_runs(1, timeout=60)
            assert run.status == "succeeded", "the first members still own the partition"
