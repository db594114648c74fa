"""The coordinator service: router, coordinator and pool gate on Kafka, exactly once.

Work is split into stream tasks, one per partition number N of the co-partitioned topics
(`datasets`, `pipeline-inputs`, `task-events`, `pools`, and the `state` changelog). One consumer
group with the range assignor gives each instance whole tasks. For each batch of task N, one Kafka
transaction holds the input offsets, every event the decisions emit and the changelog records of
the state they changed; its producer's transactional id is `eventflow.coordinator.N`, so a new
owner of N fences the old one before reading N's state back from the changelog. A crash anywhere
leaves either the whole step or none of it.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from ..core.state import bulk_load, dump, load_dataset, load_partition
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
from .config import KafkaConfig, partition_for
from .signing import Signer

log = logging.getLogger("eventflow.coordinator")

INPUTS = ("eventflow.datasets", "eventflow.pipeline-inputs", "eventflow.task-events", "eventflow.pools")
ACCEPTS: dict[str, tuple[type[Event], ...]] = {
    topic: tuple(BY_TYPE[kind] for kind in SPECS[topic].events) for topic in INPUTS
}
SEP = "\x00"
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
        self.tasks = self.config.partitions("eventflow.pipeline-inputs")
        self.owned: set[int] = set()
        self.producers: dict[int, AIOKafkaProducer] = {}
        self.wakes: list[tuple[float, str]] = []
        self.ready = asyncio.Event()
        self.failed = asyncio.Event()
        self._lock = asyncio.Lock()
        self._restoring: dict[int, asyncio.Task[None]] = {}
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
            self._clock = AIOKafkaProducer(enable_idempotence=True, acks="all",
                                           **self.config.client())  # fmt: skip
            await self._clock.start()
            for schedule in self.app.schedules.values():
                task = asyncio.create_task(run_schedule(schedule, self._tick_clock), name="clock")
                self._clocks.append(task)

    async def _tick_clock(
        self, dataset: str, partition: str, version: int, metadata: dict[str, object]
    ) -> None:
        """Every instance ticks; the router keeps one of the identical versions."""
        assert self._clock is not None
        data = DatasetProducedData(dataset=dataset, partition=partition, version=version,
                                   metadata=metadata)  # fmt: skip
        event = DatasetProduced.of(data, source=self.settings.source)
        value = encode(event)
        try:
            await self._clock.send_and_wait(
                self.config.topic("eventflow.datasets"), value, key=dataset.encode(),
                headers=self.signer.headers("eventflow.datasets", value),
            )  # fmt: skip
        except KafkaError as e:
            log.warning("%s: clock tick of %s lost: %s", self.instance, dataset, e)

    async def stop(self) -> None:
        """Finish the batch in hand, leave the group, close the producers."""
        if self._consumer is None:
            return
        consumer, self._consumer = self._consumer, None
        for task in [*self._restoring.values(), *self._clocks]:
            task.cancel()
        await asyncio.gather(*self._restoring.values(), *self._clocks, return_exceptions=True)
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
            log.critical("%s: processing stopped", self.instance, exc_info=task.exception())
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
        return sum(max(0, int(ends[tp]) - pos) for tp, pos in zip(tps, positions))

    # -- rebalancing -----------------------------------------------------------------------------
    async def _revoke(self, numbers: set[int]) -> None:
        for n in numbers & set(self._restoring):
            self._restoring.pop(n).cancel()
        async with self._lock:
            gone = numbers & self.owned
            await self._close_producers(gone)
            for n in gone:
                self._forget(n)
            self.owned -= gone
            if gone:
                log.info("%s: gave up stream tasks %s", self.instance, sorted(gone))

    async def _assign(self, numbers: set[int]) -> None:
        """Pause new tasks and restore them in the background: the group's heartbeats only
        resume once this returns, so a slow restore here would get the member expelled."""
        assert self._consumer is not None
        for n in sorted(numbers - self.owned - set(self._restoring)):
            self._consumer.pause(*self._inputs(n))
            self._restoring[n] = asyncio.create_task(self._take_over(n), name=f"restore task {n}")

    def _producer(self, n: int) -> AIOKafkaProducer:
        """Task n's transactional producer; starting one fences every earlier one of task n."""
        return AIOKafkaProducer(
            transactional_id=self.config.name(f"eventflow.coordinator.{n}"),
            enable_idempotence=True,
            acks="all",
            client_id=f"eventflow-coordinator-{self.instance}-{n}",
            **self.config.client(),
        )

    async def _renew_producer(self, n: int) -> None:
        """After a failed step the producer may be in a state it cannot leave (a broker outage
        leaves `OutOfOrderSequenceNumber`, which is fatal): replace it, as a new owner would."""
        old = self.producers.pop(n, None)
        if old is not None:
            with contextlib.suppress(Exception):
                await old.stop()
        producer = self._producer(n)
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self.producers[n] = producer

    async def _take_over(self, n: int) -> None:
        producer = self._producer(n)
        try:
            await producer.start()  # fences any previous owner of task n
            async with self._lock:
                await self._restore(n)
                consumer = self._consumer
                if consumer is None:
                    raise asyncio.CancelledError
                tps = [tp for tp in self._inputs(n) if tp in consumer.assignment()]
                if tps:
                    await self._rewind(tps)
                    consumer.resume(*tps)
                self.producers[n] = producer
                self.owned.add(n)
        except BaseException:
            await producer.stop()
            raise
        finally:
            if self._restoring.get(n) is asyncio.current_task():
                del self._restoring[n]
        log.info("%s: took over stream task %d", self.instance, n)
        if not self._restoring:
            self.ready.set()

    def _inputs(self, n: int) -> list[TopicPartition]:
        return [TopicPartition(self.config.topic(t), n) for t in INPUTS]

    async def _close_producers(self, numbers: set[int]) -> None:
        for n in numbers:
            producer = self.producers.pop(n, None)
            if producer is not None:
                await producer.stop()

    def _forget(self, n: int) -> None:
        for name, pst in self.engine.pipelines.items():
            if self._task_of(name) == n:
                pst.partitions.clear()
                pst.active.clear()
                pst.waiting.clear()
        for key in [k for k in self.engine.datasets if self._task_of(k[0]) == n]:
            del self.engine.datasets[key]
        for pool in self.app.pools:
            if self._task_of(pool) == n:
                self.engine.gate.forget(pool)
        self.wakes = [(at, p) for at, p in self.wakes if self._task_of(p) != n]
        heapq.heapify(self.wakes)

    async def _restore(self, n: int) -> None:
        """Read task n's changelog partition to its end (committed records only)."""
        self._forget(n)
        tp = TopicPartition(self.config.topic("eventflow.state"), n)
        reader = AIOKafkaConsumer(
            enable_auto_commit=False, isolation_level="read_committed", **self.config.client()
        )
        await reader.start()
        records = 0
        try:
            reader.assign([tp])
            await reader.seek_to_beginning(tp)
            end = (await reader.end_offsets([tp]))[tp]
            with bulk_load():
                while await reader.position(tp) < end:
                    for batch in (await reader.getmany(tp, timeout_ms=1000)).values():
                        for record in batch:
                            if record.key is not None and record.value is not None:
                                self._load(record.key.decode(), record.value)
                                records += 1
        finally:
            await reader.stop()
        for name, pst in self.engine.pipelines.items():
            if self._task_of(name) == n:
                wake = self.engine.coordinator.next_wake(pst)
                if wake is not None:
                    heapq.heappush(self.wakes, (wake, name))
        log.info("%s: restored stream task %d from %d changelog records", self.instance, n, records)

    def _load(self, key: str, value: bytes) -> None:
        kind, _, rest = key.partition(SEP)
        if kind == "p":
            pipeline, _, partition = rest.partition(SEP)
            if pipeline in self.engine.pipelines:
                self.engine.pipelines[pipeline].partitions[partition] = load_partition(value)
        elif kind == "h":
            if rest in self.engine.pipelines:
                header = orjson.loads(value)
                pst = self.engine.pipelines[rest]
                pst.active, pst.waiting = header["active"], header["waiting"]
        elif kind == "d":
            dataset, _, partition = rest.partition(SEP)
            self.engine.datasets[(dataset, partition)] = load_dataset(value)
        elif kind == "g":
            self.engine.gate.load(rest, value)

    def _task_of(self, key: str) -> int:
        return partition_for(key, self.tasks)

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
        through."""
        for n in self.owned:
            tp = TopicPartition(self.config.topic("eventflow.task-events"), n)
            polled = consumer.last_poll_timestamp(tp) if tp in consumer.assignment() else None
            if polled is None or now * 1000 - polled > UNHEARD_MS:
                if self._heard_since.pop(n, None) is not None:
                    log.warning("%s: stream task %d cannot hear its workers", self.instance, n)
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
                await self._emit(producer, n, out, letters, pools, forward)
                offsets: dict[TopicPartition, int] = {}
                for record in records:
                    tp = TopicPartition(record.topic, record.partition)
                    offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
                if offsets:
                    await producer.send_offsets_to_transaction(offsets, self.group)
        except (KafkaError, OSError) as e:
            log.warning("%s: step of task %d failed (%s); restoring it", self.instance, n, e)
            await self._recover(n, renew=True)
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
            log.error("%s: deciding %s failed; restoring task %d", self.instance, where, n,
                      exc_info=e.error)  # fmt: skip
            await self._recover(n)
            return
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
    ) -> None:
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
            futures.append(await producer.send(
                topic(target), value, key=key.encode() if key else None,
                headers=self.signer.headers(target, value),
            ))  # fmt: skip
        for target, key, value, headers in forward:
            futures.append(await producer.send(topic(target), value, key=key.encode(),
                                               headers=list(headers or ())))  # fmt: skip
        state = topic("eventflow.state")
        for pipeline, key in out.dirty_partitions:
            part = self.engine.pipelines[pipeline].partitions.get(key)
            if part is not None:
                futures.append(await producer.send(
                    state, dump(part), key=f"p{SEP}{pipeline}{SEP}{key}".encode(), partition=n
                ))  # fmt: skip
        for pipeline in {p for p, _ in out.dirty_partitions}:
            pst = self.engine.pipelines[pipeline]
            header = orjson.dumps({"active": pst.active, "waiting": pst.waiting})
            futures.append(await producer.send(state, header, key=f"h{SEP}{pipeline}".encode(),
                                               partition=n))  # fmt: skip
        for dataset, key in out.dirty_datasets:
            futures.append(await producer.send(
                state, dump(self.engine.datasets[(dataset, key)]),
                key=f"d{SEP}{dataset}{SEP}{key}".encode(), partition=n,
            ))  # fmt: skip
        for pool in pools:
            futures.append(await producer.send(state, self.engine.gate.dump(pool),
                                               key=f"g{SEP}{pool}".encode(), partition=n))  # fmt: skip
        await asyncio.gather(*futures)

    async def _recover(self, n: int, *, renew: bool = False) -> None:
        """After an aborted step: state back from the changelog, input back to committed, and
        with `renew` a new producer. While the broker is unreachable this waits and tries again:
        an outage costs time, not state."""
        assert self._consumer is not None
        delay = 0.5
        while True:
            try:
                if renew:
                    await self._renew_producer(n)
                    renew = False
                await self._restore(n)
                await self._rewind([tp for tp in self._inputs(n) if tp in self._consumer.assignment()])
                return
            except (KafkaError, OSError) as e:
                log.warning("%s: restoring task %d failed (%s); retrying in %.1fs", self.instance,
                            n, e, delay)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(10.0, delay * 2)

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
