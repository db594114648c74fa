"""The pipeline DSL: datasets, tasks, checks, pools, schedules, pipelines, and the App holding them.

Everything is validated when the `App` is built, so a bad definition fails at load time with a
message naming the task and the problem, never halfway through a cascade. Checks and schedules
attach to a pipeline like tasks do, so the App collects them and none is forgotten.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, TypeVar

from croniter import croniter

from .alerts.rules import Alert
from .alerts.rules import validate as validate_alerts
from .context import CheckContext, TaskContext, TaskInfo
from .datasets import Dataset, DatasetLike, dataset_name
from .errors import DefinitionError
from .events import MAX_NAME
from .freshness import validate as validate_freshness
from .openlineage.mapping import LineageMapping
from .openlineage.mapping import validate as validate_lineage
from .partitions import NONE, DynamicPartitioning, Partitioning

__all__ = [
    "App",
    "Check",
    "CheckFn",
    "Dataset",
    "DatasetLike",
    "FanOut",
    "Pipeline",
    "Pool",
    "Restatements",
    "Retry",
    "Schedule",
    "Task",
    "TaskFn",
    "Trigger",
    "check",
]

Trigger = Literal["all", "any"]
TRIGGERS: tuple[str, ...] = ("all", "any")
Restatements = Literal["follow", "ignore"]
RESTATEMENTS: tuple[str, ...] = ("follow", "ignore")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_T = TypeVar("_T")
TaskFn = Callable[[TaskContext], Awaitable[None] | None]
CheckFn = Callable[[CheckContext], Awaitable[Any] | Any]


@dataclass(frozen=True)
class Retry:
    """Retry policy: `count` more attempts, waiting `backoff_s * factor**(n-1)`, capped.

    Only failures that may pass on their own are retried: not `eventflow.Fail`, nor an emit of an
    undeclared output.
    """

    count: int = 0
    backoff_s: float = 1.0
    factor: float = 2.0
    max_delay_s: float = 300.0

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt number `failed_attempt` (from 1) failed."""
        return float(min(self.max_delay_s, self.backoff_s * self.factor ** (failed_attempt - 1)))


@dataclass(frozen=True)
class FanOut:
    """A task that names partitions of its `dynamic()` outputs at run time, at most
    `max_width` of them per run; more fails the run (never a silent cut)."""

    max_width: int = 100


#: Widest fan-out accepted: a gather's request lists every item.
MAX_WIDTH = 10_000


@dataclass(frozen=True)
class Pool:
    """A concurrency limit shared by every task that names it."""

    name: str
    slots: int


@dataclass(frozen=True)
class Schedule:
    """Time as a dataset: at each cron tick (UTC; an optional sixth field, after the day of
    week, gives seconds: `* * * * * */5` is every five seconds) a version of
    `dataset` is produced. Attach it with `Pipeline.schedule` or `Pipeline(schedules=...)`."""

    dataset: Dataset
    cron: str


@dataclass(eq=False)
class Task:
    """A task as `Pipeline.task` registered it; the App completes and validates it.

    Bodies never see it: they get a frozen `TaskInfo` (`ctx.task`).
    """

    name: str
    fn: TaskFn
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    retry: Retry = Retry()
    timeout_s: float | None = None
    pool: str | None = None
    trigger: str = "all"
    pipeline: str = ""
    declared: tuple[DatasetLike, ...] = ()
    partitioning: Partitioning = NONE
    #: Cron (UTC): at each tick the task's run for the partition it judges must have succeeded.
    deadline: str | None = None
    #: Seconds its inputs must have been quiet in a partition before it is decided there.
    debounce_s: float | None = None
    #: Seconds at least between two runs of it starting in one partition.
    cooldown_s: float | None = None
    #: Whether a new version of an input partition it already consumed runs it again there.
    restatements: str = "follow"
    #: Set on a task that emits partitions of its `dynamic()` outputs at run time.
    fan_out: FanOut | None = None
    #: Whether it runs once per fan-out, after every item, rather than once per item.
    gather: bool = False
    #: Its outputs whose partitions a fan-out names; set by the App.
    dynamic_outputs: tuple[str, ...] = ()
    #: The longest key each of `dynamic_outputs` accepts, in the same order; set by the App.
    dynamic_key_lengths: tuple[int, ...] = ()

    @property
    def is_async(self) -> bool:
        """Whether the body runs on the event loop (else in a thread)."""
        return inspect.iscoroutinefunction(self.fn)

    def info(self, timeout_s: float | None = None) -> TaskInfo:
        """The frozen view a body gets; `timeout_s` is the limit in force when not declared."""
        return TaskInfo(
            name=self.name,
            pipeline=self.pipeline,
            inputs=self.inputs,
            outputs=self.outputs,
            partitioning=self.partitioning.kind if self.partitioning.partitioned else None,
            trigger=self.trigger,
            pool=self.pool,
            timeout_s=self.timeout_s if self.timeout_s is not None else timeout_s,
            retries=self.retry.count,
            fan_out=self.fan_out.max_width if self.fan_out is not None else None,
            gather=self.gather,
            dynamic_outputs=self.dynamic_outputs,
            dynamic_key_lengths=self.dynamic_key_lengths,
        )


