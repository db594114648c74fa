"""Coordinator, workers, schedules and bus in one process, with state in a SQLite file.

Events enter an inbox. One processing task takes everything waiting, runs the engine's decisions
(following the engine's own outputs, so a cascade step is a single pass), commits the events and
the state they changed in one SQLite transaction, and only then carries out the effects:
requests to workers, outcomes to subscribers, timers. Delivery is an asyncio queue hand-off, so
nothing polls. A restart loads the state and sends again what was in flight.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import metrics
from ..core import Effects, Engine, is_followed
from ..definitions import App
from ..errors import EventError, NotRunning, StorageError
from ..events import (
    CheckRequested,
    CheckRequestedData,
    DatasetProduced,
    DatasetProducedData,
    DeadLetter,
    Event,
    TaskRequestedData,
    dead_letter,
    decode,
    encode,
    is_external,
)
from ..execution import Executor, one_line
from ..lifecycle import Lifecycle
from ..runtime.clock import Cancellable, Clock, SystemClock, micros
from ..schedule import run_schedule
from ..settings import Settings
from ..timers import Timers
from .paging import Pager
from .store import Store

log = logging.getLogger("eventflow.embedded")


@dataclass(frozen=True)
class Tick:
    pipeline: str


@dataclass
class Accepted:
    """What became of one published event."""

    event: Event
    dead_letter: str | None = None


_Item = tuple[Event | Tick, "asyncio.Future[Accepted] | None", bytes | None, str]


@dataclass
class _Plan:
    """A batch decided in memory, not yet committed."""

    logged: list[Event] = field(default_factory=list)
    effects: Effects = field(default_factory=Effects)
    results: list[tuple[asyncio.Future[Accepted], Accepted]] = field(default_factory=list)
    decided: Counter[str] = field(default_factory=Counter)
    dead_letters: int = 0


class _Undecidable(Exception):
    """Deciding input `index` of a batch raised something other than `EventError`."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(f"input {index}: {error!r}")
        self.index = index
        self.error = error


