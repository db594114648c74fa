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
import logging
import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from ..core import Engine
from ..core.codec import Record
from ..definitions import App
from ..errors import BrokerError, EventError
from ..events import (
    BY_TYPE,
    CE_HEADER_PREFIX,
    DatasetProduced,
    Event,
    TaskHeartbeat,
    TaskRequested,
    TaskStarted,
    encode,
    from_binary,
    is_binary,
    is_external,
)
from ..execution import one_line
from ..lifecycle import Service, instance_id
from ..runtime.step import Inbound, Outcome, Step, Tick, Undecidable, admit
from ..schedule import run_schedule
from ..settings import Settings
from ..timers import Timers
from ..topics import SPECS, destination
from ..tracing import Tracer
from .changelog import DATASETS
from .config import KafkaConfig, broker_errors, quiet_fences
from .signing import Signer
from .takeover import INPUTS, Listener, TakeOver

log = logging.getLogger("eventflow.coordinator")

ACCEPTS: dict[str, tuple[type[Event], ...]] = {
    topic: tuple(BY_TYPE[kind] for kind in SPECS[topic].events) for topic in INPUTS
}
#: Header of a record a coordinator forwarded to the partition owning its state.
FORWARDED = "eventflow-forwarded"
#: Times a step may fail unexpectedly on one record before that record is dead-lettered.
POISON_AFTER = 3
#: A task-events partition not fetched for this long counts as unheard (broker unreachable).
UNHEARD_MS = 5000
#: Seconds a stream task's started and heartbeat events may wait for something else to decide.
LINGER_S = 0.05


@dataclass
class _Held:
    """What a stream task read and has not committed yet, to go with its next step: the
    offsets of echoes (nothing to decide), and progress events (a run started, or is alive).

    A progress event alone is not worth a transaction of its own: a quick task's result comes a
    few milliseconds after its start, and the step that took the start would still be completing
    on the broker when the result's step begins (aiokafka then waits 20 ms to retry). So progress
    waits up to `LINGER_S` (`due`) to be decided with whatever comes next; only the `running`
    status others see is that much later. Nothing held is committed: given up (`drop_held`), it
    is read again by the task's next owner."""

    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    inputs: list[Inbound] = field(default_factory=list)
    #: Per input, the record it came from.
    sources: list[Any] = field(default_factory=list)
    due: float | None = None


@dataclass
class _Regaining:
    """A stream task that stopped hearing its workers at `lost_at` (a gap, or the task given up
    and taken over again), until it hears them again; `fetched_at`: since when its partition is
    fetched again (None: not yet)."""

    lost_at: float
    fetched_at: float | None = None


def _progress(inbound: Inbound) -> bool:
    return inbound.refused is None and isinstance(inbound.item, TaskStarted | TaskHeartbeat)


class _Transaction:
    """The state log of one step of stream task n: its messages (signed), the records it
    forwards, its changelog records and its input offsets, in one Kafka transaction."""

    def __init__(
        self,
        service: KafkaCoordinator,
        producer: AIOKafkaProducer,
        n: int,
        offsets: dict[TopicPartition, int],
        forward: list[tuple[str, str, bytes, Any]],
    ) -> None:
        self.service = service
        self.producer = producer
        self.n = n
        self.offsets = offsets
        self.forward = forward
        #: The offset of the step's last changelog record, once committed.
        self.last: int | None = None

    async def commit(self, outcome: Outcome, records: list[Record]) -> None:
        with broker_errors(f"committing a step of stream task {self.n}"):
            await self._send(outcome, records)

    async def _send(self, outcome: Outcome, records: list[Record]) -> None:
        topic = self.service.config.topic
        signer = self.service.signer
        producer = self.producer
        tasks = self.service.stream_tasks.states
        async with producer.transaction():
            futures = []
            for target, key, event in outcome.messages:
                value = encode(event)
                sent = await producer.send(
                    topic(target),
                    value,
                    key=key.encode() if key else None,
                    # A dataset's events go to its home's stream task (`App.home_of`).
                    partition=tasks.dataset_task(key) if target == DATASETS else None,
                    headers=signer.headers(target, value),
                )
                futures.append(sent)
            for target, key, event in outcome.echoes:
                value = encode(event)
                sent = await producer.send(
                    topic(target),
                    value,
                    key=key.encode(),
                    partition=self.n,
                    headers=signer.echo_headers(target, value),
                )
                futures.append(sent)
            for target, key, value, headers in self.forward:
                sent = await producer.send(
                    topic(target),
                    value,
                    key=key.encode(),
                    partition=tasks.task_for(target, key),
                    headers=list(headers or ()),
                )
                futures.append(sent)
            state = topic("eventflow.state")
            changes = [
                await producer.send(state, value, key=key, partition=self.n)
                for key, value in records
            ]
            await asyncio.gather(*futures)
            written = await asyncio.gather(*changes)
            if self.offsets:
                await producer.send_offsets_to_transaction(self.offsets, self.service.group)
        self.last = max((meta.offset for meta in written), default=None)


