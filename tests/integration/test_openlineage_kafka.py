"""OpenLineage in from Kafka: RunEvents as the OpenLineage Kafka transport writes them (the
client's own serialization, keyed `run:NAMESPACE/JOB`) on `eventflow.openlineage`, read by the
server's intake, trigger tasks on a real broker; a failed run is recorded as a dead letter."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from openlineage.client.event_v2 import Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import base_subset_dataset
from openlineage.client.serde import Serde

import eventflow as ef
from eventflow.kafka.config import KafkaConfig
from eventflow.openlineage.kafka import TOPIC, LineageConsumer
from eventflow.operations.kafka import KafkaOperations
from eventflow.testing import KafkaHarness

from ..kafka_broker import Broker

pytestmark = pytest.mark.kafka

DAY = "2026-11-20"
JOB = Job(namespace="spark", name="ingest_orders")


def app() -> ef.App:
    orders, tidy_orders = ef.Dataset("orders", ef.daily()), ef.Dataset("tidy_orders", ef.daily())
    p = ef.Pipeline("shop")

    @p.task(inputs=[orders], outputs=[tidy_orders])
    def tidy(ctx: ef.TaskContext) -> None:
        ctx.emit(tidy_orders)

    return ef.App(
        [p], lineage=[ef.LineageMapping("s3://lake", "raw/orders", orders, partition="subset")]
    )


def event(state: RunState, run_id: str, day: str | None = None) -> bytes:
    outputs = []
    if day is not None:
        condition = base_subset_dataset.PartitionSubsetCondition(
            partitions=[base_subset_dataset.Partition(dimensions={"day": day}, identifier=day)]
        )
        facet = base_subset_dataset.OutputSubsetOutputDatasetFacet(outputCondition=condition)
        outputs.append(OutputDataset("s3://lake", "raw/orders", outputFacets={"subset": facet}))
    return Serde.to_json(
        RunEvent(
            eventType=state,
            eventTime=datetime.now(UTC).isoformat(),
            run=Run(runId=run_id),
            job=JOB,
            outputs=outputs,
        )
    ).encode()


async def test_run_events_on_the_topic_trigger_and_failures_are_recorded(
    kafka: Broker, tmp_path: Path
) -> None:
    harness = KafkaHarness(app(), kafka.bootstrap, home=tmp_path / "home")
    async with harness:
        ops = KafkaOperations(harness.app, harness.settings)
        async with ops, LineageConsumer(ops) as consumer:
            config = KafkaConfig(harness.settings)
            producer = AIOKafkaProducer(**config.client())
            await producer.start()
            try:
                ok, failed = str(uuid.uuid4()), str(uuid.uuid4())
                for value in (
                    b"{not json",  # anything on the topic: refused with the reason, not a stop
                    event(RunState.START, ok, DAY),
                    event(RunState.START, failed, "2026-11-21"),
                    event(RunState.FAIL, failed),
                    event(RunState.COMPLETE, ok),
                ):
                    await producer.send_and_wait(
                        config.topic(TOPIC), value, key=b"run:spark/ingest_orders"
                    )
            finally:
                await producer.stop()
            await harness.wait_for(lambda: harness.task_results("tidy"), timeout=60)
            await harness.wait_for(lambda: len(harness.dead_letters()) == 2, timeout=60)
            assert consumer.taken == 5
    (announced,) = harness.produced("orders")
    assert (announced.partition, announced.metadata["openlineage_run_id"]) == (DAY, ok)
    assert [r.partition for r in harness.task_results("tidy")] == [DAY]
    garbage, letter = sorted(harness.dead_letters(), key=lambda d: "not JSON" not in d.reason)
    assert "not an OpenLineage RunEvent: not JSON" in garbage.reason and garbage.origin == TOPIC
    assert f"OpenLineage run {failed} of job spark/ingest_orders ended FAIL" in letter.reason
    assert letter.origin == TOPIC
