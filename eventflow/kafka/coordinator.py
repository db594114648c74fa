"""The coordinator service: router, coordinator and pool gate on Kafka, exactly once.

Work is split into stream tasks, one per partition number N of the co-partitioned topics
(`datasets`, `pipeline-inputs`, `task-events`, `pools`, and the `state` changelog). One consumer
group with the range assignor gives each instance whole tasks. For each batch of task N, one Kafka
transaction holds the input offsets, every event the decisions emit and the changelog records of
the state they changed; its producer's transactional id is `eventflow.coordinator.N`, so a new
owner of N fences the old one before reading N's state back from the changelog. A crash anywhere
leaves either the whole step or none of it.

A take-over never costs the group membership, however much state it reads: the changelog is read
and decoded in the background (`changelog.py`) while the processing loop keeps polling, and only
the final seek and swap take the processing lock. A revoked task's state is kept until the next
assignment: if the task comes back and its changelog has not moved since, it is not read again.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import socket
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError

from .. import metrics
from ..core import Effects, Engine
from ..core.state import dump
from ..definitions import App
from ..errors import EventError
from ..events import (
    BY_TYPE,
    DatasetProduced,
    DatasetProducedData,
    Event,
    PoolReleased,
    PoolReleasedData,
    TaskRequested,
    TaskRequestedData,
    dead_letter,
    decode,
    encode,
    is_external,
)
from ..execution import one_line
from ..lifecycle import Lifecycle
from ..schedule import run_schedule
from ..settings import Settings
from ..topics import SPECS, destination
from . import changelog
from .config import KafkaConfig, transient
from .signing import Signer

log = logging.getLogger("eventflow.coordinator")

INPUTS = (
    "eventflow.datasets",
    "eventflow.pipeline-inputs",
    "eventflow.task-events",
    "eventflow.pools",
)
ACCEPTS: dict[str, tuple[type[Event], ...]] = {
    topic: tuple(BY_TYPE[kind] for kind in SPECS[topic].events) for topic in INPUTS
}
#: Times a step may fail unexpectedly on one record before that record is dead-lettered.
POISON_AFTER = 3
#: A task-events partition not fetched for this long counts as unheard (broker unreachable).
UNHEARD_MS = 5000


class _Undecidable(Exception):
    """Deciding a record (or a tick, `record` None) raised something other than `EventError`."""

    def __init__(self, record: Any, error: Exception) -> None:
        super().__init__(repr(error))
        self.record = record
        self.error = error


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: KafkaCoordinator) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.service._revoke({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.service._assign({tp.partition for tp in assigned})


class KafkaCoordinator(Lifecycle):
    """One coordinator instance; run as many as wanted, they split the stream tasks."""

    def __init__(self, app: App, settings: Settings, *, instance: str | None = None) -> None:
        self.app = app
        self.settings = settings
        self.config = KafkaConfig(settings)
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}"
        self.engine = Engine(
            app,
            default_timeout_s=settings.default_timeout_s,
            heartbeat_timeout_s=settings.heartbeat_timeout_ms / 1000,
            source=settings.source,
            local_pools=False,
        )
        self.group = self.config.name("eventflow.coordinator")
        self.signer = Signer.of(settings, required_by="eventflow coordinator")
        # Per record (topic, partition, offset): failures so far and the last error.
        self._failures: dict[tuple[str, int, int], tuple[int, str]] = {}
        self._tick_failures: Counter[str] = Counter()
        # Per stream task: since when its task-events partition has been fetched without a gap.
        self._heard_since: dict[int, float] = {}
        self._listened_at: float | None = None
        self.tasks = self.config.partitions("eventflow.pipeline-inputs")
        self.owned: set[int] = set()
        self.producers: dict[int, AIOKafkaProducer] = {}
        self.wakes: list[tuple[float, str]] = []
        self.ready = asyncio.Event()
        self.failed = asyncio.Event()
        #: Assignments received, one per consumer-group generation joined (see `_assign`).
        self.assignments = 0
        # Held by each processing step and by the final swap of a take-over.
        self._lock = asyncio.Lock()
        # One changelog read or state drop at a time: they are CPU-bound, and this keeps the
        # `bulk_load` sections from overlapping.
        self._gate = asyncio.Lock()
        self._restoring: dict[int, asyncio.Task[None]] = {}
        self._dropping: set[asyncio.Task[None]] = set()
        self._states = changelog.TaskStates(self.engine, self.tasks)
        self._clock: AIOKafkaProducer | None = None
        self._clocks: list[asyncio.Task[None]] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._loop: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._consumer is not None:
            return
        self._consumer = AIOKafkaConsumer(
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            partition_assignment_strategy=(RangePartitionAssignor,),
            session_timeout_ms=self.settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(100, self.settings.kafka_session_timeout_ms // 4),
            max_poll_interval_ms=300_000,
            client_id=f"eventflow-coordinator-{self.instance}",
            **self.config.client(),
        )
        await self._consumer.start()
        self._consumer.subscribe([self.config.topic(t) for t in INPUTS], listener=_Rebalance(self))
        self._loop = asyncio.create_task(self._run(), name="eventflow coordinator")
        self._loop.add_done_callback(self._died)
        if self.app.schedules:
            self._clock = AIOKafkaProducer(
                enable_idempotence=True, acks="all", **self.config.client()
            )
            await self._clock.start()
            for schedule in self.app.schedules.values():
                task = asyncio.create_task(run_schedule(schedule, self._tick_clock), name="clock")
                self._clocks.append(task)

    async def _tick_clock(
        self, dataset: str, partition: str, version: int, metadata: dict[str, object]
    ) -> None:
        """Every instance ticks; the router keeps one of the identical versions."""
        assert self._clock is not None
        data = DatasetProducedData(
            dataset=dataset, partition=partition, version=version, metadata=metadata
        )
        event = DatasetProduced.of(data, source=self.settings.source)
        value = encode(event)
        try:
            await self._clock.send_and_wait(
                self.config.topic("eventflow.datasets"),
                value,
                key=dataset.encode(),
                headers=self.signer.headers("eventflow.datasets", value),
            )
        except KafkaError as e:
            log.warning("%s: clock tick of %s lost: %s", self.instance, dataset, e)

    async def stop(self) -> None:
        """Finish the batch in hand, leave the group, close the producers."""
        if self._consumer is None:
            return
        consumer, self._consumer = self._consumer, None
        background = [*self._restoring.values(), *self._dropping, *self._clocks]
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        self._clocks.clear()
        if self._clock is not None:
            await self._clock.stop()
            self._clock = None
        if self._loop is not None:
            async with self._lock:
                self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
        await consumer.stop()
        async with self._lock:
            await self._close_producers(set(self.producers))

    async def wait_ready(self) -> None:
        """Until this instance has been assigned its stream tasks and restored their state."""
        await self.ready.wait()

    def _died(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.critical(
                "%s: %s stopped", self.instance, task.get_name(), exc_info=task.exception()
            )
            self.failed.set()

    def healthy(self) -> bool:
        """Ready, and the processing loop still running."""
        loop = self._loop
        return self.ready.is_set() and loop is not None and not loop.done()

    def owns(self) -> list[int]:
        """The stream tasks (partition numbers) this instance processes."""
        return sorted(self.owned)

    async def lag(self) -> int:
        """Input records not yet processed by this instance (-1 while a task is restoring)."""
        consumer = self._consumer
        if consumer is None or self._restoring:
            return -1
        tps = [tp for tp in consumer.assignment() if tp.partition in self.owned]
        if not tps:
            return 0
        ends = await consumer.end_offsets(tps)
        positions: list[int] = [await consumer.position(tp) for tp in tps]
        return sum(max(0, int(ends[tp]) - pos) for tp, pos in zip(tps, positions, strict=False))

    # -- rebalancing -----------------------------------------------------------------------------
    # A restore must never cost the group membership: the listeners return at once (aiokafka
    # resumes heartbeats only after the assignment listener returns), changelogs are read and
    # decoded in the background a batch at a time with yields to the loop, without the processing
    # lock, while `_run` keeps polling; the lock is taken only for the final seek and swap.
    async def _revoke(self, numbers: set[int]) -> None:
        """Stop processing the revoked tasks, but keep their state: if the new assignment gives
        a task back and nobody wrote to its changelog meanwhile, it needs no restore."""
        cancelled = [self._restoring.pop(n) for n in sorted(numbers & set(self._restoring))]
        for task in cancelled:
            task.cancel()
        await asyncio.gather(*cancelled, return_exceptions=True)
        async with self._lock:
            gone = numbers & self.owned
            await self._close_producers(gone)
            self.owned -= gone
        if gone:
            log.info("%s: gave up stream tasks %s", self.instance, sorted(gone))
        self._count_tasks()

    async def _assign(self, numbers: set[int]) -> None:
        """Pause new tasks and take them over in the background; drop the state of tasks that
        went elsewhere."""
        assert self._consumer is not None
        self.assignments += 1
        metrics.ASSIGNMENTS.inc()
        stale = self._states.held - numbers - self.owned
        if stale:
            drop = asyncio.create_task(self._drop_all(stale), name="drop stream tasks")
            self._dropping.add(drop)
            drop.add_done_callback(self._dropping.discard)
            drop.add_done_callback(self._died)
        for n in sorted(numbers - self.owned - set(self._restoring)):
            self._consumer.pause(*self._inputs(n))
            self._start_take_over(n)
        self._count_tasks()

    def _start_take_over(self, n: int) -> None:
        task = asyncio.create_task(self._take_over(n), name=f"take over stream task {n}")
        task.add_done_callback(self._died)
        self._restoring[n] = task

    async def _take_over(self, n: int) -> None:
        try:
            while True:
                try:
                    await self._restore(n)
                    break
                except (KafkaError, OSError) as e:
                    if not transient(e):
                        raise
                    log.warning(
                        "%s: taking over stream task %d failed (%s); retrying", self.instance, n, e
                    )
                    await asyncio.sleep(1)
        finally:
            if self._restoring.get(n) is asyncio.current_task():
                del self._restoring[n]
            self._count_tasks()
        log.info("%s: took over stream task %d", self.instance, n)
        if not self._restoring:
            self.ready.set()

    async def _restore(self, n: int) -> None:
        """Fence task n's previous owner, bring n's state up to date, then process n."""
        producer = AIOKafkaProducer(
            transactional_id=self.config.name(f"eventflow.coordinator.{n}"),
            enable_idempotence=True,
            acks="all",
            client_id=f"eventflow-coordinator-{self.instance}-{n}",
            **self.config.client(),
        )
        try:
            # Fences any previous owner of task n and aborts its open transaction, so the
            # changelog's end is final from here on.
            await producer.start()
            async with self._gate:
                snapshot = await self._catch_up(n)
            async with self._lock:
                consumer = self._consumer
                if consumer is None:
                    raise asyncio.CancelledError  # stopping
                tps = [tp for tp in self._inputs(n) if tp in consumer.assignment()]
                if tps:
                    await self._rewind(tps)
                # Nothing below awaits: the task's state goes in whole or not at all.
                if snapshot is not None:
                    self._states.install(n, snapshot)
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
        expected = self._states.ends.get(n)
        if expected is not None and self._consumer is not None:
            tp = changelog.state_partition(self.config, n)
            if await changelog.end_offset(self._consumer, tp) == expected:
                log.info("%s: stream task %d: state held is current", self.instance, n)
                return None
        if n in self._states.held:
            await self._drop(n)
        began = time.perf_counter()
        snapshot = await changelog.read(self.config, n)
        metrics.RESTORED.inc(snapshot.records)
        log.info(
            "%s: restored stream task %d from %d changelog records in %.1f s",
            self.instance,
            n,
            snapshot.records,
            time.perf_counter() - began,
        )
        return snapshot

    def _rewake(self, n: int) -> None:
        """Timers of n's pipelines from its state (ticks due while n was not owned were dropped)."""
        self.wakes = [(at, p) for at, p in self.wakes if self._task_of(p) != n]
        for name, pst in self.engine.pipelines.items():
            if self._task_of(name) == n:
                wake = self.engine.coordinator.next_wake(pst)
                if wake is not None:
                    self.wakes.append((wake, name))
        heapq.heapify(self.wakes)

    async def _drop_all(self, numbers: set[int]) -> None:
        async with self._gate:
            for n in sorted(numbers):
                if n not in self.owned and n not in self._restoring:
                    await self._drop(n)

    async def _drop(self, n: int) -> None:
        await self._states.drop(n)
        self.wakes = [(at, p) for at, p in self.wakes if self._task_of(p) != n]
        heapq.heapify(self.wakes)

    def _inputs(self, n: int) -> list[TopicPartition]:
        return [TopicPartition(self.config.topic(t), n) for t in INPUTS]

    async def _close_producers(self, numbers: set[int]) -> None:
        for n in numbers:
            producer = self.producers.pop(n, None)
            if producer is not None:
                await producer.stop()

    def _count_tasks(self) -> None:
        metrics.STREAM_TASKS.labels("owned").set(len(self.owned))
        metrics.STREAM_TASKS.labels("restoring").set(len(self._restoring))

    def _task_of(self, key: str) -> int:
        return self._states.task_of(key)

    # -- processing ------------------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while True:
            timeout = 1000
            if self.wakes:
                timeout = int(max(0.0, min(1.0, self.wakes[0][0] - time.time())) * 1000)
            batches = await consumer.getmany(timeout_ms=timeout, max_records=1000)
            async with self._lock:
                by_task: dict[int, list[Any]] = defaultdict(list)
                for tp, records in batches.items():
                    if tp.partition in self.owned:
                        by_task[tp.partition].extend(records)
                for n, records in sorted(by_task.items()):
                    await self._step(n, records)
                now = time.time()
                self._listen(consumer, now)
                due: set[str] = set()
                while self.wakes and self.wakes[0][0] <= now:
                    due.add(heapq.heappop(self.wakes)[1])
                for pipeline in sorted(due):
                    n = self._task_of(pipeline)
                    if n in self.owned:
                        await self._step(n, [], tick=pipeline)

    def _listen(self, consumer: AIOKafkaConsumer, now: float) -> None:
        """Track since when each owned task has heard its workers without a gap: after a broker
        outage, silence counts only from the reconnect (the heartbeats sent meanwhile never
        arrived), so no run is failed as lost for an outage the coordinator could not hear
        through. A gap is a partition not fetched for `UNHEARD_MS`, or this loop itself held up
        that long (a step waiting on the broker hears nothing either)."""
        held_up = self._listened_at is not None and (now - self._listened_at) * 1000 > UNHEARD_MS
        self._listened_at = now
        for n in [n for n in self._heard_since if n not in self.owned]:
            del self._heard_since[n]  # taken over again later, it starts hearing afresh
        for n in self.owned:
            tp = TopicPartition(self.config.topic("eventflow.task-events"), n)
            polled = consumer.last_poll_timestamp(tp) if tp in consumer.assignment() else None
            unheard = polled is None or now * 1000 - polled > UNHEARD_MS
            if unheard or held_up:
                if self._heard_since.pop(n, None) is not None:
                    log.warning("%s: stream task %d could not hear its workers", self.instance, n)
                if not unheard:
                    self._heard_since[n] = now  # hearing again from now on
            elif n not in self._heard_since:
                self._heard_since[n] = now

    async def _step(self, n: int, records: list[Any], tick: str | None = None) -> None:
        """One transaction: consume `records` (or a tick), decide, emit, checkpoint."""
        producer = self.producers[n]
        now = time.time()
        began = time.perf_counter()
        decided: Counter[str] = Counter()
        forward: list[tuple[str, str, bytes, Any]] = []
        try:
            async with producer.transaction():
                out = Effects()
                letters: list[Event] = []
                pools: set[str] = set()
                if tick is not None and self._tick_failures[tick] < POISON_AFTER:
                    try:
                        out.merge(self.engine.tick(tick, now, self._heard_since.get(n, now)))
                    except Exception as e:
                        raise _Undecidable(None, e) from e
                for record in records:
                    self._decide(record, now, out, letters, pools, decided, forward)
                committing = time.perf_counter()
                last = await self._emit(producer, n, out, letters, pools, forward)
                offsets: dict[TopicPartition, int] = {}
                for record in records:
                    tp = TopicPartition(record.topic, record.partition)
                    offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
                if offsets:
                    await producer.send_offsets_to_transaction(offsets, self.group)
        except (KafkaError, OSError) as e:
            log.warning("%s: step of task %d failed (%s); restoring it", self.instance, n, e)
            await self._recover(n)
            return
        except _Undecidable as e:
            # The decision left state half-changed and the transaction is aborted: restore, and
            # after a few tries refuse the record (as Kafka Streams' exception handlers do).
            if e.record is None:
                assert tick is not None
                self._tick_failures[tick] += 1
                where = f"tick of {tick}"
            else:
                pos = (e.record.topic, e.record.partition, e.record.offset)
                tries = self._failures.get(pos, (0, ""))[0] + 1
                self._failures[pos] = (tries, one_line(e.error))
                where = f"record {pos[0]}:{pos[1]}@{pos[2]} (failure {tries} of {POISON_AFTER})"
            log.error(
                "%s: deciding %s failed; restoring task %d",
                self.instance,
                where,
                n,
                exc_info=e.error,
            )
            await self._recover(n)
            return
        if last is not None:  # the commit marker follows the step's last record
            self._states.ends[n] = last + 2
        metrics.DECIDE.observe(committing - began)
        metrics.COMMIT.observe(time.perf_counter() - committing)
        metrics.count(decided)
        metrics.DEAD_LETTERS.inc(len(letters))
        for at, pipeline in out.wakes:
            heapq.heappush(self.wakes, (at, pipeline))

    def _decide(
        self,
        record: Any,
        now: float,
        out: Effects,
        letters: list[Event],
        pools: set[str],
        decided: Counter[str],
        forward: list[tuple[str, str, bytes, Any]],
    ) -> None:
        """Apply one record, or dead-letter it with the reason; raise `_Undecidable` for an
        unexpected failure (a bug), unless this record has failed that way too often already."""
        topic = self.config.unprefixed(record.topic)
        value: bytes = record.value or b""
        at = (record.topic, record.partition, record.offset)
        try:
            failed = self._failures.pop(at, None)
            if failed is not None and failed[0] >= POISON_AFTER:
                raise EventError(f"deciding it failed {failed[0]} times: {failed[1]}")
            event = decode(value, max_metadata_bytes=self.settings.max_metadata_bytes)
            if not isinstance(event, ACCEPTS[topic]):
                raise EventError(f"{event.type} does not belong on {topic}")
            self.signer.check(topic, event, value, record.headers or ())
            target, key = destination(event)
            if target == topic and self._task_of(key) != record.partition:
                if isinstance(event, DatasetProduced):
                    self.engine.router.validate(event.data)  # refused here if it cannot be used
                if not is_external(event):
                    raise EventError(f"{event.type} on {topic} is not keyed by its {key!r}")
                # An outside producer keyed it otherwise: hand it to the task that owns its state.
                forward.append((topic, key, value, record.headers))
                return
            if failed is not None:
                self._failures[at] = failed
            try:
                if topic == "eventflow.pools":
                    self._pool(event, out, pools)
                else:
                    out.merge(self.engine.handle(event, now))
            except EventError:
                raise
            except Exception as e:
                raise _Undecidable(record, e) from e
            self._failures.pop(at, None)
            decided[event.type] += 1
        except EventError as e:
            letters.append(dead_letter(value, e.reason, origin=topic, source=self.settings.source))
        except _Undecidable:
            raise
        except Exception as e:  # decoding or checking failed in a way it never should
            reason = f"could not be decoded: {one_line(e)}"
            letters.append(dead_letter(value, reason, origin=topic, source=self.settings.source))

    def _pool(self, event: Event, out: Effects, pools: set[str]) -> None:
        gate = self.engine.gate
        if isinstance(event.data, TaskRequestedData) and event.data.pool in gate.slots:
            out.dispatch += gate.submit(event.data)
            pools.add(event.data.pool)
        elif isinstance(event.data, PoolReleasedData) and event.data.pool in gate.slots:
            out.dispatch += gate.release(event.data.run_id, event.data.pool)
            pools.add(event.data.pool)
        else:
            raise EventError(f"{event.type} names a pool this App does not declare")

    async def _emit(
        self,
        producer: AIOKafkaProducer,
        n: int,
        out: Effects,
        letters: list[Event],
        pools: set[str],
        forward: list[tuple[str, str, bytes, Any]],
    ) -> int | None:
        """Send a step's events (signed) and changelog records; the offset of its last
        changelog record."""
        topic = self.config.topic
        source = self.settings.source
        sends: list[tuple[str, str, bytes]] = []
        for event in out.events:
            target, key = destination(event)
            sends.append((target, key, encode(event)))
        for request in out.dispatch:
            event = TaskRequested.of(request, source=source, correlationid=request.pipeline_run_id)
            sends.append(("eventflow.task-requests", request.run_id, encode(event)))
        for request in out.pool_requests:
            event = TaskRequested.of(request, source=source, correlationid=request.pipeline_run_id)
            sends.append(("eventflow.pools", request.pool or "", encode(event)))
        for run_id, pool in out.pool_releases:
            released = PoolReleased.of(PoolReleasedData(run_id=run_id, pool=pool), source=source)
            sends.append(("eventflow.pools", pool, encode(released)))
        for letter in letters:
            sends.append(("eventflow.deadletter", "", encode(letter)))
        futures = []
        for target, key, value in sends:
            futures.append(
                await producer.send(
                    topic(target),
                    value,
                    key=key.encode() if key else None,
                    headers=self.signer.headers(target, value),
                )
            )
        for target, key, value, headers in forward:
            futures.append(
                await producer.send(
                    topic(target), value, key=key.encode(), headers=list(headers or ())
                )
            )
        records: list[tuple[bytes, bytes]] = []
        for pipeline, key in out.dirty_partitions:
            part = self.engine.pipelines[pipeline].partitions.get(key)
            if part is not None:
                records.append((changelog.partition_key(pipeline, key), dump(part)))
        for pipeline in {p for p, _ in out.dirty_partitions}:
            pst = self.engine.pipelines[pipeline]
            header = orjson.dumps({"active": pst.active, "waiting": pst.waiting})
            records.append((changelog.header_key(pipeline), header))
        for dataset, key in out.dirty_datasets:
            records.append(
                (changelog.dataset_key(dataset, key), dump(self.engine.datasets[(dataset, key)]))
            )
        for pool in pools:
            records.append((changelog.pool_key(pool), self.engine.gate.dump(pool)))
        state = topic("eventflow.state")
        changes = [await producer.send(state, value, key=k, partition=n) for k, value in records]
        await asyncio.gather(*futures)
        written = await asyncio.gather(*changes)
        return max((meta.offset for meta in written), default=None)

    async def _recover(self, n: int) -> None:
        """After an aborted step, whose changes may be in the state: take task n over again
        (state back from the changelog, input back to the committed offsets), in the background
        as on assignment."""
        assert self._consumer is not None
        self.owned.discard(n)
        self._states.ends.pop(n, None)  # never reuse this state
        await self._close_producers({n})
        self._consumer.pause(*[tp for tp in self._inputs(n) if tp in self._consumer.assignment()])
        if n not in self._restoring:
            self._start_take_over(n)
        self._count_tasks()

    async def _rewind(self, tps: list[TopicPartition]) -> None:
        """Back to the committed offsets; to the start where nothing was committed yet
        (`seek_to_committed` leaves those where they are, which would skip an aborted step)."""
        consumer = self._consumer
        assert consumer is not None
        for tp in tps:
            committed = await consumer.committed(tp)
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