@dataclass(eq=False)
class Check:
    """A data-quality check, run each time its dataset is produced, whichever task produced it."""

    name: str
    dataset: str
    fn: CheckFn
    blocking: bool = True
    timeout_s: float | None = None
    declared: DatasetLike = ""


def check(
    dataset: DatasetLike,
    *,
    blocking: bool = True,
    name: str | None = None,
    timeout_s: float | None = None,
) -> Callable[[CheckFn], Check]:
    """Make a data-quality check of `dataset`; prefer `Pipeline.check`, which also attaches it.

    The function returns a bool, or `(passed, message)`; raising counts as failing. A failing
    blocking check stops everything downstream of that version; a non-blocking one only warns. A
    check made here runs only if passed to `App(checks=...)`; `load_app` refuses a module that
    defines one its App does not hold.
    """

    def register(fn: CheckFn) -> Check:
        return Check(
            name=name or fn.__name__,
            dataset=dataset_name(dataset),
            fn=fn,
            blocking=blocking,
            timeout_s=timeout_s,
            declared=dataset,
        )

    return register


@dataclass(eq=False)
class Pipeline:
    """A named set of tasks; its graph comes from the datasets they read and write.

    It also carries the checks and schedules declared with it, so that building the `App` from
    its pipelines is enough for them to run.
    """

    name: str
    max_active_runs: int | None = None
    description: str = ""
    tasks: list[Task] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)

    def task(
        self,
        *,
        inputs: Sequence[DatasetLike],
        outputs: Sequence[DatasetLike] = (),
        retries: Retry | int = 0,
        timeout_s: float | None = None,
        pool: str | None = None,
        trigger: Trigger = "all",
        name: str | None = None,
        deadline: str | None = None,
        debounce: timedelta | float | None = None,
        cooldown: timedelta | float | None = None,
        restatements: Restatements = "follow",
        fan_out: FanOut | None = None,
        gather: bool = False,
    ) -> Callable[[TaskFn], Task]:
        """Register a task. It runs when its inputs are fresh per `trigger`: `all` (every input
        has a version newer than the one it last consumed for the partition) or `any`.
        `deadline` (a cron, UTC) is its SLA: at each tick its run for the newest partition whose
        window ended by then (unpartitioned: a run since the tick before) must have succeeded.

        `debounce` (seconds or a `timedelta`): decide only once its inputs have been quiet that
        long in the partition, so a burst of updates makes one run on the newest versions.
        `cooldown`: at most one run start per that long in a partition; an update inside the
        window is decided when it ends, never dropped. `restatements`: `follow` (a new version
        of an input partition it already consumed runs it again there) or `ignore`.

        `fan_out`: the body names partitions of its `dynamic()` outputs
        (`ctx.emit(ds, partition=key)`), each then running downstream as its own partition.
        `gather`: its one input is a `dynamic()` dataset fed by a fan-out of the same pipeline;
        it runs once per fan-out, in the fan-out's partition, after every item ended (`all`:
        every item succeeded; `any`: whatever they did), and sees them as `ctx.items`."""

        def register(fn: TaskFn) -> Task:
            task = Task(
                name=name or str(getattr(fn, "__name__", "")),
                fn=fn,
                inputs=tuple(dataset_name(d) for d in inputs),
                outputs=tuple(dataset_name(d) for d in outputs),
                retry=retries if isinstance(retries, Retry) else Retry(count=retries),
                timeout_s=timeout_s,
                pool=pool,
                trigger=trigger,
                pipeline=self.name,
                declared=(*inputs, *outputs),
                deadline=deadline,
                debounce_s=_seconds(debounce),
                cooldown_s=_seconds(cooldown),
                restatements=restatements,
                fan_out=fan_out,
                gather=gather,
            )
            self.tasks.append(task)
            return task

        return register

    def check(
        self,
        dataset: DatasetLike,
        *,
        blocking: bool = True,
        name: str | None = None,
        timeout_s: float | None = None,
    ) -> Callable[[CheckFn], Check]:
        """Register a data-quality check of `dataset`, run each time any task (of any pipeline)
        or outside system produces it; see `eventflow.check` for what the function returns."""
        make = check(dataset, blocking=blocking, name=name, timeout_s=timeout_s)

        def register(fn: CheckFn) -> Check:
            chk = make(fn)
            self.checks.append(chk)
            return chk

        return register

    def schedule(self, dataset: Dataset, cron: str) -> Schedule:
        """Register a schedule: a version of `dataset` at each tick of `cron` (UTC)."""
        schedule = Schedule(dataset, cron)
        self.schedules.append(schedule)
        return schedule


