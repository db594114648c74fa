"""Property, on a real broker: whatever signed or unsigned records reach the coordinator's and
the workers' topics, both services keep serving, and refused records are dead-lettered."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventflow.events import PipelineRunSucceeded
from eventflow.kafka.signing import Signer

from ..conformance.harness import KafkaHarness
from ..kafka_broker import Broker
from ..unit.test_fuzz import app, raw_event

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TOPICS = [
    "eventflow.datasets",
    "eventflow.pipeline-inputs",
    "eventflow.task-events",
    "eventflow.pools",
    "eventflow.task-requests",
]


async def _fuzz(bootstrap: str, records: list[tuple[str, bytes, bool]]) -> None:
    from aiokafka import AIOKafkaProducer

    from eventflow.kafka.config import KafkaConfig

    harness = KafkaHarness(app(), bootstrap, heartbeat_timeout_ms=5000)
    await harness.start()
    try:
        signer = Signer.of(harness.settings)
        producer = AIOKafkaProducer(**KafkaConfig(harness.settings).client())
        await producer.start()
        try:
            for topic, raw, signed in records:
                headers = signer.headers(topic, raw) if signed else []
                await producer.send_and_wait(
                    harness.settings.topic_prefix + topic, raw, key=b"k", headers=headers
                )
        finally:
            await producer.stop()
        await harness.emit("src", "2030-01-01", version=2**63 - 1)
        async with asyncio.timeout(120):
            while not any(
                isinstance(e, PipelineRunSucceeded) and e.data.partition == "2030-01-01"
                for e in harness.events
            ):
                assert not harness.coordinator.failed.is_set(), "the coordinator died"
                assert not any(w.failed.is_set() for w in harness.workers), "a worker died"
                await asyncio.sleep(0.05)
    finally:
        await harness.stop()


@settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(st.tuples(st.sampled_from(TOPICS), raw_event, st.booleans()), min_size=30, max_size=60)
)
def test_no_record_stops_a_kafka_service(
    kafka: Broker, records: list[tuple[str, bytes, bool]]
) -> None:
    asyncio.run(_fuzz(kafka.bootstrap, records))
