"""Which stream tasks a coordinator owns, and taking them over.

A take-over never costs the group membership, however much state it reads: the listeners return
at once (aiokafka resumes heartbeats only after the assignment listener returns), the changelog
is read and decoded in the background (`changelog.py`) a batch at a time with yields to the
loop, without the processing lock, while the coordinator keeps polling; the lock is taken only
for the final seek and swap. A revoked task's state is kept until the next assignment: if the
task comes back and its changelog has not moved since, it is not read again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from .. import metrics
from . import changelog
from .config import owns_nothing_for_sure, retrying

if TYPE_CHECKING:
    from .coordinator import KafkaCoordinator

log = logging.getLogger("eventflow.coordinator")

#: The co-partitioned input topics: stream task N reads partition N of each.
INPUTS = (
    "eventflow.datasets",
    "eventflow.pipeline-inputs",
    "eventflow.task-events",
    "eventflow.pools",
)


class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, tasks: TakeOver) -> None:
        self.tasks = tasks

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.tasks.revoke({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.tasks.assign({tp.partition for tp in assigned})


class TakeOver:
    """The stream tasks of one coordinator: owned ones with their transactional producers,
    ones being restored, and the state held for each."""

    def __init__(self, service: KafkaCoordinator, tasks: int) -> None:
        self.service = service
        self.owned: set[int] = set()
        self.producers: dict[int, AIOKafkaProducer] = {}
        #: Assignments received, one per consumer-group generation joined (see `assign`).
        self.assignments = 0
        # One changelog read or state drop at a time: they are CPU-bound, and this keeps the
        # `bulk_load` sections from overlapping.
        self._gate = asyncio.Lock()
        self._restoring: dict[int, asyncio.Task[None]] = {}
        self._dropping: set[asyncio.Task[None]] = set()
        self.states = changelog.TaskStates(service.engine, tasks)

    def restoring(self) -> list[int]:
        """The stream tasks being taken over."""
        return sorted(self._restoring)

    def dropping(self) -> int:
        """State drops under way (of tasks assigned elsewhere)."""
        return len(self._dropping)

    async def stop(self) -> None:
        """Cancel the restores and drops under way."""
        background = [*self._restoring.values(), *self._dropping]
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)

    async def revoke(self, numbers: set[int]) -> None:
        """Stop processing the revoked tasks, but keep their state: if the new assignment gives
        a task back and nobody wrote to its changelog meanwhile, it needs no restore."""
        cancelled = [self._restoring.pop(n) for n in sorted(numbers & set(self._restoring))]
        for task in cancelled:
            task.cancel()
        await asyncio.gather(*cancelled, return_exceptions=True)
        async with self.service._lock:
            gone = numbers & self.owned
            await self.close_producers(gone)
            self.owned -= gone
            for n in gone:
                self.service.drop_held(n)
        if gone:
            log.info("%s: gave up stream tasks %s", self.service.instance, sorted(gone))
        self._count_tasks()

    async def assign(self, numbers: set[int]) -> None:
        """Pause new tasks and take them over in the background; drop the state of tasks that
        went elsewhere."""
        assert self.service._consumer is not None
        self.assignments += 1
        metrics.ASSIGNMENTS.inc()
        stale = self.states.held - numbers - self.owned
        if stale:
            drop = self.service.spawn(self._drop_all(stale), "drop stream tasks")
            self._dropping.add(drop)
            drop.add_done_callback(self._dropping.discard)
        for n in sorted(numbers - self.owned - set(self._restoring)):
            self.service._consumer.pause(*self.inputs(n))
            self._start_take_over(n)
        self._count_tasks()
        if not self._restoring and owns_nothing_for_sure(self.service._consumer):
            self.service.ready.set()  # nothing to take over: more members than tasks

    def _start_take_over(self, n: int) -> None:
        self._restoring[n] = self.service.spawn(self._take_over(n), f"take over stream task {n}")

    async def _take_over(self, n: int) -> None:
        """Restore task n, retrying while the broker is away; any other error fails the
        service."""
        try:
            what = f"{self.service.instance}: taking over stream task {n}"
            await retrying(what, lambda: self._restore(n))
        finally:
            if self._restoring.get(n) is asyncio.current_task():
                del self._restoring[n]
            self._count_tasks()
        log.info("%s: took over stream task %d", self.service.instance, n)
        if not self._restoring:
            self.service.ready.set()

    async def _restore(self, n: int) -> None:
        """Fence task n's previous owner, bring n's state up to date, then process n."""
        producer = self.service.config.transactional(
            f"eventflow.coordinator.{n}", f"eventflow-coordinator-{self.service.instance}-{n}"
        )
        try:
            # Fences any previous owner of task n and aborts its open transaction, so the
            # changelog's end is final from here on.
            await producer.start()
            async with self._gate:
                snapshot = await self._catch_up(n)
            async with self.service._lock:
                consumer = self.service._consumer
                if consumer is None:
                    raise asyncio.CancelledError  # stopping
                tps = [tp for tp in self.inputs(n) if tp in consumer.assignment()]
                if tps:
                    await self._rewind(tps)
                # Nothing below awaits: the task's state goes in whole or not at all.
                if snapshot is not None:
                    self.states.install(n, snapshot)
                self._rewake(n)
                self.producers[n] = producer
                self.owned.add(n)
                consumer.resume(*tps)
        except BaseException:
            await producer.stop()
            raise

    async def _catch_up(self, n: int) -> changelog.Snapshot | None:
        """Task n's state from its changelog, or None if the state held for n is current:
        its changelog still ends where this instance's last commit to it left it."""
        expected = self.states.ends.get(n)
        if expected is not None and self.service._consumer is not None:
            tp = changelog.state_partition(self.service.config, n)
            if await changelog.end_offset(self.service._consumer, tp) == expected:
                log.info("%s: stream task %d: state held is current", self.service.instance, n)
                return None
        if n in self.states.held:
            await self._drop(n)
        began = time.perf_counter()
        snapshot = await changelog.read(self.service.config, n)
        metrics.RESTORED.inc(snapshot.records)
        log.info(
            "%s: restored stream task %d from %d changelog records in %.1f s",
            self.service.instance,
            n,
            snapshot.records,
            time.perf_counter() - began,
        )
        return snapshot

    def _rewake(self, n: int) -> None:
        """Timers of n's pipelines from its state (ticks due while n was not owned were dropped)."""
        self.service.timers.forget(lambda key: self.states.owner_task(key) == n)
        for name, pst in self.service.engine.pipelines.items():
            if self.task_of(name) == n:
                wake = self.service.engine.runs.next_wake(pst)
                if wake is not None:
                    self.service.timers.add(wake, name)
        mine = self.states.owner_task
        for at, key in self.service.engine.freshness_wakes(lambda subject: mine(subject) == n):
            self.service.timers.add(at, key)

    async def _drop_all(self, numbers: set[int]) -> None:
        async with self._gate:
            for n in sorted(numbers):
                if n not in self.owned and n not in self._restoring:
                    await self._drop(n)

    async def _drop(self, n: int) -> None:
        await self.states.drop(n)
        self.service.timers.forget(lambda key: self.states.owner_task(key) == n)

    def inputs(self, n: int) -> list[TopicPartition]:
        return [TopicPartition(self.service.config.topic(t), n) for t in INPUTS]

    async def close_producers(self, numbers: set[int]) -> None:
        for n in numbers:
            producer = self.producers.pop(n, None)
            if producer is not None:
                await producer.stop()

    def _count_tasks(self) -> None:
        metrics.STREAM_TASKS.labels("owned").set(len(self.owned))
        metrics.STREAM_TASKS.labels("restoring").set(len(self._restoring))

    def task_of(self, key: str) -> int:
        return self.states.task_of(key)

    async def recover(self, n: int) -> None:
        """After an aborted step, whose changes may be in the state: take task n over again
        (state back from the changelog, input back to the committed offsets), in the background
        as on assignment."""
        assert self.service._consumer is not None
        self.owned.discard(n)
        self.service.drop_held(n)
        self.states.ends.pop(n, None)  # never reuse this state
        await self.close_producers({n})
        self.service._consumer.pause(
            *[tp for tp in self.inputs(n) if tp in self.service._consumer.assignment()]
        )
        if n not in self._restoring:
            self._start_take_over(n)
        self._count_tasks()

    async def _rewind(self, tps: list[TopicPartition]) -> None:
        """Back to the committed offsets; to the start where nothing was committed yet
        (`seek_to_committed` leaves those where they are, which would skip an aborted step)."""
        consumer = self.service._consumer
        assert consumer is not None
        committed = await asyncio.gather(*(consumer.committed(tp) for tp in tps))
        fresh = [tp for tp, at in zip(tps, committed, strict=True) if at is None]
        # Looked up, not `seek_to_beginning`: that waits for the fetcher's next round (seconds
        # while it serves the tasks already owned).
        starts = await consumer.beginning_offsets(fresh) if fresh else {}
        for tp, at in zip(tps, committed, strict=True):
            consumer.seek(tp, starts[tp] if at is None else at)
