"""The engine, workers, schedules and bus in one process, with state in a SQLite file.

Events enter an inbox. One processing task takes everything waiting, runs the engine's decisions
(following the engine's own outputs, so a cascade step is a single pass), commits the events and
the state they changed in one SQLite transaction, and only then carries out the effects:
outcomes to subscribers, timers. Requests go to the workers as soon as they are decided, so a
body runs while its step commits; what it reports waits for that commit. Delivery is an asyncio
queue hand-off, so nothing polls. A restart loads the state and sends again what was in flight.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import NamedTuple

from ..core import Effects, Engine, Explanation
from ..definitions import App
from ..errors import EventError, NotRunning, StorageError
from ..events import (
    Action,
    BackfillPlan,
    CheckRequestedData,
    DatasetProduced,
    DatasetProducedData,
    Event,
    TaskRequestedData,
    is_external,
    pipeline_action,
    version_now,
)
from ..execution import Executor, one_line
from ..history import HistoryStore
from ..lifecycle import Service, instance_id, pause_after
from ..runtime.clock import Cancellable, Clock, SystemClock
from ..runtime.step import (
    Inbound,
    Message,
    Outcome,
    Receipt,
    Step,
    Tick,
    Undecidable,
    admit,
)
from ..schedule import run_schedule
from ..settings import Settings
from ..timers import Timers
from ..tracing import Trace, Tracer
from .history import EmbeddedProjector
from .history_process import HistoryProcess
from .paging import Pager
from .store import Store

log = logging.getLogger("eventflow.embedded")


_Item = tuple[Inbound, "asyncio.Future[Receipt] | None"]

#: Where the embedded bus hands messages to its own workers.
WORK = {"eventflow.task-requests"}
#: Seconds a failed step waits for its cancelled bodies to end (an async body may unwind slowly).
DROP_GRACE_S = 5.0


class _Held:
    """Reports of a body whose step is still committing: its start and log lines wait until the
    commit succeeded and go out before anything the body reports later (its results too), or
    are dropped if the commit failed."""

    def __init__(self, committed: asyncio.Future[bool], submit: Callable[[Event], None]) -> None:
        self.committed = committed
        self.submit = submit
        self.events: list[Event] = []

    async def report(self, event: Event) -> None:
        if self.committed.done():
            self.release()
            if self.committed.result():
                self.submit(event)
            return
        if not self.events:
            self.committed.add_done_callback(lambda _: self.release())
        self.events.append(event)

    def release(self) -> None:
        """Once the commit is done, by its callback or by whoever must report after what is
        held, whichever comes first."""
        events, self.events = self.events, []
        if self.committed.result():
            for event in events:
                self.submit(event)


class _Work(NamedTuple):
    request: TaskRequestedData | CheckRequestedData
    trace: Trace | None
    #: Whether the step that requested it committed (None: it had when delivered).
    committed: asyncio.Future[bool] | None


class EmbeddedRuntime(Service):
    """The whole of eventflow in one process; `async with` starts and stops it. `clock` is
    where timers, schedules, timeouts and default versions read the time (the real one unless a
    test passes `eventflow.testing.ManualClock`)."""

    name = "eventflow dev"

    def __init__(
        self,
        app: App,
        settings: Settings,
        *,
        clock: Clock | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        """`tracer` records spans (`eventflow.tracing`); without one, trace context that
        events carry is still carried on."""
        super().__init__()
        self.app = app
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        #: Feeds the history store (`settings.history`) from the event log, beside the loop or
        #: in a process of its own (`settings.history_process`).
        self.history: EmbeddedProjector | HistoryProcess
        if settings.history_process:
            self.history = HistoryProcess(
                settings.database,
                HistoryStore.of(settings),
                log_level=settings.log_level,
                log_format=settings.log_format,
            )
            self.store = Store(settings.database, logged=self.history.hand)
        else:
            self.history = EmbeddedProjector(settings.database, HistoryStore.of(settings))
            self.store = Store(settings.database)
        # Workers share this process: they cannot be lost alone, so no heartbeats are needed.
        self.engine = Engine(
            app, default_timeout_s=settings.default_timeout_s, source=settings.source
        )
        self.pager = Pager(self.engine, self.store, settings.state_cache)
        self.step = Step(
            self.engine,
            source=settings.source,
            follow=True,
            page_in=self.pager.page_in,
            prefetch=self.pager.prefetch,
            tracer=tracer,
        )
        self.worker_id = instance_id()
        self.executor = Executor.of(
            app, settings, worker=self.worker_id, heartbeats=False, clock=self.clock, tracer=tracer
        )
        self._inbox: asyncio.Queue[_Item] = asyncio.Queue()
        #: Requests not yet running, each with whether the step that made it committed.
        self._work: deque[_Work] = deque()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self._commits: set[asyncio.Event] = set()
        self._timers = Timers()
        self._timer: Cancellable | None = None
        self._idle = asyncio.Event()
        self._batch: list[_Item] = []  # in the processor's hands
        self._between_steps = asyncio.Event()  # cleared while a step is under way
        self._between_steps.set()
        self._closed = False  # stopped after running: nothing will take events any more
        self._commit_failures = 0
        self._next_trim = 0.0

    # -- lifecycle -------------------------------------------------------------------------------
    async def _open(self) -> None:
        """Open the store and load the state, then process."""
        await self.store.start()
        self.engine.reset()
        self.pager.forget()
        await self.store.load(self.engine)
        await self.history.start()
        self._closed = False
        self.spawn(self._process(), "eventflow processor")
        self.spawn(self.history.run(), "eventflow history projector")
        for schedule in self.app.schedules.values():
            clock = run_schedule(schedule, self._tick, self.clock, source=self.settings.source)
            self.spawn(clock, "eventflow clock")
        recovered = self.engine.recover()
        if recovered.dispatch:
            log.info("recovered %d task runs in flight", len(recovered.dispatch))
        self._recovered(recovered)
        self._check_idle()
        self.ready.set()

    async def _close(self) -> None:
        """Stop processing; runs in flight stay recorded and resume at the next start. The
        history gets what was logged before the store closes."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        # A step under way ends first: its transaction would go on in the store's thread, and
        # its publishers must hear whether it committed, not that the instance stopped.
        await self._between_steps.wait()
        await self._stop_loops()
        await self.cancel(*self._running.values())
        self._running.clear()
        try:
            await self._close_history()
        finally:
            try:
                await self.store.stop()
            finally:
                self._drop_waiting(NotRunning("the eventflow instance was stopped"))

    async def _close_history(self) -> None:
        try:
            if self.history.started:
                await self.history.flush()
        except StorageError as e:
            log.warning("history not brought up to date (the next start will): %s", e)
        finally:
            await self.history.stop()

    async def _tick(self, event: DatasetProduced) -> None:
        """A schedule's tick; one the store cannot take now is lost, as on Kafka (the next
        start produces the latest tick again)."""
        try:
            await self.publish(event)
        except StorageError as e:
            log.warning("clock tick of %s lost: %s", event.data.dataset, e)

    # -- the public surface ----------------------------------------------------------------------
    async def publish(self, event: Event) -> Receipt:
        """Hand an event in; returns once it is durably logged and decided on. Raises
        `StorageError` if it could not be logged, `NotRunning` if the instance has failed."""
        return await self._wait(Inbound(event, "publish"))

    async def publish_raw(
        self,
        raw: bytes,
        origin: str = "raw",
        *,
        allowed: Callable[[Event], bool] | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> Receipt:
        """Bytes from an outside producer; invalid ones land in the dead-letter log, and so do
        events that `allowed` refuses (by default only dataset announcements are allowed: task,
        check, pool and run events are eventflow's own). With CloudEvents binary-mode `headers`
        (`ce_` attributes, `content-type`) `raw` is the event's data, as on Kafka."""
        admitted = allowed or is_external

        def check(event: Event) -> None:
            if not admitted(event):
                producer = isinstance(event, DatasetProduced) and event.data.producer is not None
                raise EventError(
                    f"{event.type} is emitted by eventflow itself, not by publishers"
                    + (" (a dataset version claimed as a task run's output)" if producer else "")
                )

        limit = self.settings.max_metadata_bytes
        inbound = admit(raw, origin, max_metadata_bytes=limit, allowed=check, headers=headers)
        return await self._wait(inbound)

    async def refuse(self, raw: bytes, reason: str, origin: str) -> Receipt:
        """Log input that will not be decided on as a dead letter with its reason."""
        return await self._wait(Inbound(None, origin, raw, refused=reason))

    async def emit(
        self,
        dataset: str,
        partition: str = "",
        *,
        version: int | None = None,
        metadata: dict[str, object] | None = None,
    ) -> Receipt:
        """Announce a dataset version from inside the process, as `Publisher.publish` would
        from outside; `version` defaults to the time in microseconds."""
        data = DatasetProducedData(
            dataset=dataset,
            partition=partition,
            version=version if version is not None else version_now(self.clock.time()),
            metadata=metadata or {},
        )
        return await self.publish(DatasetProduced.of(data, source=self.settings.source))

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
    ) -> Receipt:
        """Carry out an operator's action (see `PipelineActionData`) as `Publisher.act` would
        from outside; `backfill` and `plan` are a backfill's id and what it covers. A refused
        action comes back with its `dead_letter` reason."""
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
        return await self.publish(event)

    async def explain(self, pipeline: str, task: str, partition: str = "") -> Explanation:
        """`Engine.explain` on this instance's state (read in from the file if idle). Raises
        `EventError` for an unknown pipeline, task or partition."""
        await self.pager.page_in_partition(pipeline, partition)
        return self.engine.explain(pipeline, task, partition)

    async def page_in_pipeline(self, pipeline: str) -> None:
        """Read every partition of `pipeline` in from the file (a backfill's dry run judges
        them all)."""
        await self.pager.page_in_pipeline(pipeline)

    def subscribe(self) -> asyncio.Queue[Event]:
        """Every event committed from now on (bounded; a subscriber that falls behind is cut)."""
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=100_000)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        """Stop filling a queue `subscribe` gave out."""
        self._subscribers.discard(queue)

    def on_commit(self) -> asyncio.Event:
        """An event set after each commit of the log, for readers that follow the log itself
        (subscriptions); `forget_commit` when done."""
        committed = asyncio.Event()
        self._commits.add(committed)
        return committed

    def forget_commit(self, committed: asyncio.Event) -> None:
        """Stop setting an event `on_commit` gave out."""
        self._commits.discard(committed)

    async def wait_idle(self) -> None:
        """Until nothing is in flight: no run in progress, no event or task waiting."""
        await self._idle.wait()

    def settled(self) -> bool:
        """Every input so far decided, committed and carried out: what remains are the bodies
        still running (`bodies`) and the timers. A manual clock moves on only when settled."""
        return self._between_steps.is_set() and self._inbox.empty() and not self._work

    def bodies(self) -> list[asyncio.Task[None]]:
        """The task and check bodies running now."""
        return list(self._running.values())

    def _wait(self, inbound: Inbound) -> asyncio.Future[Receipt]:
        future: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        if self.failed.is_set() or self._closed:
            why = f": {one_line(self.error)}" if self.error is not None else ""
            future.set_exception(NotRunning(f"the eventflow instance is not running{why}"))
            return future
        self._idle.clear()
        self._inbox.put_nowait((inbound, future))
        return future

    def _submit(self, event: Event) -> None:
        """From our own workers: nobody waits for the answer."""
        self._idle.clear()
        self._inbox.put_nowait((Inbound(event, "worker"), None))

    # -- processing ------------------------------------------------------------------------------
    async def _process(self) -> None:
        while not self._closed:
            self._batch = batch = [await self._inbox.get()]
            while not self._inbox.empty() and len(batch) < 2000:
                batch.append(self._inbox.get_nowait())
            self._between_steps.clear()
            try:
                await self._apply(batch)
            finally:
                self._between_steps.set()
            self._batch = []
            self._check_idle()

    def _failing(self, error: BaseException) -> None:
        """The processor is gone: nobody may wait for it any more."""
        self._drop_waiting(
            NotRunning(f"the eventflow instance stopped processing: {one_line(error)}")
        )

    def _drop_waiting(self, error: NotRunning) -> None:
        """Fail every publish waiting in the processor's hands or in the inbox; keep the rest
        of the inbox (our own workers' results) for a restart."""
        waiting, self._batch = list(self._batch), []
        kept: list[_Item] = []
        while not self._inbox.empty():
            item = self._inbox.get_nowait()
            (waiting if item[1] is not None else kept).append(item)
        for item in kept:
            self._inbox.put_nowait(item)
        for _, future in waiting:
            if future is not None and not future.done():
                future.set_exception(error)

    async def _apply(self, batch: list[_Item]) -> None:
        now = self.clock.time()
        inputs = [inbound for inbound, _ in batch]
        durable: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        early: list[str] = []

        async def start_bodies(outcome: Outcome) -> None:
            requested = self._deliver(outcome.messages, durable)
            if requested:
                early.extend(requested)
                # Their tasks take their first turn now, before the commit is encoded.
                await asyncio.sleep(0)

        try:
            while True:
                try:
                    outcome = await self.step.process(inputs, now, self.store, decided=start_bodies)
                    break
                except Undecidable as e:
                    # Deciding left the state half-changed: read it back, refuse that input.
                    log.error("input %d of a batch could not be decided", e.index, exc_info=e.error)
                    refused = inputs[e.index]
                    inputs[e.index] = Inbound(
                        refused.item,
                        refused.origin,
                        refused.raw,
                        refused=f"could not be decided: {one_line(e.error)}",
                    )
                    await self._reload()
        except BaseException as e:
            durable.set_result(False)
            await self._drop(early)
            if not isinstance(e, StorageError):
                raise
            await self._not_committed(batch, e)
            return
        durable.set_result(True)
        fx = outcome.effects
        self.pager.touched(fx.dirty_partitions, fx.dirty_datasets)
        self.pager.evict()
        self._commit_failures = 0
        for index, (_, future) in enumerate(batch):
            receipt = outcome.receipts.get(index)
            if future is not None and receipt is not None and not future.done():
                future.set_result(receipt)
        for event in outcome.events:
            for queue in list(self._subscribers):
                try:
                    queue.put_nowait(event)
                except asyncio.QueueFull:
                    log.warning("a subscriber fell behind and was cut off")
                    self._subscribers.discard(queue)
        for committed in self._commits:
            committed.set()
        self._carry_out(fx)
        self.history.wake()
        await self._trim_log(now)

    async def _reload(self) -> None:
        """Put the engine's state back as the file has it, keeping what is already running."""
        self.engine.reset()
        self.pager.forget()
        await self.store.load(self.engine)
        recovered = self.engine.recover()
        known = set(self._running) | {w.request.run_id for w in self._work}
        recovered.dispatch = [r for r in recovered.dispatch if r.run_id not in known]
        recovered.checks = [c for c in recovered.checks if c.data.run_id not in known]
        self._recovered(recovered)

    def _recovered(self, fx: Effects) -> None:
        """Carry out what was in flight at the last commit."""
        messages = [*self.step.requests(fx), *(Step.message(c) for c in fx.checks)]
        self._deliver(messages, None)
        self._carry_out(fx)

    async def _not_committed(self, batch: list[_Item], error: StorageError) -> None:
        """Nothing of the batch is durable. Publishers hear the error and may try again; our
        own workers' results and timers are kept and tried again once the store takes writes."""
        self._commit_failures += 1
        log.error("commit failed (%d in a row): %s", self._commit_failures, error)
        await self._reload()
        for _, future in batch:
            if future is not None and not future.done():
                future.set_exception(error)
        kept = [item for item in batch if item[1] is None]
        if kept:
            if not self._closed:
                await asyncio.sleep(pause_after(self._commit_failures, first_s=0.05, max_s=5.0))
            for item in kept:
                self._inbox.put_nowait(item)

    async def _trim_log(self, now: float) -> None:
        """Retention of the event log, once a minute at most (the state is kept whole)."""
        if now < self._next_trim:
            return
        self._next_trim = now + 60.0
        try:
            # Only what the history has (the log is where the projector resumes from), and
            # nothing a durable subscription has yet to read.
            upto = self.history.position
            held = await self.store.subscriptions_from()
            if held is not None:
                upto = min(upto, held - 1)
            await self.store.trim(now - self.settings.event_log_retention_s, upto=upto)
        except StorageError as e:
            log.warning("event log retention skipped: %s", e)

    def _deliver(
        self, messages: list[Message], committed: asyncio.Future[bool] | None
    ) -> list[str]:
        """The embedded bus: requests go to this process's workers, as soon as they are
        decided: a body runs while its step commits, and its results are submitted once that
        commit succeeded (`committed`; None: it did already). Every other message is delivered
        by the commit itself (the log, and subscribers). Returns the run ids requested."""
        requested = []
        for topic, _, event in messages:
            if topic in WORK:
                data = event.data
                assert isinstance(data, TaskRequestedData | CheckRequestedData)
                self._work.append(_Work(data, Trace.of(event), committed))
                requested.append(data.run_id)
        self._start_work()
        return requested

    async def _drop(self, run_ids: list[str]) -> None:
        """The step that requested `run_ids` did not commit: their bodies stop (what they
        report would be for runs the state does not have)."""
        dropped = set(run_ids)
        self._work = deque(w for w in self._work if w.request.run_id not in dropped)
        bodies = [body for run_id in run_ids if (body := self._running.get(run_id))]
        for body in bodies:
            body.cancel()
        if bodies:
            await asyncio.wait(bodies, timeout=DROP_GRACE_S)

    def _carry_out(self, fx: Effects) -> None:
        if fx.cancel:
            stopped = set(fx.cancel)
            self._work = deque(w for w in self._work if w.request.run_id not in stopped)
        for run_id in fx.cancel:
            running = self._running.get(run_id)
            if running is not None and not running.done():
                running.cancel()
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
            self._inbox.put_nowait((Inbound(Tick(pipeline), "timer"), None))
        self._arm_timer()

    def _check_idle(self) -> None:
        busy = (
            not self._between_steps.is_set()
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
            request, trace, committed = self._work.popleft()
            body = asyncio.create_task(
                self._execute(request, trace, committed), name=f"run {request.run_id}"
            )
            self._running[request.run_id] = body
            body.add_done_callback(functools.partial(self._ended, request.run_id))

    def _ended(self, run_id: str, body: asyncio.Task[None]) -> None:
        if self._running.get(run_id) is body:
            del self._running[run_id]
        self._start_work()
        self._check_idle()

    async def _execute(
        self,
        request: TaskRequestedData | CheckRequestedData,
        trace: Trace | None,
        committed: asyncio.Future[bool] | None,
    ) -> None:
        if committed is None:
            for event in await self.executor.run(request, self._report, trace):
                self._submit(event)
            return
        held = _Held(committed, self._submit)
        results = await self.executor.run(request, held.report, trace)
        if await committed:
            # Awaiting a future already done does not yield: the commit's callback may not
            # have released the start yet, and the results must not overtake it.
            held.release()
            for event in results:
                self._submit(event)

    async def _report(self, event: Event) -> None:
        self._submit(event)
