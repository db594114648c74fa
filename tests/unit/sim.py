"""Drives the pure engine by hand: a fake clock, and workers whose outcomes the test scripts."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eventflow.core import Effects, Engine, is_followed
from eventflow.definitions import App
from eventflow.events import (
    PIPELINE_RUN_EVENTS,
    CheckCompleted,
    CheckCompletedData,
    DatasetProduced,
    DatasetProducedData,
    DatasetVersion,
    Event,
    PipelineInput,
    PipelineRunData,
    TaskFailed,
    TaskFailedData,
    TaskHeartbeat,
    TaskProgressData,
    TaskRequestedData,
    TaskStarted,
    TaskSucceeded,
    TaskSucceededData,
)

Outcome = Callable[[TaskRequestedData], Any]


def produced(dataset: str, partition: str = "", version: int = 1, **meta: Any) -> Event:
    data = DatasetProducedData(dataset=dataset, partition=partition, version=version, metadata=meta)
    return DatasetProduced.of(data)


def routed_inputs(fx: Effects) -> list[PipelineInput]:
    """The routed inputs among a decision's events (notes aside)."""
    return [e for e in fx.events if isinstance(e, PipelineInput)]


@dataclass
class Sim:
    app: App
    now: float = 1000.0
    heartbeat_timeout_s: float = 0.0
    heard_since: float | None = None  # since when the runtime can hear workers (None: always)
    engine: Engine = field(init=False)
    requests: list[TaskRequestedData] = field(default_factory=list)
    checks: list[Any] = field(default_factory=list)
    queue: deque[TaskRequestedData] = field(default_factory=deque)
    events: list[Event] = field(default_factory=list)
    wakes: list[tuple[float, str]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    versions: int = 10_000

    def __post_init__(self) -> None:
        self.engine = Engine(self.app, heartbeat_timeout_s=self.heartbeat_timeout_s)

    def send(self, event: Event) -> None:
        pending = deque([event])
        while pending:
            fx = self.engine.handle(pending.popleft(), self.now)
            for out in fx.events:
                self.events.append(out)
                if is_followed(out):
                    pending.append(out)
            self.events += fx.checks
            self.checks += [c.data for c in fx.checks]
            self.requests += fx.dispatch
            self.queue.extend(fx.dispatch)
            self.wakes += fx.wakes
            self.cancelled += fx.cancel

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for pipeline in sorted({p for at, p in self.wakes if at <= self.now}):
            self.wakes = [(at, p) for at, p in self.wakes if p != pipeline or at > self.now]
            fx = self.engine.tick(pipeline, self.now, self.heard_since)
            self.requests += fx.dispatch
            self.queue.extend(fx.dispatch)
            self.wakes += fx.wakes
            self.cancelled += fx.cancel
            self.events += fx.events
            self.events += fx.checks
            self.checks += [c.data for c in fx.checks]

    def _ref(self, req: TaskRequestedData) -> dict[str, Any]:
        return req.model_dump(include={"run_id", "task", "pipeline", "partition", "attempt"})

    def start(self, req: TaskRequestedData) -> None:
        self.send(TaskStarted.of(TaskProgressData(**self._ref(req), worker="w1")))

    def heartbeat(self, req: TaskRequestedData) -> None:
        self.send(TaskHeartbeat.of(TaskProgressData(**self._ref(req), worker="w1")))

    def succeed(self, req: TaskRequestedData, outputs: list[str] | None = None) -> None:
        names = self.app.tasks[req.task].outputs if outputs is None else outputs
        refs = []
        for name in names:
            self.versions += 1
            refs.append(
                DatasetVersion(dataset=name, partition=req.partition, version=self.versions)
            )
        data = TaskSucceededData(**self._ref(req), worker="w1", outputs=refs, duration_ms=1)
        self.send(TaskSucceeded.of(data))

    def fail(self, req: TaskRequestedData, error: str = "boom", retriable: bool = True) -> None:
        data = TaskFailedData(
            **self._ref(req), worker="w1", error=error, kind="error", retriable=retriable
        )
        self.send(TaskFailed.of(data))

    def answer_check(self, passed: bool, message: str = "") -> None:
        req = self.checks.pop(0)
        blocking = self.app.checks[req.check].blocking
        data = CheckCompletedData(
            run_id=req.run_id,
            check=req.check,
            target=req.target,
            passed=passed,
            blocking=blocking,
            message=message,
        )
        self.send(CheckCompleted.of(data))

    def run_all(
        self, decide: Callable[[TaskRequestedData], list[str] | None] | None = None
    ) -> None:
        """Start and succeed every queued request until none is left (FIFO)."""
        while self.queue:
            req = self.queue.popleft()
            self.start(req)
            self.succeed(req, decide(req) if decide else None)

    def next_request(self, task: str | None = None) -> TaskRequestedData:
        for req in list(self.queue):
            if task is None or req.task == task:
                self.queue.remove(req)
                return req
        raise AssertionError(f"no queued request for {task}: {[r.task for r in self.queue]}")

    @property
    def runs(self) -> list[PipelineRunData]:
        finished = []
        for e in self.events:
            if isinstance(e, PIPELINE_RUN_EVENTS) and e.data.status != "running":
                finished.append(e.data)
        return finished

    def tasks_run(self) -> list[str]:
        return [r.task for r in self.requests]

    def outcome(self, run: PipelineRunData) -> dict[str, str]:
        return {t.task: t.status for t in run.tasks}
