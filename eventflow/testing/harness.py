"""Run an App on a runtime in a test, feed it events, and read what it did.

`EmbeddedHarness` runs the App in this process with its state in a SQLite file (a temporary
one unless `home` is given), optionally on a `ManualClock`; `KafkaHarness` runs a coordinator
and workers in this process on a real broker, under a topic prefix of their own. Both record
every event the runtime commits, and read it back as runs, task results, check outcomes and
dead letters, so one test can run unchanged on both.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core import Explanation
from ..definitions import App
from ..embedded.control import control_allows
from ..embedded.runtime import EmbeddedRuntime
from ..errors import EventError
from ..events import (
    PIPELINE_RUN_EVENTS,
    Action,
    BackfillPlan,
    CheckCompletedData,
    DatasetProduced,
    DatasetProducedData,
    DeadLetterData,
    Event,
    FreshnessData,
    FreshnessRecovered,
    FreshnessViolated,
    PipelineRunData,
    TaskFailedData,
    TaskLogData,
    TaskSucceededData,
    encode,
    pipeline_action,
)
from ..lifecycle import Lifecycle
from ..runtime.clock import Clock
from ..settings import Settings
from ..tracing import Tracer
from .clock import ManualClock

if TYPE_CHECKING:
    from ..clients import Publisher
    from ..kafka.clients import KafkaSubscriber
    from ..kafka.coordinator import KafkaCoordinator
    from ..kafka.worker import KafkaWorker

TaskResult = TaskSucceededData | TaskFailedData


class Harness(Lifecycle):
    """What both runtimes share: the record of committed events and the ways to read it.

    `async with` starts the runtime and stops it; `restart()` stops it and starts a new one on
    the same state, as a redeploy or a crash would, keeping the record.
    """

    def __init__(self) -> None:
        self._seen: list[Event] = []
        self._arrived = asyncio.Event()

    @property
    def events(self) -> list[Event]:
        """Every event committed so far, in the order it was created."""
        return list(self._seen)

    # -- feeding it ------------------------------------------------------------------------------
    async def emit(
        self, dataset: str, partition: str = "", version: int | None = None, **metadata: Any
    ) -> None:
        """Announce a version of `dataset` (now, in µs, unless `version` is given)."""
        raise NotImplementedError

    async def publish_raw(self, raw: bytes, headers: Sequence[tuple[str, bytes]] = ()) -> None:
        """Bytes as an outside producer sends them; what is refused becomes a dead letter.
        With CloudEvents binary-mode `headers` (`ce_` attributes), `raw` is the event's data."""
        raise NotImplementedError

    async def publish(self, event: Event) -> None:
        """An event as an outside producer sends it."""
        await self.publish_raw(encode(event))

    async def act(
        self,
        pipeline: str,
        action: Action,
        *,
        reason: str = "test",
        operator: str = "tester",
        partition: str = "",
        task: str | None = None,
        backfill: str | None = None,
        plan: BackfillPlan | None = None,
    ) -> None:
        """An operator's action, sent the way operators' tools send it (the control socket's
        door; signed on Kafka); `backfill` and `plan` are those of a backfill. A dev instance's
        refusal raises `EventError`; on Kafka it becomes a dead letter."""
        raise NotImplementedError

    async def explain(self, pipeline: str, task: str, partition: str = "") -> Explanation:
        """Why `task` runs, waits or would run in `partition` (`Engine.explain`), from the
        state the runtime has committed."""
        raise NotImplementedError

    async def restart(self) -> None:
        """Stop the runtime (bodies running are cancelled) and start a new one on its state."""
        raise NotImplementedError

    # -- waiting ---------------------------------------------------------------------------------
    async def wait_idle(self, timeout: float = 30) -> None:
        """Until every input is processed and no run is in progress."""
        raise NotImplementedError

    async def wait_for(self, condition: Callable[[], object], timeout: float = 30) -> None:
        """Until `condition()` is true, checked each time new events are recorded."""
        async with asyncio.timeout(timeout):
            while not condition():
                self._arrived.clear()
                await self._arrived.wait()

    async def wait_for_runs(
        self,
        count: int = 1,
        *,
        pipeline: str | None = None,
        partition: str | None = None,
        timeout: float = 30,
    ) -> list[PipelineRunData]:
        """Until `count` pipeline runs (of `pipeline`, in `partition`) have ended; all of the
        ended ones, in the order they ended."""
        await self.wait_for(lambda: len(self.runs(pipeline, partition=partition)) >= count, timeout)
        return self.runs(pipeline, partition=partition)

    # -- reading ---------------------------------------------------------------------------------
    def runs(
        self, pipeline: str | None = None, *, partition: str | None = None
    ) -> list[PipelineRunData]:
        """Pipeline runs that ended (succeeded or failed), in the order they ended."""
        return [
            e.data
            for e in self.events
            if isinstance(e, PIPELINE_RUN_EVENTS)
            and isinstance(e.data, PipelineRunData)
            and e.data.status != "running"
            and _match(e.data.pipeline, pipeline)
            and _match(e.data.partition, partition)
        ]

    def task_results(self, task: str | None = None) -> list[TaskResult]:
        """Every attempt's outcome (`TaskSucceededData` or `TaskFailedData`), in order."""
        return [
            e.data
            for e in self.events
            if isinstance(e.data, TaskSucceededData | TaskFailedData) and _match(e.data.task, task)
        ]

    def task_logs(self, task: str | None = None) -> list[TaskLogData]:
        """What task attempts logged, one chunk per item, in the order recorded (an attempt's
        own chunks are numbered by `seq`; `.run_id` and `.attempt` tell attempts apart)."""
        return [
            e.data
            for e in self.events
            if isinstance(e.data, TaskLogData) and _match(e.data.task, task)
        ]

    def checks(self, check: str | None = None) -> list[CheckCompletedData]:
        """Check outcomes, in order."""
        return [
            e.data
            for e in self.events
            if isinstance(e.data, CheckCompletedData) and _match(e.data.check, check)
        ]

    def dead_letters(self) -> list[DeadLetterData]:
        """Input refused, with its bytes and the reason."""
        return [e.data for e in self.events if isinstance(e.data, DeadLetterData)]

    def produced(self, dataset: str | None = None) -> list[DatasetProducedData]:
        """Dataset versions announced, by publishers, tasks and schedules alike."""
        return [
            e.data
            for e in self.events
            if isinstance(e, DatasetProduced)
            and isinstance(e.data, DatasetProducedData)
            and _match(e.data.dataset, dataset)
        ]

    def freshness(self, name: str | None = None) -> list[tuple[str, FreshnessData]]:
        """Freshness violations and recoveries (`"violated"` or `"recovered"`, the payload)."""
        return [
            (e.type.rsplit(".", 1)[1], e.data)
            for e in self.events
            if isinstance(e, FreshnessViolated | FreshnessRecovered)
            and isinstance(e.data, FreshnessData)
            and _match(e.data.name, name)
        ]

    def _record(self, event: Event) -> None:
        self._seen.append(event)
        self._arrived.set()


