"""Clients for systems outside eventflow: announce datasets, react to what happens (run, task
and check outcomes, dataset versions, dead letters), and operators' tools: act on pipelines.

Both talk to a running `eventflow dev` over its control socket, or to Kafka when
`Settings.kafka_bootstrap` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Sequence,
)
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Protocol

from .embedded.control import CaughtUp, ControlClient, Item
from .errors import BrokerError, ConfigurationError, EventError
from .events import (
    PIPELINE_RUN_EVENTS,
    Action,
    BackfillPlan,
    DatasetProduced,
    DatasetProducedData,
    Event,
    PipelineAction,
    PipelineRunData,
    check_metadata,
    encode,
    pipeline_action,
    structured,
    version_now,
)
from .lifecycle import Lifecycle
from .settings import Settings
from .subscriptions import Position, Selection, Start
from .topics import INTERNAL_TOPICS, SPECS, destination

log = logging.getLogger(__name__)


class Publisher(Lifecycle):
    """Announces dataset versions.

    On Kafka (`kafka_bootstrap` set) it is an idempotent producer with acks=all: `publish`
    returns once the broker has the event, and the coordinator dead-letters what it refuses. To a
    dev instance, `publish` returns once the instance has logged and routed the event, and raises
    `EventError` with the reason if it was refused.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        if self.settings.kafka_bootstrap:
            from .kafka.clients import KafkaPublisher

            self._kafka: KafkaPublisher | None = KafkaPublisher(self.settings)
            self._dev: ControlClient | None = None
        else:
            self._kafka = None
            self._dev = ControlClient(self.settings.control_socket)

    async def start(self) -> None:
        if self._kafka is not None:
            await self._kafka.start()
        if self._dev is not None:
            await self._dev.start()

    async def stop(self) -> None:
        if self._kafka is not None:
            await self._kafka.stop()
        if self._dev is not None:
            await self._dev.stop()

    async def publish(
        self,
        dataset: str,
        partition: str = "",
        *,
        version: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> DatasetProduced:
        """Announce a new version of `dataset` (of `partition`, if partitioned).

        `version` defaults to the time in microseconds, so later announcements win; `metadata`
        carries small facts about the data (a path, a row count), never the data. Returns the
        event as published.
        """
        data = DatasetProducedData(
            dataset=dataset,
            partition=partition,
            version=version if version is not None else version_now(),
            metadata=check_metadata(metadata or {}, self.settings.max_metadata_bytes),
        )
        event = DatasetProduced.of(data, source=self.settings.source)
        await self.publish_event(event)
        return event

    async def publish_event(self, event: Event) -> None:
        """Publish an event built elsewhere, keyed by its dataset as `publish` would."""
        key = event.data.dataset if isinstance(event.data, DatasetProducedData) else None
        reply = await self.publish_raw(encode(event), key=key)
        if reply.get("dead_letter"):
            raise EventError(reply["dead_letter"])
        if not reply.get("ok", False):
            raise BrokerError(f"not published: {reply.get('error', 'no reason given')}")

    async def publish_raw(
        self,
        raw: bytes,
        key: str | None = None,
        *,
        topic: str = "eventflow.datasets",
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> dict[str, Any]:
        """Bytes as any producer would send them (on Kafka, to `topic`, with `headers`). From a
        dev instance the reply says whether they were dead-lettered; Kafka only acknowledges
        them. A CloudEvent in binary mode (`ce_` headers, `raw` its data) reaches a dev
        instance in its structured form; one that has none is refused with `EventError`."""
        if self._kafka is not None:
            await self._kafka.send(raw, key, topic, headers)
            return {"ok": True}
        assert self._dev is not None
        return await self._dev.publish_raw(structured(raw, headers))

    async def act(
        self,
        pipeline: str,
        action: Action,
        *,
        reason: str,
        operator: str,
        partition: str = "",
        task: str | None = None,
        backfill: str | None = None,
        plan: BackfillPlan | None = None,
    ) -> PipelineAction:
        """An operator's action on a pipeline: `pause`, `resume`, `rerun_task` (with `task`
        and `partition`), `rerun_run` or `cancel` (with `partition`), `backfill` (with its id
        `backfill` and `plan`) or `cancel_backfill` (with `backfill`). The coordinator decides
        it like any input, once. To a dev instance this returns once it is decided, and raises
        `EventError` with the reason if it was refused (a rerun of a task in flight, a cancel
        with no run); on Kafka it returns once the broker has it (a refusal becomes a dead
        letter) and needs `EVENTFLOW_SIGNING_KEY`, since only eventflow's own tools may act."""
        event = pipeline_action(
            pipeline,
            action,
            reason=reason,
            operator=operator,
            partition=partition,
            task=task,
            backfill=backfill,
            plan=plan,
            source=self.settings.source,
        )
        if self._kafka is not None and not self._kafka.signer.enabled:
            raise ConfigurationError("an action on Kafka is signed: set EVENTFLOW_SIGNING_KEY")
        topic, key = destination(event)
        reply = await self.publish_raw(encode(event), key=key, topic=topic)
        if reply.get("dead_letter"):
            raise EventError(reply["dead_letter"])
        if not reply.get("ok", False):
            raise BrokerError(f"not published: {reply.get('error', 'no reason given')}")
        return event


def publish(
    dataset: str,
    partition: str = "",
    *,
    version: int | None = None,
    metadata: dict[str, Any] | None = None,
    settings: Settings | None = None,
) -> DatasetProduced:
    """Announce one dataset version and wait until it is published, for scripts that are not
    async; each call connects anew, so a loop of announcements should use `Publisher`."""

    async def once() -> DatasetProduced:
        async with Publisher(settings) as publisher:
            return await publisher.publish(dataset, partition, version=version, metadata=metadata)

    return asyncio.run(once())


class Subscriber(Lifecycle):
    """Events of pipelines and datasets as they happen, or replayed: `async for event in
    subscriber.events()` (typed envelopes: `event.id` is the idempotency key), or `async for
    run in subscriber` for the payloads alone.

    What: `kinds` (`run`: pipeline-run outcomes, the default; `task`: task outcomes; `check`:
    check outcomes; `dataset`: dataset versions, whoever produced them; `deadletter`; or any
    event type, or prefix of event types, such as `eventflow.task`), kept when they match
    `pipelines`, `datasets`, `partitions` and `statuses` (see `eventflow.subscriptions`).
    `finished_only` (the default) leaves out runs that only started.

    Where from, the same in both modes: live from now on; durable with a `name` (resumes after
    the last event it handled: a consumer group on Kafka, a position stored in the dev
    instance's state file; the first start is at the end, or the beginning with
    `from_beginning`); or a replay `from_beginning`, `since` a time, or from a `position` (as
    `Subscriber.position` gave it earlier). `until="now"` ends the iteration once it has caught
    up with the log as it was at `start()` (on Kafka: when its partitions were assigned);
    iterating `events()` again then goes on live from there, so a service can rebuild its state
    and then go live without a gap. `caught_up` is set at that moment in any case. An option
    that cannot be honoured raises `ConfigurationError`.

    Delivery is at least once: an event counts as handled once the iterator is asked for the
    next one, or the `async with` block ends without an exception (or `stop()` is called). A
    durable subscriber that crashes, or leaves its block with an exception, gets again the
    events it had not handled (the one in hand among them), never fewer; an idempotent handler
    keys on `event.id`. Order: the log's in embedded mode; on Kafka within one kind's topic
    partition only (a pipeline's runs, a pipeline's task outcomes, a dataset's versions and
    checks), not across kinds: a run's outcome may come before its tasks' outcomes.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        kinds: Iterable[str] = ("run",),
        pipelines: Iterable[str] | None = None,
        datasets: Iterable[str] | None = None,
        partitions: Iterable[str] | None = None,
        statuses: Iterable[str] | None = None,
        finished_only: bool = True,
        name: str | None = None,
        from_beginning: bool = False,
        since: datetime | None = None,
        position: Position | None = None,
        until: Literal["now"] | None = None,
    ) -> None:
        self.settings = settings or Settings()
        if isinstance(kinds, str):
            kinds = (kinds,)
        self.selection = Selection(
            kinds=tuple(kinds),
            pipelines=frozenset(pipelines or ()),
            datasets=frozenset(datasets or ()),
            partitions=frozenset(partitions or ()),
            statuses=frozenset(statuses or ()),
        )
        self.finished_only = finished_only
        self.start_at = Start(
            name=name, from_beginning=from_beginning, since=since, position=position, until=until
        )
        #: Set once every event logged before `start()` has been handled (or filtered out).
        self.caught_up = asyncio.Event()
        self._source: _Source = (
            _KafkaSource(self.settings, self.selection, self.start_at)
            if self.settings.kafka_bootstrap
            else _DevSource(self.settings, self.selection, self.start_at)
        )
        self._iterators: list[AsyncGenerator[Any, None]] = []
        self._in_hand: Any = None  # where the event last yielded is, until it is acknowledged

    @property
    def position(self) -> Position:
        """Where this subscriber stands: after the last event it handled. Pass it as
        `position=` to a later subscriber to go on from here (in the same mode)."""
        return self._source.position()

    async def start(self) -> None:
        await self._source.start()

    async def stop(self) -> None:
        """Count the event in hand as handled, and let go."""
        await self._stop(handled=True)

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop(handled=et is None)

    async def _stop(self, *, handled: bool) -> None:
        in_hand, self._in_hand = self._in_hand, None
        if handled and in_hand is not None:
            with contextlib.suppress(BrokerError):
                await self._source.ack(in_hand)
        for iterator in self._iterators:
            await iterator.aclose()
        self._iterators.clear()
        await self._source.stop()

    def events(self) -> AsyncIterator[Event]:
        """The chosen events, each with its envelope (`id`, `type`, `time`, `data`)."""
        iterator = self._events()
        self._iterators.append(iterator)
        return iterator

    def __aiter__(self) -> AsyncIterator[PipelineRunData]:
        """The pipeline-run outcomes alone (`kinds` must include `run`); `events()` gives every
        kind, with the envelope."""
        if not self.selection.types & {c.event_type for c in PIPELINE_RUN_EVENTS}:
            raise ConfigurationError(
                "`async for` over a Subscriber gives pipeline runs; iterate `events()` for "
                f"{', '.join(self.selection.kinds)}"
            )
        iterator = self._runs()
        self._iterators.append(iterator)
        return iterator

    async def _runs(self) -> AsyncGenerator[PipelineRunData, None]:
        async for event in self._events():
            if isinstance(event, PIPELINE_RUN_EVENTS):
                yield event.data

    async def _events(self) -> AsyncGenerator[Event, None]:
        await self.start()
        async for item in self._source.items():
            if item is None:
                if not self.caught_up.is_set():
                    self.caught_up.set()
                    if self.start_at.until == "now":
                        return
                continue
            where, event = item
            if self._wants(event):
                self._in_hand = where
                yield event
                self._in_hand = None
            await self._source.ack(where)

    def _wants(self, event: Event) -> bool:
        if not self.selection.wants(event):
            return False
        return not (
            self.finished_only
            and isinstance(event, PIPELINE_RUN_EVENTS)
            and event.data.status == "running"
        )


class Intake:
    """A durable subscription a service reads for its whole life: started with the service (so
    that what cannot work, a missing topic or no dev instance, fails the start), then read by
    `run` until cancelled. A broker error starts a new subscriber after a growing pause (it
    reads again from the last commit: `take` must be idempotent per event); `failures` errors in
    a row with no event between them are raised."""

    def __init__(
        self,
        subscribe: Callable[[], Subscriber],
        what: str,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        failures: int = 10,
        max_pause_s: float = 30.0,
    ) -> None:
        self.what = what
        self._subscribe = subscribe
        self._sleep = sleep
        self._failures = failures
        self._max_pause_s = max_pause_s
        self._subscriber: Subscriber | None = None

    async def start(self) -> None:
        if self._subscriber is None:
            self._subscriber = self._subscribe()
            await self._subscriber.start()

    async def stop(self) -> None:
        if self._subscriber is not None:
            subscriber, self._subscriber = self._subscriber, None
            await subscriber.stop()

    async def run(self, take: Callable[[Event], Awaitable[None]]) -> None:
        failures = 0
        while True:
            subscriber = self._subscriber or self._subscribe()
            self._subscriber = subscriber
            try:
                # Inside `async with`: a stop (a cancellation) or an error does not count the
                # event in hand as handled, so one that `take` did not finish comes again.
                async with subscriber:
                    async for event in subscriber.events():
                        failures = 0
                        await take(event)
            except BrokerError as e:
                self._subscriber = None
                failures += 1
                if failures >= self._failures:
                    raise
                log.warning("%s: reading events failed (%d in a row): %s", self.what, failures, e)
                await self._sleep(min(self._max_pause_s, 0.5 * 2 ** min(failures, 6)))


class _Source(Protocol):
    """Where a subscriber's events come from: each with where it is (what `ack` takes), and
    `None` once when caught up."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def items(self) -> AsyncIterator[tuple[Any, Event] | None]: ...
    async def ack(self, where: Any) -> None: ...
    def position(self) -> Position: ...


class _DevSource:
    """A subscription on the dev instance's control socket, reading its event log."""

    def __init__(self, settings: Settings, selection: Selection, start: Start) -> None:
        self.client = ControlClient(settings.control_socket)
        self.request: dict[str, Any] = {
            "types": sorted(selection.types),
            "name": start.name,
            "from_beginning": start.from_beginning,
            "since": start.since.isoformat() if start.since is not None else None,
            "position": None,
        }
        if start.position is not None:
            if set(start.position) != {"log"}:
                raise ConfigurationError(
                    "a position in embedded mode is {'log': seq}, as `Subscriber.position` "
                    f"gives it there, not {start.position!r}"
                )
            self.request["position"] = start.position["log"]
        self._stream: AsyncIterator[Item] | None = None
        self._next = 0

    async def start(self) -> None:
        if self._stream is not None:
            return
        await self.client.start()
        try:
            reply, self._stream = await self.client.subscribe(self.request)
        except BaseException:
            await self.client.stop()
            raise
        self._next = int(reply["start"])

    async def stop(self) -> None:
        self._stream = None
        await self.client.stop()

    async def items(self) -> AsyncIterator[tuple[Any, Event] | None]:
        assert self._stream is not None
        async for item in self._stream:
            if isinstance(item, CaughtUp):
                yield None
            else:
                yield item

    async def ack(self, where: Any) -> None:
        self._next = max(self._next, int(where) + 1)
        await self.client.ack(self._next)

    def position(self) -> Position:
        return {"log": self._next}


class _KafkaSource:
    """A consumer of the topics that carry the chosen event types; a group for a name."""

    def __init__(self, settings: Settings, selection: Selection, start: Start) -> None:
        from .kafka.clients import KafkaSubscriber

        topics = sorted(
            spec.name
            for spec in SPECS.values()
            if spec.name not in INTERNAL_TOPICS and selection.types & set(spec.events)
        )
        self.reader = KafkaSubscriber(
            settings,
            topic=topics,
            group_id=None
            if start.name is None
            else f"{settings.topic_prefix}eventflow.subscriber.{start.name}",
            from_beginning=start.from_beginning,
            since=start.since,
            position=start.position,
        )

    async def start(self) -> None:
        await self.reader.start()

    async def stop(self) -> None:
        await self.reader.stop()

    async def items(self) -> AsyncIterator[tuple[Any, Event] | None]:
        async for item in self.reader.items():
            if item is None:
                yield None
            else:
                tp, offset, event = item
                yield (tp, offset), event

    async def ack(self, where: Any) -> None:
        tp, offset = where
        self.reader.ack(tp, offset)

    def position(self) -> Position:
        return self.reader.positions()
