"""Backfills, decided: replaying stored inputs through the run decisions, a few partitions at a
time.

A backfill is an operator's action (`PipelineAction` `backfill`) on one pipeline. It is not a
second scheduler: for each partition in turn it asks the run decisions (`Runs.evaluate`) to start
the pipeline's entry tasks (or, from a dataset, the tasks consuming it) on the input versions the
pipeline holds for that partition, so pools, `max_active_runs`, pauses, checks and branching
apply as to any run, and downstream pipelines follow through the router once per partition.
Its state (`BackfillState`) lives in the pipeline's header record: the partitions are a range
cursor, not a list of records, so 10,000 of them cost a few hundred bytes.

`Backfills.plan` judges one partition and is the one verdict both the dry run and the real
backfill use: a task that succeeded on the versions it would run on is never run again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from croniter import croniter
from pydantic import TypeAdapter

from ..definitions import App, Task
from ..errors import EventError
from ..events import (
    BackfillMode,
    BackfillPlan,
    PipelineActionData,
    PipelineRunFailed,
    PipelineRunSucceeded,
)
from ..partitions import UNPARTITIONED, Partitioning, StaticPartitioning
from .runs import Runs
from .state import IN_FLIGHT, Decision, InputState, PartitionState, PipelineState, Publish, Rerun

#: Finished backfills a pipeline keeps (the running ones are always kept).
FINISHED_KEPT = 16
#: Skipped partitions a backfill keeps with their reason (the rest are counted only).
SKIPS_KEPT = 100

BackfillStatus = Literal["running", "done", "cancelled"]


@dataclass(slots=True)
class BackfillState:
    """One backfill: what it covers, where it is, and what became of the partitions so far."""

    id: str
    pipeline: str
    dataset: str | None
    mode: BackfillMode
    max_active: int
    reverse: bool
    operator: str
    reason: str
    created_at: float
    #: Partitions planned: the range's or the list's length.
    total: int
    #: A range of time partitions: its first and last keys (`keys` is None then).
    start: str | None = None
    end: str | None = None
    #: The partitions as listed (or a static partitioning's range), in order.
    keys: list[str] | None = None
    #: How many partitions were taken in turn so far.
    cursor: int = 0
    #: Partitions whose run is in progress -> its pipeline run id ("" while waiting for a slot).
    active: dict[str, str] = field(default_factory=dict)
    started: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    #: (partition, why) of the first `SKIPS_KEPT` partitions skipped.
    skips: list[tuple[str, str]] = field(default_factory=list)
    status: BackfillStatus = "running"
    finished_at: float | None = None


_state = TypeAdapter(dict[str, BackfillState])


def dump_all(backfills: dict[str, BackfillState]) -> list[BackfillState]:
    """For the pipeline's header record (orjson writes the dataclasses as they are)."""
    return list(backfills.values())


def load_all(raw: object) -> dict[str, BackfillState]:
    """A header's backfills back (absent from headers written before backfills existed)."""
    if not raw:
        return {}
    found = TypeAdapter(list[BackfillState]).validate_python(raw)
    return {bf.id: bf for bf in found}


@dataclass(frozen=True)
class Planned:
    """One partition judged: whether a backfill runs it and why; the tasks it would start
    (task, input versions, `rerun` when a failure on the same versions is run again)."""

    partition: str
    run: bool
    why: str
    tasks: tuple[tuple[str, dict[str, int], bool], ...] = ()


def partitioning_of(app: App, pipeline: str, dataset: str | None) -> Partitioning:
    """The partitioning a backfill's range is read in: that of the tasks it starts."""
    roots = [t for t in roots_of(app, pipeline, dataset) if t.partitioning.partitioned]
    if not roots:
        raise EventError(f"pipeline {pipeline!r} has no partitioned task to backfill")
    return roots[0].partitioning