class App:
    """Everything one deployment runs; validated on construction.

    Tasks, checks and schedules come from the pipelines; `checks=` and `schedules=` add ones
    made apart from any pipeline (the same object given twice counts once). `alerts=` are the
    rules that send chosen events to webhooks (`eventflow.Alert`); `lineage=` says which
    OpenLineage datasets are which of the App's (`eventflow.LineageMapping`).
    """

    def __init__(
        self,
        pipelines: Iterable[Pipeline],
        *,
        datasets: Iterable[Dataset] = (),
        checks: Iterable[Check] = (),
        pools: Iterable[Pool] = (),
        schedules: Iterable[Schedule] = (),
        alerts: Iterable[Alert] = (),
        lineage: Iterable[LineageMapping] = (),
    ) -> None:
        self.pipelines: dict[str, Pipeline] = {}
        self.tasks: dict[str, Task] = {}
        self.datasets: dict[str, Dataset] = {}
        self.checks: dict[str, Check] = {}
        self.pools: dict[str, Pool] = {}
        self.schedules: dict[str, Schedule] = {}
        self.producer: dict[str, Task] = {}
        #: Gather task name -> the fan-out task whose items it gathers, and the reverse.
        self.gather_source: dict[str, Task] = {}
        self.gathers_of: dict[str, list[Task]] = {}
        self.consumers: dict[str, list[Task]] = {}
        self.checks_of: dict[str, list[Check]] = {}
        pipelines = list(pipelines)
        checks = _unique([*checks, *(c for p in pipelines for c in p.checks)])
        schedules = _unique([*schedules, *(s for p in pipelines for s in p.schedules)])
        for pipeline in pipelines:
            if pipeline.name in self.pipelines:
                raise DefinitionError(f"duplicate pipeline name {pipeline.name!r}")
            if pipeline.max_active_runs is not None and pipeline.max_active_runs < 1:
                raise DefinitionError(
                    f"pipeline {pipeline.name!r}: max_active_runs must be at least 1"
                )
            self.pipelines[pipeline.name] = pipeline
        self._collect_datasets(datasets, checks, schedules)
        for pool in pools:
            if pool.name in self.pools:
                raise DefinitionError(f"duplicate pool name {pool.name!r}")
            if pool.slots < 1:
                raise DefinitionError(f"pool {pool.name!r}: slots must be at least 1")
            self.pools[pool.name] = pool
        for schedule in schedules:
            if not croniter.is_valid(schedule.cron):
                raise DefinitionError(
                    f"schedule of {schedule.dataset.name!r}: bad cron expression {schedule.cron!r}"
                )
            fields = schedule.cron.split()
            if len(fields) == 6 and fields[5] == "*" and fields[0] != "*":
                raise DefinitionError(
                    f"schedule of {schedule.dataset.name!r}: {schedule.cron!r} ticks every second "
                    f"of the minutes {fields[0]!r}: the seconds field is the sixth, after the day "
                    f"of week (every five seconds: '* * * * * */5'); write "
                    f"'{' '.join(fields[:5])} */1' if every second is meant"
                )
            other = self.schedules.get(schedule.dataset.name)
            if other is not None:
                raise DefinitionError(
                    f"dataset {schedule.dataset.name!r} has two schedules: {other.cron!r} and "
                    f"{schedule.cron!r}"
                )
            self.schedules[schedule.dataset.name] = schedule
        for pipeline in self.pipelines.values():
            if not pipeline.tasks:
                raise DefinitionError(f"pipeline {pipeline.name!r} has no tasks")
            for task in pipeline.tasks:
                self._add_task(task)
        for chk in checks:
            self._add_check(chk)
        self._reject_cycles()
        for task in self.tasks.values():
            if task.gather:
                self._add_gather(task)
        self._limit_names()
        self.pipeline_consumers: dict[str, list[str]] = {
            ds: sorted({t.pipeline for t in tasks}) for ds, tasks in self.consumers.items()
        }
        self.alerts: dict[str, Alert] = validate_alerts(alerts, self)
        self.lineage: dict[tuple[str, str], LineageMapping] = validate_lineage(lineage, self)

    def home_of(self, dataset: str) -> str:
        """The name whose Kafka stream task holds `dataset`'s router state: the pipeline that
        produces it, so that a task's output is routed, and a consumer in that pipeline decided,
        in the step that takes the task's result; the dataset itself when outside systems
        produce it, or when checks hold its versions back (their results are keyed by dataset)."""
        task = self.producer.get(dataset)
        if task is None or dataset in self.checks_of:
            return dataset
        return task.pipeline

    def _limit_names(self) -> None:
        """Names travel in every event, whose fields are bounded (`events.MAX_NAME`)."""
        kinds: dict[str, Iterable[str]] = {
            "pipeline": self.pipelines,
            "task": self.tasks,
            "dataset": self.datasets,
            "check": self.checks,
            "pool": self.pools,
        }
        for kind, names in kinds.items():
            for name in names:
                if not name or len(name) > MAX_NAME:
                    raise DefinitionError(
                        f"{kind} name {name[:40]!r}... must be 1 to {MAX_NAME} characters"
                    )

    def _collect_datasets(
        self, datasets: Iterable[Dataset], checks: Iterable[Check], schedules: Iterable[Schedule]
    ) -> None:
        declared: list[Dataset] = list(datasets)
        declared += [s.dataset for s in schedules]
        declared += [c.declared for c in checks if isinstance(c.declared, Dataset)]
        for pipeline in self.pipelines.values():
            for task in pipeline.tasks:
                declared += [d for d in task.declared if isinstance(d, Dataset)]
        for ds in declared:
            known = self.datasets.get(ds.name)
            if known is not None and known != ds:
                raise DefinitionError(f"dataset {ds.name!r} is declared twice, differently")
            self.datasets[ds.name] = ds
            if ds.freshness is not None:
                policy = ds.freshness
                if policy.deadline is None and policy.max_age is None:
                    raise DefinitionError(
                        f"dataset {ds.name!r}: freshness needs a deadline or a max_age"
                    )
                validate_freshness(
                    f"dataset {ds.name!r}", ds.partitions, policy.deadline, policy.max_age_s
                )

    def _add_task(self, task: Task) -> None:
        where = f"task {task.name!r} (pipeline {task.pipeline!r})"
        if not _NAME.fullmatch(task.name):
            raise DefinitionError(f"{where}: name must be a word like 'compute_speed'")
        if task.name in self.tasks:
            other = self.tasks[task.name]
            raise DefinitionError(
                f"duplicate task name {task.name!r} (pipelines {other.pipeline!r} and "
                f"{task.pipeline!r})"
            )
        if not callable(task.fn):
            raise DefinitionError(f"{where}: the task body is not callable")
        if not task.inputs:
            raise DefinitionError(
                f"{where}: a task needs at least one input (use a schedule to run on time)"
            )
        if task.trigger not in TRIGGERS:
            raise DefinitionError(
                f"{where}: trigger {task.trigger!r} is not one of {', '.join(TRIGGERS)}"
            )
        if task.pool is not None and task.pool not in self.pools:
            raise DefinitionError(f"{where}: pool {task.pool!r} is not declared")
        if task.timeout_s is not None and task.timeout_s <= 0:
            raise DefinitionError(f"{where}: timeout_s must be positive")
        if task.retry.count < 0 or task.retry.backoff_s < 0 or task.retry.max_delay_s < 0:
            raise DefinitionError(f"{where}: retry count and delays must not be negative")
        for role, names in (("input", task.inputs), ("output", task.outputs)):
            seen: set[str] = set()
            for ds in names:
                if ds not in self.datasets:
                    raise DefinitionError(f"{where}: {role} {ds!r} is not a declared dataset")
                if ds in seen:
                    raise DefinitionError(f"{where}: {role} {ds!r} is listed twice")
                seen.add(ds)
        task.partitioning = self._partitioning_of(task, where)
        self._validate_fan_out(task, where)
        validate_freshness(where, task.partitioning, task.deadline)
        _validate_pacing(task, where)
        for ds in task.outputs:
            if ds in self.schedules:
                raise DefinitionError(f"{where}: output {ds!r} is produced by a schedule")
            if ds in self.producer:
                raise DefinitionError(
                    f"{where}: output {ds!r} is already produced by task {self.producer[ds].name!r}"
                )
            scheme = self.datasets[ds].partitions
            if (task.fan_out is not None and scheme.kind == "dynamic") or task.gather:
                pass  # named by the body; a gather's are checked by `_add_gather`
            elif scheme != task.partitioning:
                raise DefinitionError(
                    f"{where}: output {ds!r} is partitioned {self.datasets[ds].partitions.kind} "
                    f"but the task runs per {task.partitioning.kind} partition"
                )
            self.producer[ds] = task
        for ds in task.inputs:
            self.consumers.setdefault(ds, []).append(task)
        self.tasks[task.name] = task

    def _partitioning_of(self, task: Task, where: str) -> Partitioning:
        if task.gather:
            return NONE  # the fan-out's, set by `_add_gather` once every task is known
        schemes = {
            ds: self.datasets[ds].partitions
            for ds in task.inputs
            if self.datasets[ds].partitions.partitioned
        }
        distinct = set(schemes.values())
        if len(distinct) > 1:
            listed = ", ".join(f"{ds!r} is {p.kind}" for ds, p in schemes.items())
            raise DefinitionError(f"{where}: inputs have different partitionings: {listed}")
        return distinct.pop() if distinct else NONE

    def _validate_fan_out(self, task: Task, where: str) -> None:
        if task.fan_out is not None:
            width = task.fan_out.max_width
            if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= MAX_WIDTH:
                raise DefinitionError(f"{where}: max_width must be 1 to {MAX_WIDTH}")
            if not any(self.datasets[ds].partitions.kind == "dynamic" for ds in task.outputs):
                raise DefinitionError(f"{where}: a fan-out needs an output partitioned dynamic()")
            if task.partitioning.kind == "dynamic":
                raise DefinitionError(f"{where}: a fan-out cannot run per dynamic partition")
            task.dynamic_outputs = tuple(
                ds for ds in task.outputs if self.datasets[ds].partitions.kind == "dynamic"
            )
            task.dynamic_key_lengths = tuple(
                scheme.max_length
                for ds in task.dynamic_outputs
                if isinstance(scheme := self.datasets[ds].partitions, DynamicPartitioning)
            )
        if task.gather:
            if task.fan_out is not None:
                raise DefinitionError(f"{where}: a task cannot both fan out and gather")
            if len(task.inputs) != 1 or self.datasets[task.inputs[0]].partitions.kind != "dynamic":
                raise DefinitionError(f"{where}: a gather has one input, partitioned dynamic()")

    def _add_gather(self, task: Task) -> None:
        """Find the fan-out whose items `task` gathers: up its input through dynamic datasets,
        all produced in its pipeline (one owner decides the items and the gather)."""
        where = f"task {task.name!r} (pipeline {task.pipeline!r})"
        ds = task.inputs[0]
        while True:
            up = self.producer.get(ds)
            if up is None or up.pipeline != task.pipeline:
                raise DefinitionError(
                    f"{where}: {ds!r} is not fed by a fan-out of pipeline {task.pipeline!r}"
                )
            if up.fan_out is not None:
                break
            ds = up.inputs[0] if len(up.inputs) == 1 else ""
            if not ds or self.datasets[ds].partitions.kind != "dynamic":
                raise DefinitionError(
                    f"{where}: {up.name!r} between it and a fan-out must have one dynamic() input"
                )
        task.partitioning = up.partitioning
        for out in task.outputs:
            if self.datasets[out].partitions != task.partitioning:
                raise DefinitionError(
                    f"{where}: output {out!r} must be partitioned like the fan-out "
                    f"{up.name!r} ({task.partitioning.kind})"
                )
        self.gather_source[task.name] = up
        self.gathers_of.setdefault(up.name, []).append(task)

    def _add_check(self, chk: Check) -> None:
        if chk.name in self.checks:
            raise DefinitionError(f"duplicate check name {chk.name!r}")
        if chk.dataset not in self.datasets:
            raise DefinitionError(f"check {chk.name!r}: dataset {chk.dataset!r} is not declared")
        if not callable(chk.fn):
            raise DefinitionError(f"check {chk.name!r}: the check body is not callable")
        self.checks[chk.name] = chk
        self.checks_of.setdefault(chk.dataset, []).append(chk)

    def _reject_cycles(self) -> None:
        """Depth-first search over task → output → consuming task; report the loop found."""
        state: dict[str, int] = {}
        path: list[str] = []

        def visit(task: Task) -> None:
            state[task.name] = 1
            path.append(task.name)
            for ds in task.outputs:
                for nxt in self.consumers.get(ds, []):
                    if state.get(nxt.name) == 1:
                        loop = [*path[path.index(nxt.name) :], nxt.name]
                        raise DefinitionError(
                            f"task {nxt.name!r}: cycle in the graph: " + " -> ".join(loop)
                        )
                    if nxt.name not in state:
                        visit(nxt)
            path.pop()
            state[task.name] = 2

        for task in self.tasks.values():
            if task.name not in state:
                visit(task)

    # -- graph queries used by the core ---------------------------------------------------------
    def downstream(self, task: str) -> list[str]:
        """Tasks that consume, directly or not, what `task` produces."""
        seen: list[str] = []
        frontier = [task]
        while frontier:
            for ds in self.tasks[frontier.pop()].outputs:
                for nxt in self.consumers.get(ds, []):
                    if nxt.name not in seen:
                        seen.append(nxt.name)
                        frontier.append(nxt.name)
        return seen

    def timeout_of(self, task: Task | Check, default: float) -> float:
        """The declared timeout of `task`, else `default` (the runtime's setting)."""
        return task.timeout_s if task.timeout_s is not None else default


