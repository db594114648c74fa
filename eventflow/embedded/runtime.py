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
import heapq
import logging
import os
import socket
import time
from collections import Counter, deque
from dataclasses import dataclass

from .. import metrics
from ..core import INTERNAL, Effects, Engine
from ..definitions import App
from ..errors import EventError
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
)
from ..execution import Executor
from ..lifecycle import Lifecycle
from ..schedule import run_schedule
from ..settings import Settings
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


class EmbeddedRuntime(Lifecycle):
    """The whole of eventflow in one process; `async with` starts and stops it."""

    def __init__(self, app: App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.store = Store(settings.database)
        # Workers share this process: they cannot be lost alone, so no heartbeats are needed.
        self.engine = Engine(
            app, default_timeout_s=settings.default_timeout_s, source=settings.source
        )
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.executor = Executor(
            app,
            worker=self.worker_id,
            max_metadata_bytes=settings.max_metadata_bytes,
            source=settings.source,
        )
        self._inbox: asyncio.Queue[_Item] = asyncio.Queue()
        self._work: deque[TaskRequestedData | CheckRequestedData] = deque()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self._wakes: list[tuple[float, str]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._idle = asyncio.Event()
        self.ready = asyncio.Event()  # state loaded, processing
        self._applying = False
        self._started = False

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        await self.store.start()
        await self.store.load(self.engine)
        self._tasks.append(asyncio.create_task(self._process(), name="eventflow processor"))
        for schedule in self.app.schedules.values():
            clock = run_schedule(schedule, self._tick_clock)
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
        """Hand an event in; returns once it is durably logged and decided on."""
        return await self._wait(event, None, "publish")

    async def publish_raw(self, raw: bytes, origin: str = "raw") -> Accepted:
        """Bytes from an outside producer; invalid ones land in the dead-letter log."""
        try:
            event = decode(raw, max_metadata_bytes=self.settings.max_metadata_bytes)
        except EventError as e:
            letter = dead_letter(raw, e.reason, origin=origin, source=self.settings.source)
            await self._wait(letter, None, origin)
            return Accepted(letter, e.reason)
        return await self._wait(event, raw, origin)

    async def emit(
        self,
        dataset: str,
        partition: str = "",
        *,
        version: int | None = None,
        metadata: dict[str, object] | None = None,
    ) -> Accepted:
        data = DatasetProducedData(
            dataset=dataset, partition=partition,
            version=version if version is not None else time.time_ns() // 1000,
            metadata=metadata or {},
        )  # fmt: skip
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

    def _wait(self, event: Event, raw: bytes | None, origin: str) -> asyncio.Future[Accepted]:
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._idle.clear()
        self._inbox.put_nowait((event, future, raw, origin))
        return future

    def _submit(self, event: Event) -> None:
        """From our own workers: nobody waits for the answer."""
        self._idle.clear()
        self._inbox.put_nowait((event, None, None, "worker"))

    # -- processing ------------------------------------------------------------------------------
    async def _process(self) -> None:
        while True:
            batch = [await self._inbox.get()]
            while not self._inbox.empty() and len(batch) < 2000:
                batch.append(self._inbox.get_nowait())
            self._applying = True
            try:
                await self._apply(batch)
            except Exception as e:
                log.exception("processing failed; failing the batch")
                for _, future, _, _ in batch:
                    if future is not None and not future.done():
                        future.set_exception(e)
                raise
            finally:
                self._applying = False
            self._check_idle()

    async def _apply(self, batch: list[_Item]) -> None:
        now = time.time()
        began = time.perf_counter()
        decided: Counter[str] = Counter()
        logged: list[Event] = []
        total = Effects()
        results: list[tuple[asyncio.Future[Accepted], Accepted]] = []
        pending: deque[tuple[Event | Tick, asyncio.Future[Accepted] | None, bytes | None, str]]
        pending = deque(batch)
        while pending:
            item, future, raw, origin = pending.popleft()
            if isinstance(item, Tick):
                fx = self.engine.tick(item.pipeline, now)
            else:
                try:
                    fx = self.engine.handle(item, now)
                    logged.append(item)
                    if isinstance(item, DeadLetter):
                        metrics.DEAD_LETTERS.inc()  # refused before it got here
                    else:
                        decided[item.type] += 1
                    accepted = Accepted(item)
                except EventError as e:
                    metrics.DEAD_LETTERS.inc()
                    letter = dead_letter(
                        raw if raw is not None else encode(item), e.reason, origin=origin,
                        source=self.settings.source,
                    )  # fmt: skip
                    logged.append(letter)
                    accepted = Accepted(letter, e.reason)
                    fx = Effects()
                if future is not None:
                    results.append((future, accepted))
            for out in fx.events:
                if isinstance(out, INTERNAL):
                    pending.append((out, None, None, "engine"))
                else:
                    logged.append(out)
            fx.events = [e for e in fx.events if isinstance(e, CheckRequested)]
            total.merge(fx)
        committing = time.perf_counter()
        await self.store.commit(logged, self.engine, total.dirty_partitions, total.dirty_datasets)
        metrics.DECIDE.observe(committing - began)
        metrics.COMMIT.observe(time.perf_counter() - committing)
        metrics.count(decided)
        for future, accepted in results:
            if not future.done():
                future.set_result(accepted)
        for event in logged:
            for queue in list(self._subscribers):
                try:
                    queue.put_nowait(event)
                except asyncio.QueueFull:
                    log.warning("a subscriber fell behind and was cut off")
                    self._subscribers.discard(queue)
        self._carry_out(total)

    def _carry_out(self, fx: Effects) -> None:
        for run_id in fx.cancel:
            running = self._running.get(run_id)
            if running is not None and not running.done():
                running.cancel()
        self._work += fx.dispatch
        self._work += [e.data for e in fx.events if isinstance(e, CheckRequested)]
        self._start_work()
        for at, pipeline in fx.wakes:
            heapq.heappush(self._wakes, (at, pipeline))
        self._arm_timer()

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._wakes:
            delay = max(0.0, self._wakes[0][0] - time.time())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = time.time()
        due: set[str] = set()
        while self._wakes and self._wakes[0][0] <= now:
            due.add(heapq.heappop(self._wakes)[1])
        for pipeline in sorted(due):
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
