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

        async def broken(request: Any, report: Any) -> list[Event]:
            raise RuntimeError("the executor broke")

        worker.executor.run = broken  # type: ignore[method-assign]
        await harness.emit("raw")
        await asyncio.wait_for(worker.failed.wait(), 60)
        assert "the executor broke" in str(worker.error)
        assert not worker.healthy()
