"""A worker that cannot finish a request fails loudly instead of holding its partition."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

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