class KafkaCoordinator(Service):
    """One coordinator instance; run as many as wanted, they split the stream tasks."""

    def __init__(
        self,
        app: App,
        settings: Settings,
        *,
        instance: str | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        """`tracer` records the `publish` and `decide` spans (`eventflow.tracing`)."""
        super().__init__()
        self.app = app
        self.settings = settings
        self.config = KafkaConfig(settings)
        self.instance = instance or instance_id()
        self.name = f"coordinator {self.instance}"
        self.engine = Engine(
            app,
            default_timeout_s=settings.default_timeout_s,
            heartbeat_timeout_s=settings.heartbeat_timeout_ms / 1000,
            source=settings.source,
            local_pools=False,
        )
        self.step = Step(self.engine, source=settings.source, follow=False, tracer=tracer)
        self.group = self.config.name("eventflow.coordinator")
        self.signer = Signer.of(settings, required_by="eventflow coordinator")
        # Per record (topic, partition, offset): failures so far and the last error.
        self._failures: dict[tuple[str, int, int], tuple[int, str]] = {}
        self._tick_failures: Counter[str] = Counter()
        # Per stream task: what it read since its last step committed, and holds for the next.
        self._held: dict[int, _Held] = {}
        # Per stream task: since when its task-events partition has been heard without a gap.
        self._heard_since: dict[int, float] = {}
        # Per stream task that stopped hearing its workers, until it hears them again.
        self._regaining: dict[int, _Regaining] = {}
        self._listened_at: float | None = None
        self.timers = Timers()
        # Held by each processing step and by the final swap of a take-over.
        self._lock = asyncio.Lock()
        self.stream_tasks = TakeOver(self, self.config.partitions("eventflow.pipeline-inputs"))
        self._clock: AIOKafkaProducer | None = None
        self._clocks: list[asyncio.Task[None]] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._loop: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    async def _open(self) -> None:
        """Join the group; `ready` is set once the stream tasks assigned are taken over."""
        quiet_fences(asyncio.get_running_loop())
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
        with broker_errors(f"cannot reach Kafka at {self.config.bootstrap}"):
            await self._consumer.start()
        self._consumer.subscribe(
            [self.config.topic(t) for t in INPUTS], listener=Listener(self.stream_tasks)
        )
        self._loop = self.spawn(self._run(), "eventflow coordinator")
        if self.app.schedules:
            self._clock = AIOKafkaProducer(
                enable_idempotence=True, acks="all", **self.config.client()
            )
            with broker_errors(f"cannot reach Kafka at {self.config.bootstrap}"):
                await self._clock.start()
            for schedule in self.app.schedules.values():
                clock = run_schedule(schedule, self._tick_clock, source=self.settings.source)
                self._clocks.append(self.spawn(clock, "clock"))

    async def _tick_clock(self, event: DatasetProduced) -> None:
        """Every instance ticks; the router keeps one of the identical versions."""
        assert self._clock is not None
        value = encode(event)
        dataset = event.data.dataset
        try:
            with broker_errors(f"clock tick of {dataset}"):
                await self._clock.send_and_wait(
                    self.config.topic(DATASETS),
                    value,
                    key=dataset.encode(),
                    headers=self.signer.headers(DATASETS, value),
                )
        except BrokerError as e:
            log.warning("%s: %s lost", self.instance, e)

    async def _close(self) -> None:
        """Finish the batch in hand, leave the group, close the producers."""
        consumer, self._consumer = self._consumer, None
        await self.stream_tasks.stop()
        await self.cancel(*self._clocks)
        self._clocks.clear()
        if self._clock is not None:
            await self._clock.stop()
            self._clock = None
        if self._loop is not None:
            async with self._lock:
                self._loop.cancel()
            await self.cancel(self._loop)
            self._loop = None
        if consumer is not None:
            await consumer.stop()
        async with self._lock:
            await self.stream_tasks.close_producers(set(self.stream_tasks.producers))

    async def wait_ready(self) -> None:
        """Until this instance has been assigned its stream tasks and restored their state."""
        await self.ready.wait()

    def owns(self) -> list[int]:
        """The stream tasks (partition numbers) this instance processes."""
        return sorted(self.stream_tasks.owned)

    @property
    def assignments(self) -> int:
        """Assignments received, one per consumer-group generation joined."""
        return self.stream_tasks.assignments

    async def lag(self) -> int:
        """Input records not yet processed by this instance (-1 while a task is restoring)."""
        consumer = self._consumer
        if consumer is None or self.stream_tasks.restoring():
            return -1
        tps = [tp for tp in consumer.assignment() if tp.partition in self.stream_tasks.owned]
        if not tps:
            return 0
        with broker_errors("reading the consumer lag"):
            ends = await consumer.end_offsets(tps)
            positions: list[int] = [await consumer.position(tp) for tp in tps]
        return sum(max(0, int(ends[tp]) - pos) for tp, pos in zip(tps, positions, strict=False))

    # -- processing ------------------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while True:
            timeout = 1000
            dues = [held.due for held in self._held.values() if held.due is not None]
            timer = self.timers.next_at()
            at = min([*dues, math.inf if timer is None else timer])
            if at < math.inf:
                timeout = math.ceil(max(0.0, min(1.0, at - time.time())) * 1000)
            batches = await consumer.getmany(timeout_ms=timeout, max_records=1000)
            async with self._lock:
                by_task: dict[int, list[Any]] = defaultdict(list)
                for tp, records in batches.items():
                    if tp.partition in self.stream_tasks.owned:
                        by_task[tp.partition].extend(records)
                for n, records in sorted(by_task.items()):
                    await self._step(n, records)
                now = time.time()
                self._listen(consumer, now, batches)
                for pipeline in self.timers.due(now):
                    n = self.stream_tasks.states.owner_task(pipeline)
                    if n in self.stream_tasks.owned:
                        await self._step(n, [], tick=pipeline)
                for n, held in list(self._held.items()):
                    if held.due is not None and held.due <= now and n in self.stream_tasks.owned:
                        await self._step(n, [], flush=True)

    def drop_held(self, n: int) -> None:
        """Forget what task n holds (it is given up): nothing held is committed, so whoever
        takes n over next reads it again from the committed offsets. It stops hearing its
        workers too (`_listen`), whether it is taken over again here or not."""
        self._held.pop(n, None)
        self._heard_since.pop(n, None)
        self._regaining[n] = _Regaining(time.time())

    def _listen(
        self, consumer: AIOKafkaConsumer, now: float, batches: dict[TopicPartition, list[Any]]
    ) -> None:
        """Track since when each owned task has heard its workers without a gap, so that no run
        is failed as lost for a silence the coordinator could not hear through. A task stops
        hearing at a gap (its partition not fetched for `UNHEARD_MS`, or this loop itself held
        up that long: a step waiting on the broker hears nothing either) and when it is given up
        (as a step that failed on the broker gives it up); it has not heard yet when first
        taken here. It hears again from the first record on its partition written since (in
        `batches`, fetched now; records read again from before do not count), since a worker's
        producer may take longer than the coordinator to reconnect after a broker restart; or,
        if none comes, a whole heartbeat window after its partition is fetched again, so that
        workers that died meanwhile are still found."""
        held_up = self._listened_at is not None and (now - self._listened_at) * 1000 > UNHEARD_MS
        self._listened_at = now
        window = self.settings.heartbeat_timeout_ms / 1000
        for n in self.stream_tasks.owned:
            tp = TopicPartition(self.config.topic("eventflow.task-events"), n)
            polled = consumer.last_poll_timestamp(tp) if tp in consumer.assignment() else None
            unheard = polled is None or now * 1000 - polled > UNHEARD_MS
            if unheard or held_up:
                if self._heard_since.pop(n, None) is not None:
                    log.warning("%s: stream task %d could not hear its workers", self.instance, n)
                    self._regaining[n] = _Regaining(now)
                regaining = self._regaining.setdefault(n, _Regaining(now))
                regaining.fetched_at = None if unheard else now
                continue
            if n in self._heard_since:
                continue
            regaining = self._regaining.setdefault(n, _Regaining(now))
            if regaining.fetched_at is None:
                regaining.fetched_at = now
            lost_ms = regaining.lost_at * 1000
            spoke = any(r.timestamp >= lost_ms for r in batches.get(tp, ()))
            if spoke or now - regaining.fetched_at >= window:
                del self._regaining[n]
                self._heard_since[n] = now  # hearing from now on

    async def _step(
        self, n: int, records: list[Any], tick: str | None = None, *, flush: bool = False
    ) -> None:
        """One transaction: consume `records` (or a tick) and what the task holds (`_Held`),
        decide, emit, checkpoint; or hold them too, when there is nothing worth committing."""
        producer = self.stream_tasks.producers[n]
        now = time.time()
        held = self._held.pop(n, None) or _Held()
        inputs, sources, offsets = held.inputs, held.sources, held.offsets
        forward: list[tuple[str, str, bytes, Any]] = []
        if tick is not None and self._tick_failures[tick] < POISON_AFTER:
            inputs.append(Inbound(Tick(tick, self._heard_since.get(n, now)), "timer"))
            sources.append(None)
        for record in records:
            inbound = self._admit(record, forward)
            if inbound is not None:
                inputs.append(inbound)
                sources.append(record)
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
        if not flush and tick is None and not forward and all(map(_progress, inputs)):
            # Echoes alone (decided in the step that wrote them) or progress alone: a
            # transaction now would hold up the task's next step (see `_Held`).
            if inputs and held.due is None:
                held.due = now + LINGER_S
            if inputs or records:
                self._held[n] = held
            return
        transaction = _Transaction(self, producer, n, offsets, forward)
        tasks = self.stream_tasks.states

        def local(event: Event) -> bool:
            return tasks.task_for(*destination(event)) == n

        try:
            outcome = await self.step.process(inputs, now, transaction, local)
        except BrokerError as e:
            log.warning("%s: step of task %d failed (%s); restoring it", self.instance, n, e)
            await self.stream_tasks.recover(n)
            return
        except Undecidable as e:
            # The decision left state half-changed (nothing was sent): restore, and
            # after a few tries refuse the record (as Kafka Streams' exception handlers do).
            record = sources[e.index]
            if record is None:
                assert tick is not None
                self._tick_failures[tick] += 1
                where = f"tick of {tick}"
            else:
                pos = (record.topic, record.partition, record.offset)
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
            await self.stream_tasks.recover(n)
            return
        for record in sources:
            if record is not None:
                self._failures.pop((record.topic, record.partition, record.offset), None)
        if transaction.last is not None:  # the commit marker follows the step's last record
            self.stream_tasks.states.ends[n] = transaction.last + 2
        for at, pipeline in outcome.effects.wakes:
            self.timers.add(at, pipeline)

    def _admit(self, record: Any, forward: list[tuple[str, str, bytes, Any]]) -> Inbound | None:
        """A record as a step's input: decoded, or refused with the reason (malformed, not of
        this topic, unsigned, failing too often). None when it is forwarded instead (its producer
        keyed it otherwise than the stream task owning its state: an outside system, or a tool
        that does not know which pipeline produces a dataset), or when it is an echo. Only
        dataset events and announcements from outside are forwarded; any other event on the
        wrong partition is refused, since eventflow's services key theirs right."""
        topic = self.config.unprefixed(record.topic)
        value: bytes = record.value or b""
        headers: list[tuple[str, bytes]] = list(record.headers or ())
        if self.signer.decided(topic, value, headers):
            return None  # an echo: decided in the step that wrote it
        failed = self._failures.get((record.topic, record.partition, record.offset))
        if failed is not None and failed[0] >= POISON_AFTER:
            reason = f"deciding it failed {failed[0]} times: {failed[1]}"
            return Inbound(None, topic, value, refused=reason)
        if is_binary(headers):
            # Binary content mode: decided, stored and forwarded in the structured form.
            try:
                value = from_binary(headers, value)
            except EventError as e:
                return Inbound(None, topic, value, refused=e.reason)
            headers = [(name, raw) for name, raw in headers if not _is_ce_header(name)]

        def allowed(event: Event) -> None:
            if not isinstance(event, ACCEPTS[topic]):
                raise EventError(f"{event.type} does not belong on {topic}")
            self.signer.check(topic, event, value, headers)

        inbound = admit(
            value,
            topic,
            max_metadata_bytes=self.settings.max_metadata_bytes,
            allowed=allowed,
            headers=headers,  # no `ce_` ones left: a `traceparent` header is taken in
        )
        event = inbound.item
        if not isinstance(event, Event):
            return inbound
        target, key = destination(event)
        if isinstance(event, TaskRequested) and topic == "eventflow.pools":
            target, key = topic, event.data.pool or ""  # a pooled request, as `Step` sends it
        if target == topic and self.stream_tasks.states.task_for(topic, key) == record.partition:
            return inbound
        try:
            if target != topic:
                # Decided here, it would change state another stream task owns.
                raise EventError(f"{event.type} on {topic} belongs on {target}")
            if isinstance(event, DatasetProduced):
                self.engine.router.validate(event.data)  # refused here if it cannot be used
            if not is_external(event) and topic != DATASETS:
                raise EventError(f"{event.type} on {topic} is not keyed by its {key!r}")
            if any(name == FORWARDED for name, _ in headers):
                # Coordinators that disagree on where it belongs (different App versions
                # during a deploy) would otherwise pass it back and forth for ever.
                raise EventError(
                    f"{event.type} forwarded once already, to a partition that "
                    "does not own its state: do the coordinators run one App?"
                )
        except EventError as e:
            return Inbound(None, topic, value, refused=e.reason)
        forward.append((topic, key, value, [*headers, (FORWARDED, b"")]))
        return None


def _is_ce_header(name: str) -> bool:
    lowered = name.lower()
    return lowered.startswith(CE_HEADER_PREFIX) or lowered == "content-type"
