"""A worker that cannot finish a request fails loudly instead of holding its partition."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import OutOfOrderSequenceNumber

import eventflow as ef
from eventflow.events import Event
from eventflow.testing import KafkaHarness

from ..kafka_broker import Broker

pytestmark = pytest.mark.kafka


def app() -> ef.App:
    raw = ef.Dataset("raw")
    p = ef.Pipeline("p")

    @p.task(inputs=[raw])
    def body(ctx: ef.TaskContext) -> None:
        pass

    return ef.App([p])


async def test_an_executor_that_raises_fails_the_worker(kafka: Broker) -> None:
    async with KafkaHarness(app(), kafka.bootstrap) as harness:
        [worker] = harness.workers

        async def broken(request: Any, report: Any, trace: Any = None) -> list[Event]:
            raise RuntimeError("the executor broke")

        worker.executor.run = broken  # type: ignore[method-assign]
        await harness.emit("raw")
        await asyncio.wait_for(worker.failed.wait(), 60)
        assert "the executor broke" in str(worker.error)
        assert not worker.healthy()


async def test_a_cancelled_run_stops_its_body_on_the_worker(kafka: Broker) -> None:
    """The coordinator publishes the attempts a cancel ended; the worker running one stops its
    body and acknowledges the request with no result (nothing refused, nothing redelivered)."""
    stopped = asyncio.Event()
    began = asyncio.Event()
    raw = ef.Dataset("raw")
    p = ef.Pipeline("p")

    @p.task(inputs=[raw])
    async def forever(ctx: ef.TaskContext) -> None:
        began.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.set()
            raise

    async with KafkaHarness(ef.App([p]), kafka.bootstrap) as harness:
        await harness.emit("raw")
        await asyncio.wait_for(began.wait(), 60)
        await harness.act("p", "cancel", reason="no longer needed", operator="ada")
        [run] = await harness.wait_for_runs(1, timeout=60)
        assert run.status == "failed" and "cancelled by ada" in run.reason
        await asyncio.wait_for(stopped.wait(), 60)
        [worker] = harness.workers
        await harness.wait_idle()
        assert not worker.running
        assert harness.dead_letters() == [], "no late result to refuse"


async def test_a_producer_left_unusable_is_renewed_and_its_results_published_once(
    kafka: Broker,
) -> None:
    """After a broker restart a result transaction can fail with OutOfOrderSequenceNumber: the
    producer is unusable though the broker is fine. The worker starts a new
    producer of the same transactional id, which aborts what the old one left open, and
    publishes the results again: the run succeeds once, nothing of the open transaction is
    ever read, and the worker keeps running."""
    async with KafkaHarness(app(), kafka.bootstrap) as harness:
        [worker] = harness.workers
        transact = worker._transact
        broken: list[Any] = []

        async def fails_once(producer: Any, tp: Any, items: Any) -> None:
            if broken:
                await transact(producer, tp, items)
                return
            broken.append(producer)
            await producer.begin_transaction()
            # Left open: read, it would be dead-lettered as no event at all.
            await producer.send(worker.config.topic("eventflow.task-events"), b"not an event")
            raise OutOfOrderSequenceNumber()

        worker._transact = fails_once  # type: ignore[method-assign]
        await harness.emit("raw")
        [run] = await harness.wait_for_runs(1, timeout=60)
        await harness.wait_idle()
        assert run.status == "succeeded"
        assert [type(r).__name__ for r in harness.task_results("body")] == ["TaskSucceededData"]
        assert harness.dead_letters() == [], "the open transaction was aborted, never read"
        assert broken and broken[0] not in worker._results.values(), "its producer was renewed"
        assert worker.healthy()
