"""The port the HTTP API and the operator's commands talk to, one adapter per runtime.

An operator sees the same things and acts the same way on a dev instance and on a Kafka
deployment: the API is written once against `Operations`; `embedded.py` serves it from the
runtime in the same process, `kafka.py` from the topics.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..core import Engine, Explanation
from ..core.state import PipelineState
from ..definitions import App
from ..events import Event
from ..history import HistoryStore
from ..lifecycle import Service
from ..openlineage.intake import Receiver
from ..settings import Settings


@dataclass(frozen=True)
class Submitted:
    """What became of an event handed in: its id, why it was refused if it was, and whether it
    was decided before the answer (on Kafka a coordinator decides a moment later)."""

    id: str
    dead_letter: str | None = None
    decided: bool = True


class Feed:
    """Live events from the moment it was made: `async for event in feed`; `close()` when
    done. Ends if its reader fell too far behind and was cut off (a None in the queue)."""

    def __init__(self, queue: asyncio.Queue[Any], close: Callable[[], None]) -> None:
        self._queue = queue
        self.close = close

    def __aiter__(self) -> Feed:
        return self

    async def __anext__(self) -> Event:
        event: Event | None = await self._queue.get()
        if event is None:
            self.close()
            raise StopAsyncIteration
        return event


def selected(
    event: Event,
    *,
    types: Sequence[str] | None = None,
    pipeline: str | None = None,
    dataset: str | None = None,
    partition: str | None = None,
) -> bool:
    """Whether a live event passes a reader's filters: of one of `types`, of `pipeline`,
    naming `dataset` (its own, its target's, an input or an output), of `partition`."""
    data = event.data
    if types and event.type not in types:
        return False
    if pipeline and getattr(data, "pipeline", None) != pipeline:
        return False
    if dataset and dataset not in _datasets(event):
        return False
    return partition is None or partition == _partition(event)


def _partition(event: Event) -> str | None:
    data = event.data
    found = getattr(data, "partition", None)
    if found is None:
        found = getattr(getattr(data, "target", None), "partition", None)
    return found if isinstance(found, str) else None


def _datasets(event: Event) -> set[str]:
    data = event.data
    found = {
        getattr(data, "dataset", None),
        getattr(getattr(data, "target", None), "dataset", None),
    }
    for ref in [*getattr(data, "inputs", ()), *getattr(data, "outputs", ())]:
        found.add(getattr(ref, "dataset", None))
    return {d for d in found if isinstance(d, str)}


class Fanout:
    """Live events to any number of feeds, each with its own bounded queue: a reader that
    falls this far behind is cut off rather than holding the others back.

    With `listeners` (a `HistoryStore`'s), it is one of them only while a feed is open: with
    none, the store has nobody to build events for."""

    def __init__(
        self,
        limit: int = 10_000,
        *,
        listeners: list[Callable[[Sequence[Event]], None]] | None = None,
    ) -> None:
        self.limit = limit
        self._queues: set[asyncio.Queue[Event | None]] = set()
        self._listeners = listeners

    def put_all(self, events: Sequence[Event]) -> None:
        for event in events:
            self.put(event)

    def put(self, event: Event) -> None:
        for queue in list(self._queues):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self._drop(queue)
                queue.get_nowait()  # make room for the end mark
                queue.put_nowait(None)

    def feed(self) -> Feed:
        queue: asyncio.Queue[Event | None] = asyncio.Queue(self.limit)
        if not self._queues and self._listeners is not None:
            self._listeners.append(self.put_all)
        self._queues.add(queue)
        return Feed(queue, lambda: self._drop(queue))

    def _drop(self, queue: asyncio.Queue[Event | None]) -> None:
        if queue not in self._queues:
            return
        self._queues.discard(queue)
        if not self._queues and self._listeners is not None and self.put_all in self._listeners:
            self._listeners.remove(self.put_all)


class Operations(Service):
    """A running eventflow as operators see it: its history, its live events, and what can be
    handed in."""

    name = "operations"

    def __init__(self, app: App, settings: Settings, history: HistoryStore) -> None:
        super().__init__()
        self.app = app
        self.settings = settings
        #: The projection of the event log that history queries read.
        self.history = history
        self._stored = Fanout(listeners=history.listeners)
        #: OpenLineage RunEvents in (the HTTP endpoint and the Kafka topic share its runs).
        self.lineage = Receiver(self)

    def stored(self) -> Feed:
        """Every event from the call on, once the history holds it: a page re-read on one of
        these finds what the event changed."""
        return self._stored.feed()

    @abstractmethod
    async def submit(self, event: Event) -> Submitted:
        """Hand an event in as the control socket or a signed producer would: a dataset
        announcement, or an operator's action."""

    @abstractmethod
    async def refuse(self, raw: bytes, reason: str, origin: str) -> None:
        """Record input that will not be decided on as a dead letter with `reason`."""

    @abstractmethod
    def live(self) -> Feed:
        """Every event from the call on, in the order this side learns of them."""

    @abstractmethod
    async def explain(self, pipeline: str, task: str, partition: str) -> Explanation:
        """`Engine.explain` on the state the coordinators decide on; `EventError` for an
        unknown pipeline, task or partition."""

    async def pipeline_state(self, pipeline: str) -> PipelineState:
        """A pipeline's state as the coordinators hold it (partitions may be partly paged
        out in embedded mode): for its pause and its active and waiting partitions."""
        return (await self.engine()).pipelines[pipeline]

    async def backfill_engine(self, pipeline: str) -> Engine:
        """The engine holding every partition of `pipeline`, for a backfill's dry run."""
        return await self.engine()

    @abstractmethod
    async def engine(self) -> Engine:
        """The engine holding the coordinators' state, brought up to date."""
