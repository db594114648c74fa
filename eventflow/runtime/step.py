"""One processing step, shared by both runtimes: decode, decide, follow, route, dead-letter.

A runtime hands a batch of inputs to `Step.run` and gets an `Outcome` back: every event the step
decided or made, the messages to deliver with their destination, the merged effects and what
became of each input. Nothing here does I/O: the runtime commits the outcome through its state
log (SQLite file, or Kafka transaction with changelog) and only then delivers it.

`follow=True` (embedded) decides the engine's own routed outputs in the same step, so a cascade
hop costs no extra commit. On Kafka a step follows those whose state its own stream task holds
(`local`) and publishes them as echoes, which that task skips when it reads them back; the others
go to their topic, where the stream task owning their key decides them.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import metrics
from ..core import Effects, Engine, Refused, codec, is_followed
from ..core.state import TaskRun
from ..errors import EventError
from ..events import (
    DatasetProduced,
    DatasetProducedData,
    DeadLetter,
    Event,
    PoolReleased,
    PoolReleasedData,
    TaskLog,
    TaskRequested,
    TaskRequestedData,
    dead_letter,
    decode,
    encode,
    from_binary,
    is_binary,
)
from ..execution import one_line
from ..topics import destination
from ..tracing import Trace, Tracer, stamp

if TYPE_CHECKING:
    from .ports import StateLog


@dataclass(frozen=True)
class Tick:
    """Time for a pipeline's timers. `heard_since`: see `Runs.tick`."""

    pipeline: str
    heard_since: float | None = None


@dataclass
class Inbound:
    """One input of a step; `refused` is why it is dead-lettered without being decided."""

    item: Event | Tick | None
    origin: str
    raw: bytes | None = None
    refused: str | None = None


@dataclass(frozen=True)
class Receipt:
    """What became of one input: the event as logged, and the reason if it was refused."""

    event: Event
    dead_letter: str | None = None

    @property
    def accepted(self) -> bool:
        return self.dead_letter is None


#: (topic, record key, event): where a message goes, as `eventflow.topics` says.
Message = tuple[str, str, Event]


@dataclass
class Outcome:
    """A step decided in memory, not yet committed."""

    #: Every event of the step in order: inputs decided, events made, dead letters.
    events: list[Event] = field(default_factory=list)
    #: What the step sends on, with its destination.
    messages: list[Message] = field(default_factory=list)
    #: What it decided itself that was on its way to a topic (Kafka): published, not decided.
    echoes: list[Message] = field(default_factory=list)
    effects: Effects = field(default_factory=Effects)
    #: Per input index (followed outputs excluded).
    receipts: dict[int, Receipt] = field(default_factory=dict)
    decided: Counter[str] = field(default_factory=Counter)
    dead_letters: int = 0
    #: Trace context of the task requests decided, by run id (their `traceparent`).
    traces: dict[str, Trace] = field(default_factory=dict)

    def record(self, decide_s: float, commit_s: float) -> None:
        """Metrics of a committed step."""
        metrics.DECIDE.observe(decide_s)
        metrics.COMMIT.observe(commit_s)
        metrics.count(self.decided)
        metrics.DEAD_LETTERS.inc(self.dead_letters)