def _match(value: str, wanted: str | None) -> bool:
    return wanted is None or value == wanted


class EmbeddedHarness(Harness):
    """The App on `EmbeddedRuntime`. `home` holds its SQLite file (a temporary folder, removed
    at `stop()`, unless given); `clock` may be a `ManualClock`, and then `clock.advance(...)`
    returns once this runtime has carried out what the fired timers set off. Other keyword
    arguments are `Settings` fields."""

    def __init__(
        self,
        app: App,
        home: Path | str | None = None,
        *,
        clock: Clock | None = None,
        tracer: Tracer | None = None,
        **settings: Any,
    ) -> None:
        """`tracer` records the spans of the runtime (e.g. over an OpenTelemetry
        `InMemorySpanExporter`, to test a pipeline's traces)."""
        super().__init__()
        self.app = app
        self.clock = clock
        self.tracer = tracer
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        if home is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="eventflow-test-")
            home = self._temporary.name
        self.settings = Settings(home=Path(home), **settings)
        self.runtime = EmbeddedRuntime(app, self.settings, clock=clock, tracer=tracer)
        self._queue: asyncio.Queue[Event] | None = None
        self._collector: asyncio.Task[None] | None = None
        self._unwatch: Callable[[], None] | None = None

    async def start(self) -> None:
        if self._collector is not None:
            return
        await self.runtime.start()
        queue = self._queue = self.runtime.subscribe()

        async def collect() -> None:
            while True:
                self._record(await queue.get())

        self._collector = asyncio.create_task(collect(), name="eventflow test recorder")
        if isinstance(self.clock, ManualClock) and self._unwatch is None:
            self._unwatch = self.clock.until_quiet(self._quiet)

    async def stop(self) -> None:
        await self._stop_runtime()
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None

    async def restart(self) -> None:
        await self._stop_runtime()
        self.runtime = EmbeddedRuntime(
            self.app, self.settings, clock=self.clock, tracer=self.tracer
        )
        await self.start()

    async def _stop_runtime(self) -> None:
        if self._collector is None:
            return
        self._collector.cancel()
        await asyncio.gather(self._collector, return_exceptions=True)
        self._collector = None
        await self.runtime.stop()
        self._drain()
        self._queue = None

    @property
    def events(self) -> list[Event]:
        self._drain()
        return list(self._seen)

    def _drain(self) -> None:
        """Take what the runtime committed and the recorder has not read yet."""
        queue = self._queue
        while queue is not None and not queue.empty():
            self._record(queue.get_nowait())

    def _quiet(self) -> bool:
        """Nothing left to do until the clock moves: inputs decided, events recorded, and every
        body running waits on the clock (or on something outside the event loop)."""
        clock = self.clock
        assert isinstance(clock, ManualClock)
        if self._collector is None:
            return True
        return (
            self.runtime.settled()
            and (self._queue is None or self._queue.empty())
            and all(clock.waiting(body) for body in self.runtime.bodies())
        )

    async def emit(
        self, dataset: str, partition: str = "", version: int | None = None, **metadata: Any
    ) -> None:
        await self.runtime.emit(dataset, partition, version=version, metadata=metadata)

    async def publish_raw(self, raw: bytes, headers: Sequence[tuple[str, bytes]] = ()) -> None:
        await self.runtime.publish_raw(raw, origin="test", headers=headers)

    async def act(
        self,
        pipeline: str,
        action: Action,
        *,
        reason: str = "test",
        operator: str = "tester",
        partition: str = "",
        task: str | None = None,
        backfill: str | None = None,
        plan: BackfillPlan | None = None,
    ) -> None:
        event = pipeline_action(
            pipeline,
            action,
            reason=reason,
            operator=operator,
            partition=partition,
            task=task,
            backfill=backfill,
            plan=plan,
        )
        receipt = await self.runtime.publish_raw(
            encode(event), origin="control", allowed=control_allows
        )
        if receipt.dead_letter is not None:
            raise EventError(receipt.dead_letter)

    async def explain(self, pipeline: str, task: str, partition: str = "") -> Explanation:
        return await self.runtime.explain(pipeline, task, partition)

    async def wait_idle(self, timeout: float = 30) -> None:
        await asyncio.wait_for(self.runtime.wait_idle(), timeout)
        self._drain()


