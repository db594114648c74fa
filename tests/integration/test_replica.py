"""The state replica holds what the coordinators decided on, as they committed it."""

from __future__ import annotations

import asyncio

import pytest

import eventflow as ef
from eventflow.core import Engine
from eventflow.core.codec import changes
from eventflow.core.engine import Effects
from eventflow.kafka.replica import StateReplica
from eventflow.testing import KafkaHarness

from ..kafka_broker import Broker

pytestmark = pytest.mark.kafka


def app() -> ef.App:
    raw, clean, report, other = (
        ef.Dataset(name, ef.daily()) for name in ("raw", "clean", "report", "other")
    )
    a, b = ef.Pipeline("a"), ef.Pipeline("b", max_active_runs=1)

    @a.task(inputs=[raw], outputs=[clean])
    def tidy(ctx: ef.TaskContext) -> None:
        ctx.emit(clean)

    @b.task(inputs=[clean, other], outputs=[report])
    def summarize(ctx: ef.TaskContext) -> None:
        ctx.emit(report)

    return ef.App([a, b])


def everything(engine: Engine) -> dict[bytes, bytes]:
    """Every record of an engine's state, as the changelog would write it."""
    fx = Effects(
        dirty_partitions={(p, k) for p, st in engine.pipelines.items() for k in st.partitions},
        dirty_datasets=set(engine.datasets),
    )
    return dict(changes(engine, fx))


async def test_the_replica_follows_every_stream_task(kafka: Broker) -> None:
    async with KafkaHarness(app(), kafka.bootstrap) as harness:
        for day in ("2026-01-01", "2026-01-02"):
            await harness.emit("raw", day)
        await harness.wait_for_runs(2, pipeline="a")
        await harness.wait_idle()
        replica = StateReplica(harness.app, harness.settings)
        async with replica:
            await asyncio.wait_for(replica.ready.wait(), 60)
            want = everything(harness.coordinator.engine)
            assert everything(replica.engine) == want
            assert replica.engine.pipelines["b"].partitions["2026-01-02"].inputs["clean"]
            # Later steps reach it too, once they are committed.
            await harness.emit("other", "2026-01-02")
            await harness.wait_for_runs(1, pipeline="b")
            await harness.wait_idle()
            await replica.sync()
            assert everything(replica.engine) == everything(harness.coordinator.engine)
            assert everything(replica.engine) != want