class EmbeddedRuntime(Lifecycle):
    """The whole of eventflow in one process; `async with` starts and stops it. `clock` is
    where timers, schedules, timeouts and default versions read the time (the real one unless a
    test passes `eventflow.testing.ManualClock`)."""

    def __init__(self, app: App, settings: Settings, *, clock: Clock | None = None) -> None:
        self.app = app
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.store = Store(settings.database)
        # Workers share this process: they cannot be lost alone, so no heartbeats are needed.
        self.engine = Engine(
            app, default_timeout_s=settings.default_timeout_s, source=settings.source
        )
        self.pager = Pager(self.engine, self.store, settings.state_cache)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.executor = Executor(
            app,
            worker=self.worker_id,
            max_metadata_bytes=settings.max_metadata_bytes,
            source=settings.source,
            clock=self.clock,
        )
        self._inbox: asyncio.Queue[_Item] = asyncio.Queue()
        self._work: deque[TaskRequestedData | CheckRequestedData] = deque()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self._timers = Timers()
        self._timer: Cancellable | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._idle = asyncio.Event()
        self.ready = asyncio.Event()  # state loaded, processing
        self.failed = asyncio.Event()  # the processor died; `error` says why
        self.error: BaseException | None = None
        self._applying = False
        self._started = False
        self._closed = False  # stopped after running: nothing will take events any more
        self._commit_failures = 0
        self._next_trim = 0.0

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the store and load the state; a failed start leaves nothing open and may be
        tried again."""
        if self._started:
            return
        try:
            await self.store.start()
            self.engine.reset()
            await self.store.load(self.engine)
        except BaseException:
            await self.store.stop()
            raise
        self._started = True
        self._closed = False
        self.failed.clear()
        self.error = None
        processor = asyncio.create_task(self._process(), name="eventflow processor")
        self._tasks.append(processor)
        for schedule in self.app.schedules.values():
            clock = run_schedule(schedule, self._tick_clock, self.clock)
            self._tasks.append(asyncio.create_task(clock, name="eventflow clock"))
        recovered = self.engine.recover()
        if recovered.dispatch:
            log.info("recovered %d task runs in flight", len(recovered.dispatch))
        self._carry_out(recovered)
        self._check_idle()
        self.ready.set()

    async def stop(self) -> None:
        """Stop processing; runs in flight stay recorded and resume at the next start."""
        if not self._started:
            return
        self._started = False
        self._closed = True
        self.ready.clear()
        if self._timer is not None:
            self._timer.cancel()
        running = list(self._running.values())
        for task in [*self._tasks, *running]:
            task.cancel()
        await asyncio.gather(*self._tasks, *running, return_exceptions=True)
        self._tasks.clear()
        self._running.clear()
        await self.store.stop()

    # -- the public surface ----------------------------------------------------------------------
    async def publish(self, event: Event) -> Accepted:
        """Hand an event in; returns once it is durably logged and decided on. Raises
        `StorageError` if it could not be logged, `NotRunning` if the instance has failed."""
        return await self._wait(event, None, "publish")

    async def publish_raw(
        self, raw: bytes, origin: str = "raw", *, allowed: Callable[[Event], bool] | None = None
    ) -> Accepted:
        """Bytes from an outside producer; invalid ones land in the dead-letter log, and so do
        events that `allowed` refuses (by default only dataset announcements are allowed: task,
        check, pool and run events are eventflow's own)."""
        allowed = allowed or is_external
        try:
            event = decode(raw, max_metadata_bytes=self.settings.max_metadata_bytes)
        except EventError as e:
            return await self.refuse(raw, e.reason, origin)
        except Exception as e:  # a decoder bug must not escape to the caller's connection
            return await self.refuse(raw, f"could not be decoded: {one_line(e)}", origin)
        if not allowed(event):
            producer = isinstance(event, DatasetProduced) and event.data.producer is not None
            reason = f"{event.type} is emitted by eventflow itself, not by publishers" + (
                " (a dataset version claimed as a task run's output)" if producer else ""
            )
            return await self.refuse(raw, reason, origin)
        return await self._wait(event, raw, origin)

    async def refuse(self, raw: bytes, reason: str, origin: str) -> Accepted:
        """Log input that will not be decided on as a dead letter with its reason."""
        letter = dead_letter(raw, reason, origin=origin, source=self.settings.source)
        await self._wait(letter, None, origin)
        return Accepted(letter, reason)

    async def emit(
        self,
        dataset: str,
        partition: str = "",
        *,
        version: int | None = None,
        metadata: dict[str, object] | None = None,
    ) -> Accepted:
        data = DatasetProducedData(
            dataset=dataset,
            partition=partition,
            version=version if version is not None else micros(self.clock),
            metadata=metadata or {},
        )
        return await self.publish(DatasetProduced.of(data, source=self.settings.source))

    def subscribe(self) -> asyncio.Queue[Event]:
        """Every event committed from now on (bounded; a subscriber that falls behind is cut)."""
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=100_000)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self._subscribers.discard(queue)

    async def wait_idle(self) -> None:
        """Until nothing is in flight: no run in progress, no event or task waiting."""
        await self._idle.wait()

    def settled(self) -> bool:
        """Every input so far decided, committed and carried out: what remains are the bodies
        still running (`bodies`) and the timers. A manual clock moves on only when settled."""
        return not self._applying and self._inbox.empty() and not self._work

    def bodies(self) -> list[asyncio.Task[None]]:
        """The task and check bodies running now."""
        return list(self._running.values())

    def _wait(self, event: Event, raw: bytes | None, origin: str) -> asyncio.Future[Accepted]:
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        if self.failed.is_set() or self._closed:
            why = f": {one_line(self.error)}" if self.error is not None else ""
            future.set_exception(NotRunning(f"the eventflow instance is not running{why}"))
            return future
        self._idle.clear()
        self._inbox.put_nowait((event, future, raw, origin))
        return future

    def _submit(self, event: Event) -> None:
        """From our own workers: nobody waits for the answer."""
        self._idle.clear()
        self._inbox.put_nowait((event, None, None, "worker"))

    # -- processing ------------------------------------------------------------------------------
    async def _process(self) -> None:
        try:
            while True:
                batch = [await self._inbox.get()]
                while not self._inbox.empty() and len(batch) < 2000:
                    batch.append(self._inbox.get_nowait())
                self._applying = True
                try:
                    await self._apply(batch)
                finally:
                    self._applying = False
                self._check_idle()
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            log.critical("processing stopped", exc_info=e)
            self._fail(e, batch)
            raise

    def _fail(self, error: BaseException, batch: list[_Item]) -> None:
        """The processor is gone: nobody may wait for it any more."""
        self.error = error
        self.failed.set()
        dead = NotRunning(f"the eventflow instance stopped processing: {one_line(error)}")
        while not self._inbox.empty():
            batch.append(self._inbox.get_nowait())
        for _, future, _, _ in batch:
            if future is not None and not future.done():
                future.set_exception(dead)

    async def _apply(self, batch: list[_Item]) -> None:
        now = self.clock.time()
        began = time.perf_counter()
        poison: dict[int, str] = {}
        try:
            while True:
                try:
                    plan = await self._decide(batch, now, poison)
                    break
                except _Undecidable as e:
                    # Deciding left the state half-changed: read it back, refuse that input.
                    log.error("input %d of a batch could not be decided", e.index, exc_info=e.error)
                    poison[e.index] = f"could not be decided: {one_line(e.error)}"
                    await self._reload()
            committing = time.perf_counter()
            fx = plan.effects
            await self.store.commit(
                plan.logged, self.engine, fx.dirty_partitions, fx.dirty_datasets
            )
        except StorageError as e:
            await self._not_committed(batch, e)
            return
        self.pager.touched(fx.dirty_partitions, fx.dirty_datasets)
        self.pager.evict()
        self._commit_failures = 0
        metrics.DECIDE.observe(committing - began)
        metrics.COMMIT.observe(time.perf_counter() - committing)
        metrics.count(plan.decided)
        metrics.DEAD_LETTERS.inc(plan.dead_letters)
        for future, accepted in plan.results:
            if not future.done():
                future.set_result(accepted)
        for event in plan.logged:
            for queue in list(self._subscribers):
                try:
                    queue.put_nowait(event)
                except asyncio.QueueFull:
                    log.warning("a subscriber fell behind and was cut off")
                    self._subscribers.discard(queue)
        self._carry_out(fx)
        await self._trim_log(now)

    async def _decide(self, batch: list[_Item], now: float, poison: dict[int, str]) -> _Plan:
        """Every decision of a batch, in memory; raises `_Undecidable` naming the input whose
        decision failed unexpectedly."""
        plan = _Plan()
        total = plan.effects
        pending: deque[tuple[int, Event | Tick, bytes | None, str]] = deque(
            (i, item, raw, origin) for i, (item, _, raw, origin) in enumerate(batch)
        )
        accepted: dict[int, Accepted] = {}
        while pending:
            index, item, raw, origin = pending.popleft()
            followed = origin == "engine"
            if index in poison and not followed:
                if isinstance(item, Tick):
                    continue
                letter = self._refuse(item, raw, poison[index], origin)
                plan.logged.append(letter)
                plan.dead_letters += 1
                accepted[index] = Accepted(letter, poison[index])
                continue
            if not isinstance(item, Tick):
                await self.pager.page_in(item)
            try:
                if isinstance(item, Tick):
                    fx = self.engine.tick(item.pipeline, now)
                else:
                    fx = self.engine.handle(item, now)
                    plan.logged.append(item)
                    if isinstance(item, DeadLetter):
                        plan.dead_letters += 1  # refused before it got here
                    else:
                        plan.decided[item.type] += 1
                    if not followed:
                        accepted[index] = Accepted(item)
            except EventError as e:
                assert not isinstance(item, Tick)
                letter = self._refuse(item, raw, e.reason, origin)
                plan.logged.append(letter)
                plan.dead_letters += 1
                if not followed:
                    accepted[index] = Accepted(letter, e.reason)
                fx = Effects()
            except Exception as e:
                raise _Undecidable(index, e) from e
            for out in fx.events:
                if is_followed(out):
                    pending.append((index, out, None, "engine"))
                else:
                    plan.logged.append(out)
            fx.events = [e for e in fx.events if isinstance(e, CheckRequested)]
            total.merge(fx)
        for index, (_, future, _, _) in enumerate(batch):
            if future is not None and index in accepted:
                plan.results.append((future, accepted[index]))
        return plan

    def _refuse(self, item: Event, raw: bytes | None, reason: str, origin: str) -> Event:
        return dead_letter(
            raw if raw is not None else encode(item),
            reason,
            origin=origin,
            source=self.settings.source,
        )

    async def _reload(self) -> None:
        """Put the engine's state back as the file has it, keeping what is already running."""
        self.engine.reset()
        self.pager.forget()
        await self.store.load(self.engine)
        recovered = self.engine.recover()
        known = set(self._running) | {w.run_id for w in self._work}
        recovered.dispatch = [r for r in recovered.dispatch if r.run_id not in known]
        recovered.events = [
            e
            for e in recovered.events
            if isinstance(e, CheckRequested) and e.data.run_id not in known
        ]
        self._carry_out(recovered)

    async def _not_committed(self, batch: list[_Item], error: StorageError) -> None:
        """Nothing of the batch is durable. Publishers hear the error and may try again; our
        own workers' results and timers are kept and tried again once the store takes writes."""
        self._commit_failures += 1
        log.error("commit failed (%d in a row): %s", self._commit_failures, error)
        await self._reload()
        for _, future, _, _ in batch:
            if future is not None and not future.done():
                future.set_exception(error)
        kept = [item for item in batch if item[1] is None]
        if kept:
            await asyncio.sleep(min(5.0, 0.05 * 2 ** min(self._commit_failures, 7)))
            for item in kept:
                self._inbox.put_nowait(item)

    async def _trim_log(self, now: float) -> None:
        """Retention of the event log, once a minute at most (the state is kept whole)."""
        if now < self._next_trim:
            return
        self._next_trim = now + 60.0
        try:
            await self.store.trim(now - self.settings.event_log_retention_s)
        except StorageError as e:
            log.warning("event log retention skipped: %s", e)

    def _carry_out(self, fx: Effects) -> None:
        for run_id in fx.cancel:
            running = self._running.get(run_id)
            if running is not None and not running.done():
                running.cancel()
        self._work += fx.dispatch
        self._work += [e.data for e in fx.events if isinstance(e, CheckRequested)]
        self._start_work()
        changed = [self._timers.add(at, pipeline) for at, pipeline in fx.wakes]  # every one
        if any(changed):
            self._arm_timer()

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        at = self._timers.next_at()
        if at is not None:
            self._timer = self.clock.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        for pipeline in self._timers.due(self.clock.time()):
            self._inbox.put_nowait((Tick(pipeline), None, None, "timer"))
        self._arm_timer()

    def _check_idle(self) -> None:
        busy = (
            self._applying
            or not self._inbox.empty()
            or bool(self._work)
            or bool(self._running)
            or not self.engine.idle()
        )
        if busy:
            self._idle.clear()
        else:
            self._idle.set()

    # -- workers ---------------------------------------------------------------------------------
    def _start_work(self) -> None:
        """One task per run, up to `concurrency` at once; the rest wait in `_work`."""
        while self._work and len(self._running) < self.settings.concurrency and self._started:
            request = self._work.popleft()
            body = asyncio.create_task(self._execute(request), name=f"run {request.run_id}")
            self._running[request.run_id] = body
            body.add_done_callback(functools.partial(self._ended, request.run_id))

    def _ended(self, run_id: str, body: asyncio.Task[None]) -> None:
        if self._running.get(run_id) is body:
            del self._running[run_id]
        self._start_work()
        self._check_idle()

    async def _execute(self, request: TaskRequestedData | CheckRequestedData) -> None:
        if isinstance(request, CheckRequestedData):
            result = await self.executor.run_check(request)
        else:
            result = await self.executor.run_task(request, self._report)
        self._submit(result)

    async def _report(self, event: Event) -> None:
        self._submit(event)

    async def _tick_clock(
        self, dataset: str, partition: str, version: int, metadata: dict[str, object]
    ) -> None:
        await self.emit(dataset, partition, version=version, metadata=metadata)