class KafkaHarness(Harness):
    """The App on a real broker at `bootstrap`: a coordinator and `workers` workers in this
    process, under a topic prefix of their own (so tests sharing a broker do not meet), signing
    with a fresh key. `tracer` records the spans of all of them. Other keyword arguments are
    `Settings` fields."""

    def __init__(
        self,
        app: App,
        bootstrap: str,
        *,
        workers: int = 1,
        tracer: Tracer | None = None,
        **settings: Any,
    ) -> None:
        super().__init__()
        self.tracer = tracer
        settings.setdefault("kafka_session_timeout_ms", 3000)
        settings.setdefault("signing_key", secrets.token_hex(24))
        settings.setdefault("topic_prefix", f"t{uuid.uuid4().hex[:10]}.")
        self.settings = Settings(kafka_bootstrap=bootstrap, **settings)
        self.app = app
        self.worker_count = workers
        self.coordinator, self.workers = self._services()
        self.publisher: Publisher | None = None
        self._collector: asyncio.Future[Any] | None = None

    def _services(self) -> tuple[KafkaCoordinator, list[KafkaWorker]]:
        from ..kafka.coordinator import KafkaCoordinator
        from ..kafka.worker import KafkaWorker

        coordinator = KafkaCoordinator(
            self.app, self.settings, instance="coordinator-1", tracer=self.tracer
        )
        workers = [
            KafkaWorker(self.app, self.settings, instance=f"worker-{n}", tracer=self.tracer)
            for n in range(self.worker_count)
        ]
        return coordinator, workers

    @property
    def events(self) -> list[Event]:
        # Several topics are read at once: their interleaving is not the order of creation.
        return sorted(self._seen, key=lambda e: e.time)

    async def start(self) -> None:
        if self.publisher is not None:
            return
        from ..clients import Publisher
        from ..kafka import admin
        from ..kafka.config import KafkaConfig

        await admin.apply(KafkaConfig(self.settings))
        await self._record_topics()
        await self._start_services()
        self.publisher = Publisher(self.settings)
        await self.publisher.start()

    async def _record_topics(self) -> None:
        from ..kafka.clients import KafkaSubscriber

        readers = [
            KafkaSubscriber(self.settings, topic=topic, from_beginning=True)
            for topic in (
                "eventflow.datasets",
                "eventflow.pipeline-inputs",
                "eventflow.pipeline-runs",
                "eventflow.deadletter",
                "eventflow.task-events",
                "eventflow.task-logs",
                "eventflow.task-stops",
                "eventflow.freshness",
            )
        ]
        await asyncio.gather(*(reader.start() for reader in readers))

        async def collect(reader: KafkaSubscriber) -> None:
            try:
                async for event in reader.events():
                    self._record(event)
            finally:
                await reader.stop()

        self._collector = asyncio.ensure_future(asyncio.gather(*(collect(r) for r in readers)))

    async def _start_services(self) -> None:
        await self.coordinator.start()
        for worker in self.workers:
            await worker.start()
        await asyncio.wait_for(self.coordinator.wait_ready(), 60)
        for worker in self.workers:
            await asyncio.wait_for(worker.ready.wait(), 60)

    async def _stop_services(self) -> None:
        for worker in self.workers:
            await worker.stop()
        await self.coordinator.stop()

    async def stop(self) -> None:
        if self.publisher is not None:
            await self.publisher.stop()
            self.publisher = None
        await self._stop_services()
        if self._collector is not None:
            self._collector.cancel()
            await asyncio.gather(self._collector, return_exceptions=True)
            self._collector = None

    async def restart(self) -> None:
        """New coordinator and worker services in place of the old, on the same topics and
        consumer groups: the state comes back from the changelog, requests are redelivered."""
        await self._stop_services()
        self.coordinator, self.workers = self._services()
        await self._start_services()

    def _publisher(self) -> Publisher:
        if self.publisher is None:
            raise RuntimeError("the harness is not started")
        return self.publisher

    async def emit(
        self, dataset: str, partition: str = "", version: int | None = None, **metadata: Any
    ) -> None:
        await self._publisher().publish(dataset, partition, version=version, metadata=metadata)

    async def publish_raw(self, raw: bytes, headers: Sequence[tuple[str, bytes]] = ()) -> None:
        # One key: kept in order.
        await self._publisher().publish_raw(raw, key="raw", headers=headers)

    async def act(
        self,
        pipeline: str,
        action: Action,
        *,
        reason: str = "test",
        operator: str = "tester",
        partition: str = "",
        task: str | None = None,
        backfill: str | None = None,
        plan: BackfillPlan | None = None,
    ) -> None:
        await self._publisher().act(
            pipeline,
            action,
            reason=reason,
            operator=operator,
            partition=partition,
            task=task,
            backfill=backfill,
            plan=plan,
        )

    async def explain(self, pipeline: str, task: str, partition: str = "") -> Explanation:
        from ..kafka.changelog import explain
        from ..kafka.config import KafkaConfig

        return await explain(self.app, KafkaConfig(self.settings), pipeline, task, partition)

    async def wait_idle(self, timeout: float = 60) -> None:
        """Every input processed and no run in progress, twice in a row 50 ms apart. Kafka
        gives no signal for it, so this polls the services' lag."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while time.monotonic() < deadline:
            lags = [await self.coordinator.lag()] + [await w.lag() for w in self.workers]
            idle = self.coordinator.engine.idle() and not any(lags)
            quiet = quiet + 1 if idle else 0
            if quiet >= 2:
                await asyncio.sleep(0.2)  # let the recorder read the last events
                return
            await asyncio.sleep(0.05)
        raise TimeoutError("the Kafka runtime did not go idle")
