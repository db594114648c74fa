"""The worker service: a consumer-group member that runs task and check requests.

Requests run concurrently up to `concurrency`; when that many are running the worker pauses its
partitions but keeps polling, so long tasks neither stall the group nor trigger rebalances.
Results are published in Kafka transactions together with the request offsets and a done-marker
per run id (`eventflow.task-done`, compacted). Offsets are committed only up to the oldest request
still running, so a worker that dies mid-task has its request redelivered to another; a request
whose run id has a done-marker is acknowledged without running again.

The results of requests from partition P go out on the producer whose transactional id is
`eventflow.worker.P`, started when P is assigned: that fences P's previous owner and aborts its
open transaction at once, so a worker killed mid-transaction holds back read_committed readers
only until its partitions are reassigned, not until the broker's transaction timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError, OutOfOrderSequenceNumber, ProducerFenced, UnknownProducerId

from .. import metrics
from ..definitions import App
from ..errors import BrokerError, EventError
from ..events import (
    CheckRequestedData,
    Event,
    PoolReleased,
    PoolReleasedData,
    TaskRequestedData,
    dead_letter,
    decode,
    encode,
)
from ..execution import Executor
from ..lifecycle import Service, instance_id
from ..settings import Settings
from ..topics import destination
from ..tracing import Trace, Tracer
from .config import (
    KafkaConfig,
    broker_errors,
    owns_nothing_for_sure,
    partition_for,
    quiet_fences,
    retrying,
)
from .signing import Signer

log = logging.getLogger("eventflow.worker")

#: Where coordinators say which attempts to stop.
STOPS = "eventflow.task-stops"
#: Stopped run ids remembered for requests that have not come yet.
STOPS_KEPT = 10_000
#: Seconds a revoked partition's running requests get to finish before they are cancelled.
REVOKE_GRACE_S = 5.0
#: New producers tried in a row for one batch of results before the worker fails.
RENEWALS = 3
#: Seconds a result transaction may go unanswered before its partition is taken over again.
UNANSWERED_S = 120.0


def fatal_error(producer: AIOKafkaProducer) -> BaseException | None:
    """The error that ended `producer`'s sender (a fence, say), or None. aiokafka keeps it on
    the transaction manager and raises it only to a call already waiting: later ones fail on
    the state it left (`IllegalOperation`, a broken assertion)."""
    manager = getattr(producer, "_txn_manager", None)
    if manager is None or not manager.is_fatal_error():
        return None
    ended = manager.wait_for_transaction_end()
    return ended.exception() if ended.done() else None


async def settled_assignment(
    admin: AIOKafkaAdminClient, group: str, client_id: str
) -> list[TopicPartition] | None:
    """What `group` assigns to its member `client_id`, if the group is settled (not
    rebalancing) and has that member; else None."""
    [response] = await admin.describe_consumer_groups([group])
    for _error, _group, state, _protocol_type, _protocol, members, *_ in response.groups:
        if state != "Stable":
            return None
        for _member, member_client, _host, _metadata, assignment in members:
            if member_client == client_id:
                partitions: list[TopicPartition]
                partitions = ConsumerProtocolMemberAssignment.decode(assignment).partitions()
                return partitions
    return None


class _Unanswered(Exception):
    """A result transaction whose outcome is unknown: it neither committed nor failed in time,
    or it failed in a way that does not say whether it committed."""


@dataclass
class _Partition:
    """Offsets of one task-requests partition: received, still running, and done run ids."""

    running: set[int] = field(default_factory=set)
    next_offset: int = 0
    done: dict[str, int] = field(default_factory=dict)

    def commit_position(self) -> int:
        return min(self.running) if self.running else self.next_offset


@dataclass
class _Finished:
    tp: TopicPartition
    offset: int
    run_id: str | None
    events: list[Event]


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: KafkaWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.worker._revoke(list(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.worker._assign(list(assigned))


class KafkaWorker(Service):
    """One worker; run as many as wanted, they split the task-requests partitions."""

    def __init__(
        self,
        app: App,
        settings: Settings,
        *,
        concurrency: int | None = None,
        instance: str | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        """`tracer` records a `task` span per attempt (`eventflow.tracing`)."""
        super().__init__()
        self.app = app
        self.settings = settings
        self.config = KafkaConfig(settings)
        self.instance = instance or instance_id()
        self.name = f"worker {self.instance}"
        self.concurrency = concurrency or settings.concurrency
        self.group = self.config.name("eventflow.workers")
        self.signer = Signer.of(settings, required_by="eventflow worker")
        self.request_partitions = self.config.partitions("eventflow.task-requests")
        self.executor = Executor.of(
            app, settings, worker=self.instance, heartbeats=True, tracer=tracer
        )
        self.partitions: dict[TopicPartition, _Partition] = {}
        self.running: dict[tuple[TopicPartition, int], asyncio.Task[None]] = {}
        self._capacity = asyncio.Event()
        #: Assignments received, one per consumer-group generation joined.
        self.assignments = 0
        # Finished requests not yet published; taken only under `_commit_lock`, so that a
        # revocation's flush sees every result of its partitions.
        self._finished: list[_Finished] = []
        self._has_finished = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._progress: AIOKafkaProducer | None = None
        # The transactional producer of each assigned partition (see `_load`).
        self._results: dict[TopicPartition, AIOKafkaProducer] = {}
        self._commit_lock = asyncio.Lock()
        self.unanswered_s = UNANSWERED_S
        #: Partitions taken over again in a row because a transaction's outcome was unknown.
        self._retakes: dict[TopicPartition, int] = {}
        # Result transactions given up on unanswered; cancelled again on stop.
        self._abandoned: set[asyncio.Task[None]] = set()
        self._loading: dict[TopicPartition, asyncio.Task[None]] = {}
        #: Partitions whose revocation is under way: never taken over again meanwhile.
        self._revoking: set[TopicPartition] = set()
        #: Run id -> the body running it here, for stops to find.
        self._bodies: dict[str, asyncio.Task[None]] = {}
        #: Run ids whose body a coordinator stopped: finished without a result.
        self._stopped: set[str] = set()
        #: Run ids stopped before their request ran here (the last `STOPS_KEPT`, oldest first).
        self._stop_before: dict[str, None] = {}
        self._stops: AIOKafkaConsumer | None = None
        # Unique, also for two workers of one host and pid (containers): the group is asked
        # which member owns a partition by it.
        self._client_id = f"eventflow-worker-{self.instance}-{secrets.token_hex(4)}"

    # -- lifecycle -------------------------------------------------------------------------------
    async def _open(self) -> None:
        """Join the group; `ready` is set once the partitions assigned are taken over."""
        quiet_fences(asyncio.get_running_loop())
        client = self.config.client()
        self._progress = AIOKafkaProducer(
            enable_idempotence=True, acks="all", linger_ms=0, **client
        )
        self._consumer = AIOKafkaConsumer(
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=self.settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(100, self.settings.kafka_session_timeout_ms // 4),
            max_poll_interval_ms=300_000,
            client_id=self._client_id,
            **client,
        )
        self._stops = AIOKafkaConsumer(
            enable_auto_commit=False, isolation_level="read_committed", **client
        )
        with broker_errors(f"cannot reach Kafka at {self.config.bootstrap}"):
            await self._progress.start()
            await self._consumer.start()
            await self._stops.start()
            stops = self.config.topic(STOPS)
            tps = [TopicPartition(stops, n) for n in range(self.config.partitions(STOPS))]
            self._stops.assign(tps)
            await self._stops.seek_to_end(*tps)
            for tp in tps:
                await self._stops.position(tp)  # resolved now: no stop from here on is missed
        self._consumer.subscribe(
            [self.config.topic("eventflow.task-requests")], listener=_Rebalance(self)
        )
        self.spawn(self._fetch(), "eventflow worker fetch")
        self.spawn(self._commit(), "eventflow worker commit")
        self.spawn(self._follow_stops(self._stops), "eventflow worker stops")

    async def _close(self) -> None:
        """Stop taking requests; running ones are cancelled and will be redelivered."""
        consumer, self._consumer = self._consumer, None
        stops, self._stops = self._stops, None
        await self._stop_loops()  # fetching, committing, stops, partitions being taken over
        await self.cancel(*self.running.values())
        await self._end_abandoned()
        for reader in (consumer, stops):
            if reader is not None:
                await reader.stop()
        for producer in [*self._results.values(), self._progress]:
            if producer is not None:
                await producer.stop()
        self._results.clear()
        self._progress = None

    def owns(self) -> list[int]:
        """The task-requests partitions this worker consumes."""
        return sorted(tp.partition for tp in self.partitions)

    async def lag(self) -> int:
        """Requests not yet finished by this worker (-1 while partitions are loading)."""
        consumer = self._consumer
        if consumer is None or self._loading:
            return -1
        tps = [tp for tp in consumer.assignment() if tp in self.partitions]
        if not tps:
            return 0
        with broker_errors("reading the consumer lag"):
            ends = await consumer.end_offsets(tps)
            positions: list[int] = [await consumer.position(tp) for tp in tps]
        unread = sum(max(0, int(ends[tp]) - pos) for tp, pos in zip(tps, positions, strict=False))
        # Partitions given up while the offsets were read are no longer ours to count.
        unfinished = sum(len(p.running) for tp in tps if (p := self.partitions.get(tp)) is not None)
        # Finished requests stay running until their results are committed: counted once.
        return unread + unfinished

    # -- rebalancing -----------------------------------------------------------------------------
    async def _assign(self, assigned: list[TopicPartition]) -> None:
        """Pause new partitions until they are taken over, in the background: the group's
        heartbeats only resume once this listener returns."""
        assert self._consumer is not None
        self.assignments += 1
        metrics.ASSIGNMENTS.inc()
        new = [tp for tp in assigned if tp not in self.partitions and tp not in self._loading]
        if new:
            self._consumer.pause(*new)
            task = self.spawn(self._load(new), "take over partitions")
            for tp in new:
                self._loading[tp] = task
        elif not self._loading and owns_nothing_for_sure(self._consumer):
            self.ready.set()  # nothing to take over: more members than partitions

    async def _load(self, new: list[TopicPartition]) -> None:
        """Take `new` over, retrying while the broker is away; any other error fails the
        service."""
        try:
            what = f"{self.instance}: taking over partitions {sorted(tp.partition for tp in new)}"
            await retrying(what, lambda: self._take_over(new))
        finally:
            for tp in new:
                if self._loading.get(tp) is asyncio.current_task():
                    del self._loading[tp]
        if not self._loading:
            self.ready.set()

    async def _take_over(self, new: list[TopicPartition]) -> None:
        """Fence each partition's previous owner, load its committed offset and done-markers,
        then resume it."""
        consumer = self._consumer
        assert consumer is not None
        producers = {tp: self._producer(tp.partition) for tp in new}
        try:
            # Starting a producer fences the previous owner of its partition and aborts that
            # owner's open transaction, so the offsets and done-markers read next are final.
            started = await asyncio.gather(
                *(p.start() for p in producers.values()), return_exceptions=True
            )
            for result in started:
                if isinstance(result, BaseException):
                    raise result
            committed = await asyncio.gather(*(consumer.committed(tp) for tp in new))
            starts = {tp: at or 0 for tp, at in zip(new, committed, strict=True)}
            done = await self._done_markers({tp.partition: starts[tp] for tp in new})
        except BaseException:
            for producer in producers.values():
                await producer.stop()
            raise
        for tp in new:
            done_here = done.get(tp.partition, {})
            self.partitions[tp] = _Partition(next_offset=starts[tp], done=done_here)
            self._results[tp] = producers[tp]
            consumer.seek(tp, starts[tp])
        consumer.resume(*[tp for tp in new if tp in consumer.assignment()])
        log.info("%s: took over partitions %s", self.instance, sorted(tp.partition for tp in new))

    def _producer(self, partition: int) -> AIOKafkaProducer:
        # The transaction timeout only matters if no worker takes the partition over (a
        # successor fences at once); results commit in milliseconds, so it can be short.
        return self.config.transactional(
            f"eventflow.worker.{partition}",
            f"eventflow-worker-{self.instance}-{partition}",
            transaction_timeout_ms=max(10_000, self.settings.kafka_session_timeout_ms),
        )

    async def _revoke(self, revoked: list[TopicPartition]) -> None:
        log.info(
            "%s: giving up partitions %s", self.instance, sorted(tp.partition for tp in revoked)
        )
        self._revoking.update(revoked)  # no take-over again of these from here on
        try:
            await self._cancel_loading(revoked)
            await self._flush_revoked(revoked)
        finally:
            await self._cancel_loading(revoked)  # one begun while this waited for the lock
            self._revoking.difference_update(revoked)

    async def _cancel_loading(self, tps: list[TopicPartition]) -> None:
        loading = {task for tp in tps if (task := self._loading.pop(tp, None)) is not None}
        for task in loading:
            task.cancel()
        await asyncio.gather(*loading, return_exceptions=True)

    async def _flush_revoked(self, revoked: list[TopicPartition]) -> None:
        mine = [key for key in self.running if key[0] in revoked]
        if mine:
            waiting = [self.running[key] for key in mine]
            _, pending = await asyncio.wait(waiting, timeout=REVOKE_GRACE_S)
            for body in pending:
                body.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        async with self._commit_lock:
            try:
                for tp, why in (await self._publish(self._take_finished())).items():
                    if tp not in revoked:
                        await self._reload(tp, why)
            except Exception as e:
                # The group's listener would swallow it: results not published fail the worker
                # (a new owner runs their requests again), as in the commit loop.
                self.fail(e, "publishing results before giving partitions up")
            finally:
                for tp in revoked:
                    await self._give_up(tp)

    async def _give_up(self, tp: TopicPartition) -> None:
        self.partitions.pop(tp, None)
        producer = self._results.pop(tp, None)
        if producer is not None:
            # Bounded: a producer whose transaction went unanswered may never flush.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), REVOKE_GRACE_S)

    async def _reload(self, tp: TopicPartition, why: str) -> None:
        """Under `_commit_lock`: whether a result transaction of `tp` commits is unknown
        (`why`). Take `tp` over again as a new owner would: its requests running here are
        cancelled, its unpublished results dropped, and the new producer fences the old one
        (the broker finishes or aborts that transaction first), so the committed offset and
        done-markers read next say exactly which requests still run."""
        log.warning(
            "%s: a result transaction of partition %d %s; taking the partition over again",
            self.instance,
            tp.partition,
            why,
        )
        bodies = [body for (p, _), body in self.running.items() if p == tp]
        await self.cancel(*bodies)
        self._finished = [item for item in self._finished if item.tp != tp]
        await self._give_up(tp)
        if self._consumer is not None and self._orphaned(tp):
            self._consumer.pause(tp)
            self._loading[tp] = self.spawn(self._load([tp]), "take over a partition again")

    async def _done_markers(self, committed: dict[int, int]) -> dict[int, dict[str, int]]:
        """Per partition, run ids finished at or after its committed offset: never run again."""
        tps = [TopicPartition(self.config.topic("eventflow.task-done"), p) for p in committed]
        reader = AIOKafkaConsumer(
            enable_auto_commit=False, isolation_level="read_committed", **self.config.client()
        )
        await reader.start()
        done: dict[int, dict[str, int]] = {p: {} for p in committed}
        try:
            reader.assign(tps)
            await reader.seek_to_beginning(*tps)
            ends = await reader.end_offsets(tps)
            remaining = [tp for tp in tps if ends[tp] > 0]
            while remaining:
                for tp, batch in (await reader.getmany(*remaining, timeout_ms=1000)).items():
                    for record in batch:
                        if record.key is not None and record.value is not None:
                            offset = int(record.value)
                            if offset >= committed[tp.partition]:
                                done[tp.partition][record.key.decode()] = offset
                remaining = [tp for tp in remaining if await reader.position(tp) < ends[tp]]
        finally:
            await reader.stop()
        return done

    # -- consuming and running -------------------------------------------------------------------
    async def _fetch(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while True:
            free = self.concurrency - len(self.running)
            assignment = consumer.assignment()
            if free <= 0:
                # Full: wait for a run to end, not for a fetch timeout (that cost up to 500 ms
                # per `concurrency` runs); an empty poll each second keeps the group membership.
                consumer.pause(*assignment)
                await consumer.getmany(timeout_ms=0)
                self._capacity.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._capacity.wait(), 1.0)
                continue
            consumer.resume(*assignment)
            batches = await consumer.getmany(timeout_ms=500, max_records=free)
            for tp, records in batches.items():
                state = self.partitions.get(tp)
                if state is None:
                    continue
                for record in records:
                    if record.offset < state.next_offset:
                        continue  # already seen before a seek
                    state.next_offset = record.offset + 1
                    self._take(tp, state, record)

    def _take(self, tp: TopicPartition, state: _Partition, record: Any) -> None:
        try:
            event = decode(record.value or b"", max_metadata_bytes=self.settings.max_metadata_bytes)
            request = event.data
            if not isinstance(request, TaskRequestedData | CheckRequestedData):
                raise EventError(f"{event.type} does not belong on eventflow.task-requests")
            self.signer.check(
                "eventflow.task-requests", event, record.value or b"", record.headers or ()
            )
            if partition_for(request.run_id, self.request_partitions) != tp.partition:
                # Done-markers live with the run id's partition: elsewhere it could run twice.
                raise EventError(f"request {request.run_id} is not keyed by its run id")
        except EventError as e:
            letter = dead_letter(
                record.value or b"",
                e.reason,
                origin="eventflow.task-requests",
                source=self.settings.source,
            )
            self._finish(_Finished(tp, record.offset, None, [letter]))
            state.running.add(record.offset)
            return
        state.running.add(record.offset)
        if request.run_id in self._stop_before:
            log.info("%s: %s was stopped before it ran", self.instance, request.run_id)
            self._finish(_Finished(tp, record.offset, request.run_id, []))
            return
        if request.run_id in state.done:
            log.info("%s: %s already ran; acknowledging", self.instance, request.run_id)
            self._finish(_Finished(tp, record.offset, None, self._ran_again(request)))
            return
        key = (tp, record.offset)
        body = self.running[key] = asyncio.create_task(
            self._run(tp, record.offset, request, Trace.of(event)), name=f"run {request.run_id}"
        )
        self._bodies[request.run_id] = body

    def _ran_again(self, request: TaskRequestedData | CheckRequestedData) -> list[Event]:
        """A pooled request that already ran, delivered again, frees the slot the pool stage
        gave it: no result follows to free it (a signed request can name a run that ran)."""
        if not isinstance(request, TaskRequestedData) or request.pool is None:
            return []
        released = PoolReleasedData(run_id=request.run_id, pool=request.pool)
        return [PoolReleased.of(released, source=self.settings.source)]

    async def _run(
        self, tp: TopicPartition, offset: int, request: Any, trace: Trace | None
    ) -> None:
        try:
            # The last log chunks go in the result's transaction, before the result.
            events = await self.executor.run(request, self._report, trace)
            self._finish(_Finished(tp, offset, request.run_id, events))
        except asyncio.CancelledError:
            if request.run_id not in self._stopped:
                raise  # stopping or revoked: the request is redelivered
            # A coordinator ended this attempt (its run was cancelled): done, with no result.
            log.info("%s: %s stopped by its coordinator", self.instance, request.run_id)
            self._finish(_Finished(tp, offset, request.run_id, []))
        except Exception as e:
            # The executor turns whatever a body does into a result; raising is its own bug.
            # Left alone, the offset would hold the partition's commit position for good.
            self.fail(e, f"run {request.run_id}")
        finally:
            self.running.pop((tp, offset), None)
            if self._bodies.get(request.run_id) is asyncio.current_task():
                del self._bodies[request.run_id]
            self._stopped.discard(request.run_id)
            self._capacity.set()

    async def _follow_stops(self, reader: AIOKafkaConsumer) -> None:
        """Stop the bodies of attempts a coordinator ended while they ran here."""
        while True:
            with broker_errors(f"reading {STOPS}"):
                fetched = await reader.getmany(timeout_ms=1000)
            for records in fetched.values():
                for record in records:
                    self._stop(record)

    def _stop(self, record: Any) -> None:
        value = record.value or b""
        try:
            event = decode(value, max_metadata_bytes=self.settings.max_metadata_bytes)
            self.signer.check(STOPS, event, value, record.headers or ())
        except EventError as e:
            log.warning("%s: skipping a record of %s: %s", self.instance, STOPS, e.reason)
            return
        run_id = getattr(event.data, "run_id", None)
        if not isinstance(run_id, str):
            return
        body = self._bodies.get(run_id)
        if body is not None and not body.done():
            self._stopped.add(run_id)
            body.cancel()
        else:  # not here yet, or never here: if its request comes, it is not run
            self._stop_before.pop(run_id, None)
            self._stop_before[run_id] = None
            while len(self._stop_before) > STOPS_KEPT:
                del self._stop_before[next(iter(self._stop_before))]

    async def _report(self, event: Event) -> None:
        """Started and heartbeat events and log chunks of running tasks: not transactional,
        they only say a run is alive and what it logged so far."""
        if self._progress is None:
            return
        target, key = destination(event)
        value = encode(event)
        try:
            with broker_errors(f"reporting {event.type}"):
                await self._progress.send(
                    self.config.topic(target),
                    value,
                    key=key.encode(),
                    headers=self.signer.headers(target, value),
                )
        except BrokerError as e:
            log.warning("%s: %s", self.instance, e)

    # -- publishing results ----------------------------------------------------------------------
    def _finish(self, item: _Finished) -> None:
        self._finished.append(item)
        self._has_finished.set()

    def _take_finished(self) -> list[_Finished]:
        batch, self._finished = self._finished, []
        self._has_finished.clear()
        return batch

    async def _commit(self) -> None:
        while True:
            await self._has_finished.wait()
            async with self._commit_lock:
                for tp, why in (await self._publish(self._take_finished())).items():
                    await self._reload(tp, why)

    async def _publish(self, batch: list[_Finished]) -> dict[TopicPartition, str]:
        """Under `_commit_lock`: the finished requests of each partition in one transaction of
        that partition's producer (the request offsets go with it). Returns the partitions whose
        transaction's outcome is unknown, with why."""
        by_partition: dict[TopicPartition, list[_Finished]] = {}
        for item in batch:
            by_partition.setdefault(item.tp, []).append(item)
        outcomes = await asyncio.gather(
            *(self._publish_partition(tp, items) for tp, items in by_partition.items()),
            return_exceptions=True,
        )
        unanswered = {}
        for tp, outcome in zip(by_partition, outcomes, strict=True):
            if isinstance(outcome, _Unanswered):
                unanswered[tp] = str(outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
        return unanswered

    async def _publish_partition(self, tp: TopicPartition, items: list[_Finished]) -> None:
        """Results, done-markers and the offset of one partition's finished requests, retried
        while the broker is away. A producer left unusable by an error of its own state (out
        of order sequence numbers after a broker restart: its transaction did not commit) is
        replaced, up to `RENEWALS` times in a row; any other broker error fails the worker (a
        new owner of the partition runs the requests again)."""
        renewals = 0
        stale = False
        while True:
            producer = self._results.get(tp)
            if producer is None:
                log.warning(
                    "%s: partition %d was given up; %d results dropped, its new owner "
                    "runs their requests",
                    self.instance,
                    tp.partition,
                    len(items),
                )
                return
            try:
                with broker_errors(f"publishing results of partition {tp.partition}"):
                    if stale:
                        producer = await self._renew(tp, producer)
                        stale = False
                    await self._answered(self._transact(producer, tp, items))
                self._settle(items)
                self._retakes.pop(tp, None)
                return
            except BrokerError as e:
                if isinstance(e.__cause__, ProducerFenced):
                    # Another worker took the partition over (this one missed a rebalance): it
                    # redelivers these requests, and the coming rebalance revokes them here.
                    # Or the broker timed the transaction out: see `_unless_taken`.
                    log.warning(
                        "%s: fenced on partition %d; leaving it to a new owner, if one took it",
                        self.instance,
                        tp.partition,
                    )
                    await self._give_up(tp)
                    self.spawn(self._unless_taken(tp), f"fenced on partition {tp.partition}")
                    return
                if not e.retriable:
                    # aiokafka's sender died (a connection lost mid-request as the broker
                    # restarts): whether the transaction committed is unknown, so the partition
                    # is taken over again, as when it goes unanswered.
                    died = type(e.__cause__) is KafkaError
                    if died and self._holds(tp) and self._retakes.get(tp, 0) < RENEWALS:
                        self._retakes[tp] = self._retakes.get(tp, 0) + 1
                        raise _Unanswered(f"failed ({e})") from e
                    unusable = isinstance(e.__cause__, OutOfOrderSequenceNumber | UnknownProducerId)
                    if stale or not unusable or renewals >= RENEWALS or not self._holds(tp):
                        raise
                    renewals += 1
                    stale = True
                log.warning(
                    "%s: %s; %s", self.instance, e, "renewing its producer" if stale else "retrying"
                )
            await asyncio.sleep(0.5)

    async def _answered(self, transaction: Coroutine[Any, Any, None]) -> None:
        """`transaction`, or `_Unanswered` after `unanswered_s`. It is then cancelled but not
        awaited: a transaction's end is awaited shielded and may never come; the new producer
        of its partition fences it."""
        task = asyncio.ensure_future(transaction)
        try:
            done, _ = await asyncio.wait({task}, timeout=self.unanswered_s)
        except BaseException:
            self._abandon(task)
            raise
        if not done:
            self._abandon(task)
            raise _Unanswered(f"went unanswered for {self.unanswered_s:.0f} s")
        await task

    def _abandon(self, task: asyncio.Task[None]) -> None:
        task.cancel()
        self._abandoned.add(task)
        task.add_done_callback(self._abandoned.discard)

    async def _end_abandoned(self) -> None:
        """Cancel the abandoned transactions again (a second cancel ends a shielded wait) and
        wait for them, bounded."""
        for task in self._abandoned:
            task.cancel()
        if self._abandoned:
            await asyncio.wait(self._abandoned, timeout=REVOKE_GRACE_S)

    async def _unless_taken(self, tp: TopicPartition) -> None:
        """After a fence on `tp`. Either another worker took `tp` over (this one missed a
        rebalance; the group has moved on, and revokes `tp` here soon), or the broker aborted a
        transaction left open longer than `transaction_timeout_ms` (across a broker restart)
        and bumped its producer's epoch: then no rebalance comes, and `tp`'s requests would
        wait for a new owner that never comes. So while `tp` is still assigned here, ask the
        group: once it is settled and assigns `tp` to this worker, take `tp` over again."""
        admin = AIOKafkaAdminClient(**self.config.client())
        try:
            while self._orphaned(tp):
                try:
                    with broker_errors("asking the group who owns a fenced partition"):
                        await admin.start()  # does nothing once it succeeded
                        mine = await settled_assignment(admin, self.group, self._client_id)
                except BrokerError as e:
                    log.warning("%s: %s", self.instance, e)
                    mine = None
                except Exception as e:  # an answer that does not decode: ask again
                    log.warning("%s: cannot read the group's assignment: %r", self.instance, e)
                    mine = None
                if mine is not None and tp in mine:
                    async with self._commit_lock:
                        if self._orphaned(tp):
                            await self._reload(tp, "was fenced; the group still assigns it here")
                    return
                await asyncio.sleep(self.settings.kafka_session_timeout_ms / 4000)
        finally:
            await admin.close()

    def _orphaned(self, tp: TopicPartition) -> bool:
        """Assigned here and not being revoked, but neither held nor being taken over."""
        return (
            self._holds(tp)
            and tp not in self._results
            and tp not in self._loading
            and tp not in self._revoking
        )

    def _holds(self, tp: TopicPartition) -> bool:
        """Still assigned `tp`: only then may a new producer fence the one before it."""
        return self._consumer is not None and tp in self._consumer.assignment()

    async def _renew(self, tp: TopicPartition, old: AIOKafkaProducer) -> AIOKafkaProducer:
        """A new producer for `tp`'s transactional id. Starting it fences `old` and aborts the
        transaction `old` left open, whose results are then published again."""
        fresh = self._producer(tp.partition)
        try:
            await fresh.start()
        except BaseException:
            await fresh.stop()
            raise
        self._results[tp] = fresh
        with contextlib.suppress(Exception):
            await asyncio.wait_for(old.stop(), REVOKE_GRACE_S)
        return fresh

    async def _transact(
        self, producer: AIOKafkaProducer, tp: TopicPartition, items: list[_Finished]
    ) -> None:
        try:
            async with producer.transaction():
                futures = []
                for item in items:
                    futures.extend(await self._send_result(producer, tp, item))
                await asyncio.gather(*futures)
                offsets = self._offsets_after(items)
                if offsets:
                    await producer.send_offsets_to_transaction(offsets, self.group)
        except Exception as e:
            cause = fatal_error(producer)
            if cause is None or cause is e:
                raise
            raise cause from e  # a fence seen late, as a call the producer's state refuses

    async def _send_result(
        self, producer: AIOKafkaProducer, tp: TopicPartition, item: _Finished
    ) -> list[asyncio.Future[Any]]:
        """Sends `item`'s events, and its done-marker on `tp`'s partition of task-done."""
        topic = self.config.topic
        futures = []
        for event in item.events:
            target, key = destination(event)
            value = encode(event)
            futures.append(
                await producer.send(
                    topic(target),
                    value,
                    key=key.encode() if key else None,
                    headers=self.signer.headers(target, value),
                )
            )
        if item.run_id is not None:
            futures.append(
                await producer.send(
                    topic("eventflow.task-done"),
                    str(item.offset).encode(),
                    key=item.run_id.encode(),
                    partition=tp.partition,
                )
            )
        return futures

    def _offsets_after(self, batch: list[_Finished]) -> dict[TopicPartition, int]:
        """Per partition, the offset to commit with `batch`: read only, `_settle` applies the
        batch once its transaction committed."""
        ended: dict[TopicPartition, set[int]] = {}
        for item in batch:
            if item.tp in self.partitions:
                ended.setdefault(item.tp, set()).add(item.offset)
        after: dict[TopicPartition, int] = {}
        for tp, offsets in ended.items():
            state = self.partitions[tp]
            still = state.running - offsets
            after[tp] = min(still) if still else state.next_offset
        return after

    def _settle(self, batch: list[_Finished]) -> None:
        for item in batch:
            state = self.partitions.get(item.tp)
            if state is not None:
                state.running.discard(item.offset)
                if item.run_id is not None:
                    state.done[item.run_id] = item.offset
