"""A run's start is decided with what comes next, within `LINGER_S`, not in a transaction alone.

A quick task's result follows its start by milliseconds; a step committing the start alone would
still be completing on the broker when the result's step begins, which then waits to retry.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

import eventflow as ef
from eventflow.events import Event, TaskStarted, TaskSucceeded
from eventflow.kafka import coordinator as coordinating
from eventflow.kafka.coordinator import KafkaCoordinator
from eventflow.testing import KafkaHarness

from ..kafka_broker import Broker
from .test_local_hops import Steps
from .test_recovery import until

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]


def gated() -> tuple[ef.App, asyncio.Event, asyncio.Event]:
    """An App whose one task starts, says so, and ends when the test lets it."""
    began, release = asyncio.Event(), asyncio.Event()

    async def body(ctx: ef.TaskContext) -> None:
        began.set()
        await release.wait()
        ctx.emit("done")

    pipeline = ef.Pipeline("gated")
    pipeline.task(inputs=[ef.Dataset("go")], outputs=[ef.Dataset("done")], name="slow")(body)
    return ef.App([pipeline]), began, release


def took(inputs: list[Event], kind: type[Event]) -> bool:
    return any(isinstance(e, kind) for e in inputs)


def holding_start(coordinator: KafkaCoordinator) -> list[int]:
    """The stream tasks holding a run's start, not yet decided."""
    return [
        n
        for n, kept in coordinator._held.items()
        if any(isinstance(i.item, TaskStarted) for i in kept.inputs)
    ]


@contextlib.asynccontextmanager
async def start_held(
    kafka: Broker, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[KafkaHarness, Steps, asyncio.Event]]:
    """The gated task running, its start read and held (for an hour): the harness, the
    committed steps, and the event that lets the body end."""
    monkeypatch.setattr(coordinating, "LINGER_S", 3600.0)
    steps = Steps(monkeypatch)
    app, began, release = gated()
    async with KafkaHarness(app, kafka.bootstrap) as h:
        await h.emit("go", version=1)
        await asyncio.wait_for(began.wait(), 60)
        await until(lambda: holding_start(h.coordinator), "the coordinator to read the start")
        yield h, steps, release


async def test_a_start_waits_for_the_result_and_is_committed_with_it(
    kafka: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with start_held(kafka, monkeypatch) as (h, steps, release):
        assert not [inputs for _, inputs, _ in steps.seen if took(inputs, TaskStarted)]
        release.set()
        await h.wait_for_runs(1, timeout=60)

        [(_, inputs, _)] = [s for s in steps.seen if took(s[1], TaskStarted)]
        assert took(inputs, TaskSucceeded), "the start was committed without the result"
        assert not holding_start(h.coordinator), "the start is not decided twice"
        assert [r.status for r in h.runs("gated")] == ["succeeded"]


async def test_a_start_alone_is_committed_once_it_has_waited(
    kafka: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = Steps(monkeypatch)
    flushed: list[Any] = []  # steps committed because what they held was due
    step = KafkaCoordinator._step

    async def recorded(
        service: Any, n: int, records: list[Any], tick: str | None = None, *, flush: bool = False
    ) -> None:
        before = len(steps.seen)
        await step(service, n, records, tick, flush=flush)
        if flush:
            flushed.extend(steps.seen[before:])

    monkeypatch.setattr(KafkaCoordinator, "_step", recorded)
    app, began, release = gated()
    async with KafkaHarness(app, kafka.bootstrap) as h:
        await h.emit("go", version=1)
        await asyncio.wait_for(began.wait(), 60)
        # The body is still running: only the linger can have ended the wait.
        await until(
            lambda: any(took(inputs, TaskStarted) for _, inputs, _ in steps.seen),
            "a step committing the start",
        )
        [start] = [s for s in steps.seen if took(s[1], TaskStarted)]
        assert start in flushed, "the start was committed before it had waited"
        assert not took(start[1], TaskSucceeded)
        assert h.coordinator.engine.pipelines["gated"].partitions[""].runs["slow"].status == (
            "running"
        )
        release.set()
        await h.wait_for_runs(1, timeout=60)
        assert [r.status for r in h.runs("gated")] == ["succeeded"]


async def test_a_task_taken_over_again_reads_what_it_held_once(
    kafka: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given up (as after a failed step) and taken over again, a task reads its uncommitted
    input again from the committed offsets: what it held before is dropped, not doubled."""
    async with start_held(kafka, monkeypatch) as (h, steps, release):
        coordinator = h.coordinator
        [n] = holding_start(coordinator)
        assignments = coordinator.stream_tasks.assignments
        async with coordinator._lock:
            await coordinator.stream_tasks.recover(n)
        assert n not in coordinator._held
        await until(lambda: n in coordinator.stream_tasks.owned, "task n taken over again")
        assert coordinator.stream_tasks.assignments == assignments  # no rebalance
        await until(lambda: holding_start(coordinator), "the start read again")
        release.set()
        await h.wait_for_runs(1, timeout=60)
        starts = [e for _, inputs, _ in steps.seen for e in inputs if isinstance(e, TaskStarted)]
        assert len(starts) == 1
        assert [r.status for r in h.runs("gated")] == ["succeeded"]