def roots_of(app: App, pipeline: str, dataset: str | None) -> list[Task]:
    """The tasks a backfill starts: those consuming `dataset`, or the pipeline's entry tasks
    (whose inputs no task of the pipeline produces)."""
    tasks = app.pipelines[pipeline].tasks
    if dataset is not None:
        return [t for t in tasks if dataset in t.inputs]
    found = []
    for task in tasks:
        producers = (app.producer.get(ds) for ds in task.inputs)
        if all(p is None or p.pipeline != pipeline for p in producers):
            found.append(task)
    return found


def resolve(
    app: App, pipeline: str, plan: BackfillPlan
) -> tuple[str | None, list[str] | None, int]:
    """(first key of a time range, the keys listed, how many): a range in the partitioning of
    the tasks started, or a list checked against it. `EventError` says what does not fit."""
    if plan.dataset is not None:
        if plan.dataset not in app.datasets:
            raise EventError(f"unknown dataset {plan.dataset!r}")
        if not roots_of(app, pipeline, plan.dataset):
            raise EventError(f"pipeline {pipeline!r} does not consume {plan.dataset!r}")
    scheme = partitioning_of(app, pipeline, plan.dataset)
    if plan.partitions is not None:
        keys = list(dict.fromkeys(scheme.validate(k) for k in plan.partitions))
        if not keys:
            raise EventError("a backfill needs at least one partition")
        return None, keys, len(keys)
    assert plan.start is not None and plan.end is not None
    first, last = scheme.validate(plan.start), scheme.validate(plan.end)
    if isinstance(scheme, StaticPartitioning):
        i, j = scheme.keys.index(first), scheme.keys.index(last)
        if j < i:
            raise EventError(f"the range ends ({last!r}) before it starts ({first!r})")
        return None, list(scheme.keys[i : j + 1]), j - i + 1
    period = scheme.period
    assert period is not None
    a, b = _parse(scheme, first), _parse(scheme, last)
    if b < a:
        raise EventError(f"the range ends ({last!r}) before it starts ({first!r})")
    total = (b - a) // period + 1
    if total > 100_000:
        raise EventError(f"the range holds {total} partitions; at most 100000 at a time")
    return first, None, total


def _parse(scheme: Partitioning, key: str) -> datetime:
    fmt = getattr(scheme, "fmt", "")
    return datetime.strptime(key, fmt).replace(tzinfo=UTC)


def key_at(app: App, bf: BackfillState, i: int) -> str:
    """The `i`-th partition the backfill takes (newest first when reversed)."""
    j = bf.total - 1 - i if bf.reverse else i
    if bf.keys is not None:
        return bf.keys[j]
    scheme = partitioning_of(app, bf.pipeline, bf.dataset)
    assert bf.start is not None and scheme.period is not None
    return scheme.key_for(_parse(scheme, bf.start) + j * scheme.period)


def keys_of(app: App, bf: BackfillState) -> Iterator[str]:
    for i in range(bf.total):
        yield key_at(app, bf, i)