def _seconds(value: timedelta | float | None) -> float | None:
    """Seconds of a `timedelta` or a number, as given (validated with the task)."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None if value is None else math.nan  # refused by `_validate_pacing`
    return float(value)


def _validate_pacing(task: Task, where: str) -> None:
    """Debounce, cooldown and restatements that mean something for this task."""
    for option, seconds in (("debounce", task.debounce_s), ("cooldown", task.cooldown_s)):
        if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
            raise DefinitionError(
                f"{where}: {option} must be a positive number of seconds or a timedelta"
            )
    debounce, cooldown = task.debounce_s, task.cooldown_s
    if debounce is not None and cooldown is not None and cooldown <= debounce:
        raise DefinitionError(
            f"{where}: a cooldown of {cooldown:g}s within a debounce of {debounce:g}s never "
            "holds anything back (two runs are always a debounce apart); give one of them"
        )
    if task.restatements not in RESTATEMENTS:
        raise DefinitionError(
            f"{where}: restatements {task.restatements!r} is not one of {', '.join(RESTATEMENTS)}"
        )
    if task.restatements == "ignore" and not task.partitioning.partitioned:
        raise DefinitionError(
            f"{where}: restatements='ignore' needs a partitioned input: for an unpartitioned "
            "task each new version is the next one, never a restatement"
        )


def _unique(items: list[_T]) -> list[_T]:
    """In order, each once: checks by identity, schedules by value."""
    return list(dict.fromkeys(items))
