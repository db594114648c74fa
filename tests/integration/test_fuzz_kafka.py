"""Property, on a real broker: whatever signed or unsigned records reach the coordinator's and
the workers' topics, both services keep serving, and refused records are dead-lettered."""

from __future__ import annotations

import asyncio
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventflow.core import run_id, run_key
from eventflow.events import (
    DatasetVersion,
    PipelineRunSucceeded,
    TaskRequested,
    TaskRequestedData,
    encode,
)
from eventflow.kafka.signing import Signer

from ..conformance.harness import KafkaHarness
from ..kafka_broker import Broker
from ..unit.test_fuzz import D1, app, raw_event

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(600)]

TOPICS = [
    "eventflow.datasets",
    "eventflow.pipeline-inputs",
    "eventflow.task-events",
    "eventflow.pools",
    "eventflow.task-requests",
]


#: (topic, value, signed)
Record = tuple[str, bytes, bool]


async def _send(harness: KafkaHarness, records: list[Record], key: bytes) -> None:
    from aiokafka import AIOKafkaProducer

    from eventflow.kafka.config import KafkaConfig

    signer = Signer.of(harness.settings)
    producer = AIOKafkaProducer(**KafkaConfig(harness.settings).client())
    await producer.start()
    try:
        for topic, raw, signed in records:
            headers = signer.headers(topic, raw) if signed else []
            await producer.send_and_wait(
                harness.settings.topic_prefix + topic, raw, key=key, headers=headers
            )
    finally:
        await producer.stop()


async def _still_serves(harness: KafkaHarness) -> None:
    """A legitimate run, emitted now, succeeds while both services stay up."""
    await harness.emit("src", "2030-01-01", version=2**63 - 1)
    async with asyncio.timeout(120):
        while not any(
            isinstance(e, PipelineRunSucceeded) and e.data.partition == "2030-01-01"
            for e in harness.events
        ):
            assert not harness.coordinator.failed.is_set(), "the coordinator died"
            assert not any(w.failed.is_set() for w in harness.workers), "a worker died"
            await asyncio.sleep(0.05)


async def _fuzz(
    bootstrap: str, records: list[Record], *, key: bytes = b"k", refused: str | None = None
) -> None:
    """Send `records` keyed `key`, then see a legitimate run succeed; `refused`: a dead
    letter's reason must say it."""
    harness = KafkaHarness(app(), bootstrap, heartbeat_timeout_ms=5000)
    await harness.start()
    try:
        await _send(harness, records, key)
        await _still_serves(harness)
        if refused is not None:
            await harness.wait_for(lambda: any(refused in d.reason for d in harness.dead_letters()))
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


# The pool `cpu` has one slot, and `one`, the first task of every run, needs it. A pooled request
# the pool stage admits holds that slot until something frees it; these signed requests name runs
# the coordinator never asked for, so it would never free them on its own.
POOLED_UNKNOWN_TASK = (  # as the property above found it: a task the App does not have
    b'{"specversion": "1.0", "id": "i", "source": "fuzz", "type": "eventflow.task.requested", '
    b'"data": {"run_id": "two:someday:74d3cc70bca5:3", "task": "mid", "pipeline": "p", '
    b'"partition": "2026-11-22", "attempt": 1, "pipeline_run_id": "p:x:1", "inputs": [], '
    b'"timeout_s": 5, "pool": "cpu"}}'
)


def pooled_request(version: int) -> TaskRequestedData:
    """A request of `one` as the coordinator would make it, for a run it never started."""
    rid = run_id("one", D1, run_key("one", D1, {"src": version}), 1)
    return TaskRequestedData(
        run_id=rid,
        task="one",
        pipeline="p",
        partition=D1,
        pipeline_run_id="p:x:1",
        inputs=[DatasetVersion(dataset="src", partition=D1, version=version)],
        timeout_s=5,
        pool="cpu",
    )


def requested(data: TaskRequestedData) -> bytes:
    return encode(TaskRequested.of(data))


@pytest.mark.parametrize(
    ("key", "refused"),
    [(b"k", "is not keyed by its 'cpu'"), (b"cpu", "pipeline 'p' has no task 'mid'")],
    ids=["keyed-elsewhere", "keyed-by-pool"],
)
def test_a_signed_pooled_request_for_a_task_the_app_lacks_holds_no_slot(
    kafka: Broker, key: bytes, refused: str
) -> None:
    records = [("eventflow.pools", POOLED_UNKNOWN_TASK, True)]
    asyncio.run(_fuzz(kafka.bootstrap, records, key=key, refused=refused))


def test_a_signed_pooled_request_no_run_asked_for_frees_its_slot_when_it_ends(
    kafka: Broker,
) -> None:
    request = pooled_request(version=1)
    records = [("eventflow.pools", requested(request), True)]
    reason = f"{request.run_id!r}, which is not in flight"
    asyncio.run(_fuzz(kafka.bootstrap, records, key=b"cpu", refused=reason))


async def _ran_before_then_pooled(bootstrap: str) -> None:
    request = pooled_request(version=2)
    raw = requested(request)
    harness = KafkaHarness(app(), bootstrap, heartbeat_timeout_ms=5000)
    await harness.start()
    try:
        # Straight to the workers first: it runs, and its result is refused as not in flight.
        await _send(harness, [("eventflow.task-requests", raw, True)], request.run_id.encode())
        await harness.wait_for(
            lambda: any(request.run_id in d.reason for d in harness.dead_letters()), 60
        )
        # Through the pool stage now: the worker acknowledges it without running it again.
        await _send(harness, [("eventflow.pools", raw, True)], b"cpu")
        await _still_serves(harness)
    finally:
        await harness.stop()


def test_a_signed_pooled_request_for_a_run_that_ran_before_frees_its_slot(
    kafka: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "eventflow.worker")
    asyncio.run(_ran_before_then_pooled(kafka.bootstrap))
    assert "already ran; acknowledging" in caplog.text