class Backfills:
    """The backfill decisions for every pipeline of one App, over its run decisions."""

    def __init__(self, runs: Runs) -> None:
        self.runs = runs
        self.app: App = runs.app
        self._crons: dict[str, croniter] = {}

    # -- the actions -----------------------------------------------------------------------------
    def on_action(self, st: PipelineState, data: PipelineActionData, now: float) -> Decision:
        """Start (`backfill`) or cancel (`cancel_backfill`) one; `EventError` before any state
        changes for one that cannot be."""
        d = Decision()
        assert data.backfill is not None
        if data.action == "cancel_backfill":
            bf = st.backfills.get(data.backfill)
            if bf is None:
                raise EventError(f"pipeline {st.name!r} has no backfill {data.backfill!r}")
            if bf.status != "running":
                raise EventError(f"backfill {bf.id!r} is {bf.status} already")
            bf.status, bf.finished_at = "cancelled", now
            self._unqueue(st, bf, d)
            self._trim(st)
            return d
        if data.backfill in st.backfills:
            raise EventError(f"pipeline {st.name!r} has a backfill {data.backfill!r} already")
        st.backfills[data.backfill] = self.new(st, data, now)
        self.advance(st, d, now)
        return d

    def _unqueue(self, st: PipelineState, bf: BackfillState, d: Decision) -> None:
        """The partitions a cancelled backfill left waiting for a run slot stop waiting (what
        they waited for is dropped, as by a `cancel`): a cancelled backfill starts no run."""
        for key, rid in list(bf.active.items()):
            part = st.partitions.get(key)
            if rid or key not in st.waiting or part is None or part.run is not None:
                continue
            st.waiting.remove(key)
            part.reruns.clear()
            for task in self.app.pipelines[st.name].tasks:
                versions = self.runs.wanted(st, key, part, task)
                if versions is not None:
                    part.consumed[task.name] = versions
            del bf.active[key]
            bf.started -= 1
            self._skip(bf, key, "the backfill was cancelled while it waited for a run slot")
            d.dirty.add(key)
        d.header = True

    def new(self, st: PipelineState, data: PipelineActionData, now: float) -> BackfillState:
        """The backfill a `backfill` action asks for, not started; `EventError` says why it
        cannot be (its dry run judges it with `dry_run`)."""
        plan = data.plan
        if plan is None or data.backfill is None:
            raise EventError("a backfill needs an id and a plan")
        start, keys, total = resolve(self.app, st.name, plan)
        return BackfillState(
            id=data.backfill,
            pipeline=st.name,
            dataset=plan.dataset,
            mode=plan.mode,
            max_active=plan.max_active,
            reverse=plan.reverse,
            operator=data.operator,
            reason=data.reason,
            created_at=now,
            total=total,
            start=start,
            end=plan.end if start is not None else None,
            keys=keys,
        )

    # -- progress --------------------------------------------------------------------------------
    def advance(self, st: PipelineState, d: Decision, now: float) -> None:
        """After any decision on the pipeline: count the backfill runs it ended, and start the
        next partitions while a backfill has room (`max_active`) and the pipeline is not paused.
        A run waiting for a slot (`max_active_runs`) counts as started: the run decisions start
        it when one frees."""
        running = [bf for bf in st.backfills.values() if bf.status == "running" or bf.active]
        if not running:
            return
        ended = {
            c.event.data.run_id: isinstance(c.event, PipelineRunSucceeded)
            for c in d.commands
            if isinstance(c, Publish)
            and isinstance(c.event, PipelineRunSucceeded | PipelineRunFailed)
        }
        for bf in running:
            self._account(st, bf, ended)
            if bf.status != "running":
                continue
            while st.paused is None and len(bf.active) < bf.max_active and bf.cursor < bf.total:
                key = key_at(self.app, bf, bf.cursor)
                bf.cursor += 1
                self._take(st, bf, key, now, d)
            # Done once nothing is left, paused or not: a pause holds what is still to start.
            if bf.cursor >= bf.total and not bf.active:
                bf.status, bf.finished_at = "done", now
                self._trim(st)
            d.header = True

    def _account(self, st: PipelineState, bf: BackfillState, ended: dict[str, bool]) -> None:
        cause = self.cause(bf)
        for key, rid in list(bf.active.items()):
            part = st.partitions.get(key)
            run = part.run if part is not None else None
            if rid and rid in ended:
                outcome: bool | None = ended[rid]
            elif run is not None and rid in ("", run.run_id):
                if not rid:  # admitted from the slot queue since
                    bf.active[key] = run.run_id
                    if cause not in run.causes:
                        run.causes.append(cause)
                continue
            elif key in st.waiting or key in st.held:
                continue
            else:  # ended out of sight (a cancel of a partition waiting for a slot)
                outcome = False
            del bf.active[key]
            if outcome:
                bf.succeeded += 1
            else:
                bf.failed += 1

    def _take(
        self, st: PipelineState, bf: BackfillState, key: str, now: float, d: Decision
    ) -> None:
        planned = self.plan(st, key, bf.mode, bf.dataset, bf.id, now=now)
        if not planned.run:
            self._skip(bf, key, planned.why)
            return
        part = st.partition(key)
        cause = self.cause(bf)
        tasks = []
        for name, _, rerun in planned.tasks:
            task = self.app.tasks[name]
            tasks.append(task)
            self._supply(st, part, task, key, bf.id, now)
            if rerun:
                part.rerun_seq += 1
                part.reruns[name] = Rerun(part.rerun_seq, cause)
            else:
                # Versions consumed without a run (a cancel while waiting for a slot) are
                # forgotten, so the trigger rule holds on the versions judged.
                part.consumed.pop(name, None)
        d.dirty.add(key)
        self.runs.evaluate(st, key, tasks, now, d)
        if part.run is not None:
            bf.active[key] = part.run.run_id
            if cause not in part.run.causes:
                part.run.causes.append(cause)
        elif key in st.waiting or key in st.held:  # a slot, or its debounce or cooldown
            bf.active[key] = ""
        else:
            self._skip(bf, key, "the run decisions started nothing")
            return
        bf.started += 1

    def _skip(self, bf: BackfillState, key: str, why: str) -> None:
        bf.skipped += 1
        if len(bf.skips) < SKIPS_KEPT:
            bf.skips.append((key, why))

    def _trim(self, st: PipelineState) -> None:
        finished = [bf for bf in st.backfills.values() if bf.status != "running" and not bf.active]
        for bf in finished[: max(0, len(finished) - FINISHED_KEPT)]:
            del st.backfills[bf.id]

    @staticmethod
    def cause(bf: BackfillState) -> str:
        """How a backfill's runs give their reason."""
        return f"backfill {bf.id} by {bf.operator}: {bf.reason}"

    # -- the verdict -----------------------------------------------------------------------------
    def plan(
        self,
        st: PipelineState,
        key: str,
        mode: BackfillMode,
        dataset: str | None = None,
        backfill: str = "",
        *,
        now: float,
    ) -> Planned:
        """Whether a backfill in `mode` runs `key` at `now`, and why: read from the state only,
        so a dry run says what the backfill would do. A schedule's tick still to come is not a
        version yet: a partition whose clock has not ticked is not run ahead of its time."""
        part = st.partitions.get(key)
        if part is not None and (part.run is not None or key in st.waiting):
            return Planned(key, False, "a run is in progress")
        roots = [t for t in roots_of(self.app, st.name, dataset) if t.partitioning.partitioned]
        kinds: dict[str, list[tuple[str, dict[str, int], bool]]] = {
            "missing": [],
            "failed": [],
            "stale": [],
        }
        for task in roots:
            versions, lacking = self._versions(st, part, task, key, now)
            if lacking is not None:
                due = self.tick(lacking, key)
                if due is not None:
                    at = datetime.fromtimestamp(due / 1e6, UTC).isoformat()
                    why = f"its clock {lacking!r} ticks for {key!r} at {at}, still to come"
                    return Planned(key, False, why)
                return Planned(key, False, f"input {lacking!r} was never produced for {key!r}")
            tr = part.runs.get(task.name) if part is not None else None
            if tr is None:
                kinds["missing"].append((task.name, versions, False))
            elif tr.status in IN_FLIGHT:
                return Planned(key, False, f"task {task.name!r} is in flight")
            elif tr.inputs != versions:
                kinds["stale"].append((task.name, versions, False))
            elif tr.status == "failed":
                kinds["failed"].append((task.name, versions, True))
        if part is not None and not any(kinds.values()):
            failed = {n for n, tr in part.runs.items() if tr.status == "failed"}
            for name in sorted(failed):
                above = {
                    self.app.producer[ds].name
                    for ds in self.app.tasks[name].inputs
                    if ds in self.app.producer
                }
                if not above & failed and self.app.tasks[name].pipeline == st.name:
                    kinds["failed"].append((name, dict(part.runs[name].inputs), True))
        if not any(kinds.values()):
            return Planned(key, False, "succeeded on the same input versions")
        chosen = [k for k in kinds if kinds[k] and (mode == "all" or mode == k)]
        if not chosen:
            found = " and ".join(k for k in kinds if kinds[k])
            return Planned(key, False, f"{found}, not {mode}")
        tasks = tuple(t for k in chosen for t in kinds[k])
        why = "; ".join(
            f"{k}: " + ", ".join(f"{name} on {_versions(v)}" for name, v, _ in kinds[k])
            for k in chosen
        )
        return Planned(key, True, why, tasks)

    def _versions(
        self, st: PipelineState, part: PartitionState | None, task: Task, key: str, now: float
    ) -> tuple[dict[str, int], str | None]:
        """The input versions `task` runs on in `key`, or the first input never produced there.
        A schedule's clock is time, not data: its tick for the partition is known without it
        having been produced."""
        shared = st.partitions.get(UNPARTITIONED)
        versions: dict[str, int] = {}
        lacking = None
        for ds in task.inputs:
            partitioned = self.app.datasets[ds].partitions.partitioned
            source = part if partitioned else shared
            have = source.inputs.get(ds) if source is not None else None
            if have is not None:
                versions[ds] = have.version
                continue
            tick = self.tick(ds, key) if partitioned else None
            if tick is not None and tick <= now * 1_000_000:
                versions[ds] = tick
            elif task.trigger == "all" and lacking is None:
                lacking = ds
        if not versions:
            lacking = lacking or (task.inputs[0] if task.inputs else None)
        return versions, lacking

    def tick(self, dataset: str, key: str) -> int | None:
        """The version a schedule produces of its clock `dataset` for partition `key` (its
        first tick in the partition's window), or None."""
        schedule = self.app.schedules.get(dataset)
        scheme = self.app.datasets[dataset].partitions
        if schedule is None or scheme.period is None:
            return None
        begin = _parse(scheme, key)
        ticks = self._crons.get(schedule.cron)
        if ticks is None:  # parsing a cron costs more than judging a partition: once each
            ticks = self._crons[schedule.cron] = croniter(schedule.cron, begin)
        ticks.set_current(begin - timedelta(microseconds=1), force=True)
        at: datetime = ticks.get_next(datetime)
        if at >= begin + scheme.period:
            return None
        return int(at.timestamp() * 1_000_000)

    def _supply(
        self,
        st: PipelineState,
        part: PartitionState,
        task: Task,
        key: str,
        backfill: str,
        now: float,
    ) -> None:
        """The clock versions the verdict counted on, into the partition's inputs (of this
        pipeline only: no other consumer of the clock runs)."""
        for ds in task.inputs:
            if ds not in part.inputs and self.app.datasets[ds].partitions.partitioned:
                tick = self.tick(ds, key)
                if tick is not None and tick <= now * 1_000_000:
                    at = datetime.fromtimestamp(tick / 1e6, UTC).isoformat()
                    part.inputs[ds] = InputState(tick, {"tick": at, "backfill": backfill})


def _versions(versions: dict[str, int]) -> str:
    return ", ".join(f"{ds}@{v}" for ds, v in sorted(versions.items())) or "no input"


def dry_run(backfills: Backfills, st: PipelineState, bf: BackfillState) -> list[Planned]:
    """Every partition of `bf` judged as the backfill would judge it when it was made
    (`created_at`), in its order."""
    return [
        backfills.plan(st, key, bf.mode, bf.dataset, bf.id, now=bf.created_at)
        for key in keys_of(backfills.app, bf)
    ]