class Undecidable(Exception):
    """Deciding input `index` raised something other than `EventError`: the engine's state may
    be half-changed, so the runtime restores it and refuses that input next time."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(f"input {index}: {error!r}")
        self.index = index
        self.error = error


def admit(
    raw: bytes,
    origin: str,
    *,
    max_metadata_bytes: int,
    allowed: Callable[[Event], None] | None = None,
    headers: Sequence[tuple[str, bytes]] = (),
) -> Inbound:
    """Bytes from outside, decoded; `allowed` raises `EventError` for an event that may not
    arrive this way. Whatever fails becomes a refused input (a dead letter with the reason).
    With CloudEvents binary-mode `headers`, `raw` is the data, and the event is kept (and
    refused) in its structured form."""
    try:
        if is_binary(headers):
            raw = from_binary(headers, raw)
        event = decode(raw, max_metadata_bytes=max_metadata_bytes)
        if headers:
            event = stamp(event, _header_trace(headers))
        if allowed is not None:
            allowed(event)
    except EventError as e:
        return Inbound(None, origin, raw, refused=e.reason)
    except Exception as e:  # a decoder bug must not stop the service
        return Inbound(None, origin, raw, refused=f"could not be decoded: {one_line(e)}")
    return Inbound(event, origin, raw)


def _header_trace(headers: Sequence[tuple[str, bytes]]) -> Trace | None:
    """A Kafka record's `traceparent` header, as OpenTelemetry's Kafka instrumentations set
    it (a binary-mode event has it as `ce_traceparent`, an attribute already)."""
    found = {k: v for k, v in headers if k in ("traceparent", "tracestate")}
    if "traceparent" not in found:
        return None
    state = found.get("tracestate")
    return Trace.parse(
        found["traceparent"].decode("latin-1"), state.decode("latin-1") if state else None
    )


class Step:
    def __init__(
        self,
        engine: Engine,
        *,
        source: str,
        follow: bool,
        page_in: Callable[[Event], Awaitable[None]] | None = None,
        prefetch: Callable[[list[Event]], Awaitable[None]] | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        """`page_in` brings the state an event needs into the engine before it is decided
        (the embedded runtime keeps idle state in its file only), `prefetch` what a whole
        step's inputs need, before the first is decided; `tracer` records the `publish` and
        `decide` spans (None: trace context is only carried on)."""
        self.engine = engine
        self.source = source
        self.follow = follow
        self.page_in = page_in
        self.prefetch = prefetch
        self.tracer = tracer

    async def process(
        self,
        inputs: Sequence[Inbound],
        now: float,
        log: StateLog,
        local: Callable[[Event], bool] | None = None,
        decided: Callable[[Outcome], Awaitable[None]] | None = None,
    ) -> Outcome:
        """Decide, then commit through `log` the events and the state records that changed.
        Raises `Undecidable` before anything is committed, or what `log` raises. `decided` is
        awaited with the outcome before its commit is prepared (the embedded runtime starts
        bodies there)."""
        began = time.perf_counter()
        outcome = await self.run(inputs, now, local)
        deciding = time.perf_counter() - began  # not the first turns of bodies `decided` starts
        if decided is not None:
            await decided(outcome)
        committing = time.perf_counter()
        await log.commit(outcome, codec.changes(self.engine, outcome.effects))
        outcome.record(deciding, time.perf_counter() - committing)
        return outcome

    async def run(
        self, inputs: Sequence[Inbound], now: float, local: Callable[[Event], bool] | None = None
    ) -> Outcome:
        """Decide every input in order; raises `Undecidable` naming the input whose decision
        failed unexpectedly (the caller restores the state, then refuses that input). `local`
        picks the routed outputs to follow as echoes (Kafka; embedded follows all of them)."""
        out = Outcome()
        fx = out.effects
        if self.prefetch is not None:
            await self.prefetch(
                [i.item for i in inputs if isinstance(i.item, Event) and i.refused is None]
            )
        pending: deque[tuple[int, Inbound, bool]] = deque(
            (i, inbound, False) for i, inbound in enumerate(inputs)
        )
        while pending:
            index, inbound, followed = pending.popleft()
            item = inbound.item
            if inbound.refused is not None:
                if not isinstance(item, Tick):
                    out.receipts[index] = self._refuse(out, inbound, inbound.refused)
                continue
            if self.page_in is not None and isinstance(item, Event):
                await self.page_in(item)
            trace = None if isinstance(item, Tick) or item is None else Trace.of(item)
            began = time.time_ns() if self.tracer is not None else 0
            try:
                if isinstance(item, Tick):
                    decided = self.engine.tick(item.pipeline, now, item.heard_since)
                elif item is not None:
                    if self.tracer is not None and not followed and _announced(item):
                        trace = self._publish_span(item, trace)
                    decided = self.engine.handle(item, now)
                    out.events.append(item)
                    if isinstance(item, DeadLetter | TaskLog):
                        # Kept and passed on, not decided: a refusal made before it got here,
                        # or lines a task logged.
                        out.dead_letters += isinstance(item, DeadLetter)
                        out.messages.append(self.message(item))
                    else:
                        out.decided[item.type] += 1
                    if not followed:
                        out.receipts[index] = Receipt(item)
                else:
                    continue
            except EventError as e:
                receipt = self._refuse(out, inbound, e.reason)
                if not followed:
                    out.receipts[index] = receipt
                if not isinstance(e, Refused):
                    continue
                decided = e.effects
            except Exception as e:
                raise Undecidable(index, e) from e
            if self.tracer is not None and (decided.dispatch or decided.pool_requests):
                trace = self._decide_span(item, trace, decided, began)
            if trace is not None:
                decided.events = [trace.stamp(e) for e in decided.events]
                decided.checks = [trace.stamp(c) for c in decided.checks]
            self._trace_requests(out, decided, trace)
            for event in decided.events:
                if is_followed(event) and (self.follow or (local is not None and local(event))):
                    pending.append((index, Inbound(event, "engine"), True))
                    if not self.follow:
                        out.echoes.append(self.message(event))
                else:
                    out.events.append(event)
                    out.messages.append(self.message(event))
            for request in decided.checks:
                out.events.append(request)
                out.messages.append(self.message(request))
            decided.events = []
            fx.merge(decided)
        out.messages += self.requests(fx, out)
        return out

    def requests(self, fx: Effects, out: Outcome | None = None) -> list[Message]:
        """Task requests to the workers, and pooled requests and releases to the pool stage."""
        messages: list[Message] = []
        for request in fx.dispatch:
            messages.append(self.message(self._requested(request, out)))
        for request in fx.pool_requests:
            messages.append(("eventflow.pools", request.pool or "", self._requested(request, out)))
        for run_id, pool in fx.pool_releases:
            data = PoolReleasedData(run_id=run_id, pool=pool)
            messages.append(("eventflow.pools", pool, PoolReleased.of(data, source=self.source)))
        return messages

    def _requested(self, request: TaskRequestedData, out: Outcome | None = None) -> Event:
        event = TaskRequested.of(request, source=self.source, correlationid=request.pipeline_run_id)
        trace = out.traces.get(request.run_id) if out is not None else None
        return stamp(event, trace or self.stored_trace(request))

    def stored_trace(self, request: TaskRequestedData) -> Trace | None:
        """The trace context the engine's state keeps for a task run (its first request's),
        so retries and requests sent again after a restart stay in its trace."""
        run = self._task_run(request)
        if run is None or run.trace is None:
            return None
        return Trace(run.trace, run.tracestate)

    def _task_run(self, request: TaskRequestedData) -> TaskRun | None:
        """The state of the task run `request` is for, where this engine holds it (the pool
        stage on Kafka may not)."""
        pst = self.engine.pipelines.get(request.pipeline)
        part = pst.partitions.get(request.partition) if pst is not None else None
        run = part.runs.get(request.task) if part is not None else None
        return run if run is not None and run.run_id == request.run_id else None

    def _keep(self, request: TaskRequestedData, trace: Trace) -> None:
        run = self._task_run(request)
        if run is not None:
            run.trace, run.tracestate = trace.parent, trace.state

    def _trace_requests(self, out: Outcome, decided: Effects, trace: Trace | None) -> None:
        """Requests decided from an input with a trace context carry it, and their task run
        keeps it for its retries."""
        if trace is None:
            return
        for request in (*decided.dispatch, *decided.pool_requests):
            out.traces[request.run_id] = trace
            self._keep(request, trace)

    def _publish_span(self, item: Event, trace: Trace | None) -> Trace:
        """The edge: an announcement from outside starts its trace here unless it carries
        one, and what it sets going is the `publish` span's child."""
        assert self.tracer is not None and isinstance(item.data, DatasetProducedData)
        data = item.data
        with self.tracer.span(
            "publish", trace, dataset=data.dataset, partition=data.partition, event=item.id
        ) as span:
            return span.trace

    def _decide_span(
        self, item: Event | Tick | None, trace: Trace | None, decided: Effects, began: int
    ) -> Trace | None:
        """A `decide` span for a decision that requests task runs. A tick (retries, held
        decisions) has no context of its own: its requests keep their task run's."""
        assert self.tracer is not None
        requests = [*decided.dispatch, *decided.pool_requests]
        if isinstance(item, Tick):
            for request in requests:
                parent = self.stored_trace(request)
                if parent is not None:
                    with self.tracer.span(
                        "decide", parent, start=began, **_decided([request], item.pipeline)
                    ) as span:
                        self._keep(request, span.trace)
            return None
        first = requests[0]
        with self.tracer.span(
            "decide", trace, start=began, **_decided(requests, first.pipeline)
        ) as span:
            return span.trace

    def _refuse(self, out: Outcome, inbound: Inbound, reason: str) -> Receipt:
        raw = inbound.raw
        if raw is None:
            assert isinstance(inbound.item, Event)
            raw = encode(inbound.item)
        letter = dead_letter(raw, reason, origin=inbound.origin, source=self.source)
        out.events.append(letter)
        out.messages.append(self.message(letter))
        out.dead_letters += 1
        return Receipt(letter, reason)

    @staticmethod
    def message(event: Event) -> Message:
        topic, key = destination(event)
        return topic, key, event


def _announced(event: Event) -> bool:
    """A dataset version from outside: where a trace starts (or enters) eventflow."""
    return isinstance(event, DatasetProduced) and event.data.producer is None


def _decided(requests: Sequence[TaskRequestedData], pipeline: str) -> dict[str, str | int]:
    first = requests[0]
    return {
        "pipeline": pipeline,
        "partition": first.partition,
        "pipeline_run_id": first.pipeline_run_id,
        "tasks": ",".join(sorted({r.task for r in requests})),
        "requests": len(requests),
    }
