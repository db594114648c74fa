"""A worker that cannot finish a request fails loudly instead of holding its partition."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import (
    KafkaError,
    OutOfOrderSequenceNumber,
    TransactionalIdAuthorizationFailed,
)

import eventflow as ef
from eventflow.errors import BrokerError
from eventflow.events import Event
from eventflow.kafka.worker import UNANSWERED_S, _Finished
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


def spoil_first_transaction(worker: Any, error: type[Exception] | None) -> list[Any]:
    """The worker's first result transaction is left open holding a record that is no event
    (read, it would be dead-lettered), then raises `error`, or never ends if None; later ones
    are real. Returns the producer it was left open on."""
    transact = worker._transact
    spoiled: list[Any] = []

    async def first_spoiled(producer: Any, tp: Any, items: Any) -> None:
        if spoiled:
            await transact(producer, tp, items)
            return
        spoiled.append(producer)
        await producer.begin_transaction()
        await producer.send(worker.config.topic("eventflow.task-events"), b"not an event")
        if error is not None:
            raise error()
        try:
            await asyncio.Event().wait()
        finally:  # abandoned: later transactions get the usual time, however slow the machine
            worker.unanswered_s = UNANSWERED_S

    worker._transact = first_spoiled
    return spoiled


async def succeeded_once(harness: KafkaHarness) -> None:
    """The one run succeeded with one result; the spoiled transaction was aborted, never read."""
    [run] = await harness.wait_for_runs(1, timeout=60)
    await harness.wait_idle()
    assert run.status == "succeeded"
    assert [type(r).__name__ for r in harness.task_results("body")] == ["TaskSucceededData"]
    assert harness.dead_letters() == [], "the open transaction was aborted, never read"


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
        broken = spoil_first_transaction(worker, OutOfOrderSequenceNumber)
        await harness.emit("raw")
        await succeeded_once(harness)
        assert broken and broken[0] not in worker._results.values(), "its producer was renewed"
        assert worker.healthy()


@pytest.mark.parametrize("how", ["unanswered", "sender died"])
async def test_a_result_transaction_of_unknown_outcome_has_its_partition_taken_over_again(
    kafka: Broker, how: str
) -> None:
    """A result transaction whose end never comes would hold every later result of the worker;
    one that fails with a bare KafkaError (aiokafka's sender died on a connection lost as a
    broker restarts) does not say whether it committed. Either way the worker takes the
    partition over again, as a new owner would: the new producer fences the old one and aborts
    its open transaction, the request is redelivered and runs again, and its result is
    published once."""
    ran: list[str] = []
    raw = ef.Dataset("raw")
    p = ef.Pipeline("p")

    @p.task(inputs=[raw])
    def body(ctx: ef.TaskContext) -> None:
        ran.append(ctx.run_id)

    async with KafkaHarness(ef.App([p]), kafka.bootstrap) as harness:
        [worker] = harness.workers
        if how == "unanswered":
            worker.unanswered_s = 2.0
            spoiled = spoil_first_transaction(worker, None)  # its end never comes
        else:
            spoiled = spoil_first_transaction(worker, KafkaError)
        await harness.emit("raw")
        await succeeded_once(harness)
        assert len(ran) == 2 and len(set(ran)) == 1, "the request ran again after the take-over"
        assert spoiled[0] not in worker._results.values(), "its producer was replaced"
        assert worker.owns() and worker.healthy()


async def test_results_that_cannot_be_published_on_revocation_fail_the_worker(
    kafka: Broker,
) -> None:
    """The group's listener swallows what a revocation raises: results that could not be
    published before their partitions are given up must fail the worker, not vanish."""
    async with KafkaHarness(app(), kafka.bootstrap) as harness:
        [worker] = harness.workers
        tp = next(iter(worker.partitions))

        async def refused(producer: Any, tp: Any, items: Any) -> None:
            raise TransactionalIdAuthorizationFailed()

        worker._transact = refused  # type: ignore[method-assign]
        # A finished request the commit loop has not taken yet (it is not woken for it).
        worker._finished.append(_Finished(tp, 0, "a-run", []))
        await worker._revoke([tp])
        assert worker.failed.is_set()
        assert isinstance(worker.error, BrokerError) and not worker.error.retriable
        assert tp not in worker.partitions and tp not in worker._results, "given up all the same"
