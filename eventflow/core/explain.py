"""Why a task runs, waits or would run now: read from the state the engine decides on.

Each verdict comes from the predicates the run decisions use (`Runs.fresh_inputs`,
`Runs.wanted`, `Runs.slot_free`), so an explanation cannot disagree with what the engine does.
The answer is an ordered checklist a person reads top to bottom, and JSON for tools.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..definitions import Task
from ..errors import EventError
from ..partitions import UNPARTITIONED
from . import fanout, pacing
from .state import DatasetState, InputState, PartitionState, PipelineState, TaskRun

if TYPE_CHECKING:
    from .engine import Engine

Check = Literal[
    "paused", "input", "trigger", "pacing", "attempt", "max_active_runs", "pool", "upstream"
]
Status = Literal["would_run", "queued", "running", "waiting"]


class ExplainItem(BaseModel):
    """One line of the checklist."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    check: Check = Field(description="What this line is about, for tools.")
    ok: bool = Field(description="False when this is what holds the task back or went wrong.")
    title: str = Field(description="A few words.")
    detail: str = Field(description="The facts behind it: versions, times, workers, errors.")


class Explanation(BaseModel):
    """Why a task of a pipeline does what it does in one partition."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pipeline: str
    task: str
    partition: str
    status: Status = Field(
        description="`running`, `queued` (for a worker), `would_run` (nothing holds it back), "
        "or `waiting` (for what, `verdict` says)."
    )
    verdict: str = Field(description="The answer in one line.")
    items: list[ExplainItem] = Field(description="The checklist, in reading order.")


def _at(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _versions(versions: dict[str, int]) -> str:
    return ", ".join(f"{ds}@{v}" for ds, v in versions.items()) or "no inputs"


def explain(engine: Engine, pipeline: str, task_name: str, partition: str) -> Explanation:
    st = engine.pipelines.get(pipeline)
    if st is None:
        raise EventError(f"unknown pipeline {pipeline!r}")
    task = engine.app.tasks.get(task_name)
    if task is None or task.pipeline != pipeline:
        raise EventError(f"pipeline {pipeline!r} has no task {task_name!r}")
    key = task.partitioning.validate(partition)
    return _Explainer(engine, st, task, key).run()


class _Explainer:
    def __init__(self, engine: Engine, st: PipelineState, task: Task, key: str) -> None:
        self.engine = engine
        self.runs = engine.runs
        self.st = st
        self.task = task
        self.key = key
        # An empty stand-in for a partition the engine has no state of: what it would create.
        self.part = st.partitions.get(key) or PartitionState()
        self.shared = self.part if key == UNPARTITIONED else st.partitions.get(UNPARTITIONED)
        self.items: list[ExplainItem] = []
        self.waiting_for: list[str] = []
        self.restated = engine.runs.restated(self.part, task)
        # Restatements the task does not re-run for (`restatements="ignore"`).
        self.ignored: list[str] = []
        last = self.part.runs.get(task.name)
        if task.restatements == "ignore" and last is not None and last.status == "succeeded":
            self.ignored = [ds for ds in task.inputs if ds in self.restated]

    def add(self, check: Check, ok: bool, title: str, detail: str) -> None:
        self.items.append(ExplainItem(check=check, ok=ok, title=title, detail=detail))

    def run(self) -> Explanation:
        self._paused()
        if self.task.gather:
            self._gather()
        else:
            seen: list[tuple[str, InputState | None, int | None]] = []
            fresh = self.runs.fresh_inputs(self.st, self.part, self.task, seen)
            for ds, have, consumed in seen:
                self._input(ds, have, consumed)
            self._trigger(fresh)
        self._pacing()
        tr = self.part.runs.get(self.task.name)
        self._attempt(tr)
        self._slots()
        pool_wait = self._pool(tr)
        failed_upstream = self._upstream()
        status, verdict = self._verdict(tr, pool_wait, failed_upstream)
        return Explanation(
            pipeline=self.st.name,
            task=self.task.name,
            partition=self.key,
            status=status,
            verdict=verdict,
            items=self.items,
        )

    # -- the checklist ---------------------------------------------------------------------------
    def _paused(self) -> None:
        paused = self.st.paused
        if paused is None:
            self.add("paused", True, "pipeline not paused", "new runs and attempts may start")
        else:
            self.add(
                "paused",
                False,
                "pipeline paused",
                f"paused by {paused.operator} at {_at(paused.at)}: {paused.reason}; inputs are "
                "kept and decided on resume",
            )

    def _source(self, ds: str) -> tuple[str, PartitionState | None]:
        """Where the pipeline keeps `ds`: this partition, or the shared one if unpartitioned."""
        if self.engine.app.datasets[ds].partitions.partitioned:
            return self.key, self.part
        return UNPARTITIONED, self.shared

    def _input(self, ds: str, have: InputState | None, consumed: int | None) -> None:
        dkey, source = self._source(ds)
        latest = have.version if have is not None else None
        newer = latest is not None and latest > (consumed if consumed is not None else -1)
        facts = [f"latest version {latest}" if latest is not None else "no version yet"]
        facts.append(f"last consumed {consumed}" if consumed is not None else "never consumed")
        ok = newer
        if ds in self.ignored:
            tr = self.part.runs[self.task.name]
            facts.append(
                f"version {latest} restates partition {dkey}, consumed at version "
                f"{tr.inputs[ds]} by run {tr.run_id}: ignored (restatements='ignore')"
            )
            self.add("input", False, f"input {ds}: restatement ignored", "; ".join(facts))
            return
        if ds in self.restated and newer:
            facts.append(f"a restatement of partition {dkey}, followed")
        held = self._held(ds, dkey, latest)
        if held:
            facts.append(held)
            ok = False
            self.waiting_for.append(f"checks on {ds}")
        rejected = source.rejected.get(ds) if source is not None else None
        if rejected is not None and (latest is None or rejected[0] > latest):
            facts.append(f"version {rejected[0]} rejected: {rejected[1]}")
        if not newer and not held:
            self.waiting_for.append(f"a newer {ds}" if latest is not None else ds)
        where = f" ({'partition ' + dkey if dkey else 'unpartitioned'})"
        title = f"input {ds}: " + ("newer than last consumed" if newer else "nothing new")
        self.add("input", ok, title, "; ".join(facts) + where)

    def _held(self, ds: str, dkey: str, latest: int | None) -> str:
        """Newer versions of `ds` the router holds back for their checks, with their state."""
        dst: DatasetState | None = self.engine.datasets.get((ds, dkey))
        if dst is None:
            return ""
        found = []
        for version, pending in sorted(dst.pending.items()):
            if latest is not None and version <= latest:
                continue
            waiting = [name for name, result in pending.results.items() if result is None]
            failed = [
                f"{name} failed" + (f" ({result[2]})" if result[2] else "")
                for name, result in pending.results.items()
                if result is not None and not result[0]
            ]
            parts = [f"checks pending: {', '.join(waiting)}"] if waiting else []
            found.append(f"version {version} held: " + "; ".join(parts + failed))
        return "; ".join(found)

    def _trigger(self, fresh: dict[str, int] | None) -> None:
        rerun = self.part.reruns.get(self.task.name)
        tr = self.part.runs.get(self.task.name)
        rule = self.task.trigger
        if rerun is not None and tr is not None:
            detail = f"{rerun.cause}; on {_versions(tr.inputs)}"
            self.add("trigger", True, "operator's rerun requested", detail)
            return
        if fresh is not None:
            self.add("trigger", True, f"trigger rule '{rule}' met", f"on {_versions(fresh)}")
            return
        follows = [ds for ds in self.restated if ds not in self.ignored]
        if rule == "all" and follows:
            unsettled = self.runs.unsettled(self.st, self.part, self.task)
            if unsettled:
                detail = f"restated {', '.join(sorted(follows))}; upstream: {', '.join(unsettled)}"
                self.add("trigger", False, "restatement waits for upstream", detail)
                self.waiting_for.append("upstream " + ", ".join(unsettled))
                return
        need = (
            "every input newer than the version last consumed"
            if rule == "all"
            else "one input newer than the version last consumed"
        )
        self.add("trigger", False, f"trigger rule '{rule}' not met", f"it needs {need}")

    def _gather(self) -> None:
        """A gather's trigger: the fan-out in this partition and how far its items are."""
        app = self.runs.app
        source = app.gather_source[self.task.name].name
        fo = self.part.fan_outs.get(source)
        if fo is None:
            detail = "it runs once per fan-out, after every item ended"
            self.add("trigger", False, f"no fan-out of {source} here yet", detail)
            self.waiting_for.append(f"a fan-out of {source}")
            return
        ended = len(fo.results) + len(fo.failed)
        detail = f"fan-out {fo.seq} (run {fo.run_id}): {ended} of {len(fo.items)} items ended"
        if fo.failed:
            detail += f"; failed: {', '.join(fo.failed[:10])}"
        if fanout.gathered(app, self.part, self.task) is not None:
            self.add("trigger", True, "every item of the fan-out ended", detail)
        elif not fo.complete:
            pending = [k for k in fo.items if k not in fo.results and k not in fo.failed]
            self.add("trigger", False, "waiting for items", f"{detail}; next: {pending[0]}")
            self.waiting_for.append(f"{len(pending)} items of the fan-out of {source}")
        elif self.task.trigger == "all" and fo.failed:
            self.add("trigger", False, "an item failed (trigger rule 'all')", detail)
            self.waiting_for.append(f"a fan-out of {source} whose items all succeed")
        else:
            self.add("trigger", False, "this fan-out was gathered", detail)
            self.waiting_for.append(f"a new fan-out of {source}")

    def _pacing(self) -> None:
        task = self.task
        if not pacing.paced(task):
            return
        rules = []
        if task.debounce_s is not None:
            rules.append(f"debounce {task.debounce_s:g}s")
        if task.cooldown_s is not None:
            rules.append(f"cooldown {task.cooldown_s:g}s")
        held = self.part.pacing.get(task.name)
        due = held.due if held is not None else None
        if due is None:
            self.add("pacing", True, "nothing held back", ", ".join(rules))
            return
        why = pacing.why(task, self.part, due)
        self.add("pacing", False, f"{why} until {_at(due)}", ", ".join(rules))

    def _attempt(self, tr: TaskRun | None) -> None:
        if tr is None:
            self.add("attempt", True, "no attempt yet", "never ran in this partition")
            return
        of = f"attempt {tr.attempt} of {self.task.retry.count + 1}"
        run = f"run {tr.run_id}"
        if tr.status == "queued":
            detail = f"{of} queued since {_at(tr.requested_at)} ({run})"
            self.add("attempt", True, "queued", detail)
        elif tr.status == "running":
            since = tr.started_at if tr.started_at is not None else tr.requested_at
            detail = f"{of} running on worker {tr.worker} since {_at(since)} ({run})"
            self.add("attempt", True, "running", detail)
        elif tr.status == "retry_wait":
            when = _at(tr.retry_at) if tr.retry_at is not None else "?"
            detail = f"{of} failed: {tr.error}; attempt {tr.attempt + 1} at {when}"
            self.add("attempt", False, "retry pending", detail)
        elif tr.status == "failed":
            detail = f"failed after {tr.attempt} attempt(s): {tr.error} ({run})"
            self.add("attempt", False, "last attempt failed", detail)
        else:
            emitted = ", ".join(tr.outputs) or "nothing" + (f" ({tr.error})" if tr.error else "")
            detail = f"{of} succeeded on {_versions(tr.inputs)}, emitted {emitted} ({run})"
            self.add("attempt", True, "last attempt succeeded", detail)

    def _slots(self) -> None:
        limit = self.engine.app.pipelines[self.st.name].max_active_runs
        active = len(self.st.active)
        run = self.part.run
        if run is not None:
            detail = f"run {run.run_id} in progress since {_at(run.started_at)}"
            self.add("max_active_runs", True, "run in progress", detail)
        elif self.key in self.st.waiting:
            place = self.st.waiting.index(self.key) + 1
            detail = (
                f"{active} of {limit} runs active; this partition is {place} of "
                f"{len(self.st.waiting)} waiting"
            )
            self.add("max_active_runs", False, "waiting for a run slot", detail)
        elif limit is None:
            self.add("max_active_runs", True, "no run limit", f"{active} runs active")
        else:
            ok = self.runs.slot_free(self.st)
            title = "a run slot is free" if ok else "every run slot taken"
            self.add("max_active_runs", ok, title, f"{active} of {limit} runs active")

    def _pool(self, tr: TaskRun | None) -> str:
        """The pool line; returns the pool's name when this task's run waits in its queue."""
        pool = self.task.pool
        if pool is None:
            return ""
        gate = self.engine.gate
        running, queued, slots = gate.usage().get(pool, (0, 0, 0))
        usage = f"{running}/{slots} slots used, {queued} queued"
        in_flight = tr is not None and tr.status in ("queued", "running")
        if in_flight and tr is not None:
            ahead = [r.run_id for r in gate.queued.get(pool, ())]
            if tr.run_id in ahead:
                place = ahead.index(tr.run_id) + 1
                detail = f"run {tr.run_id} is {place} in the queue of pool {pool}: {usage}"
                self.add("pool", False, f"waiting for pool {pool}", detail)
                return pool
            if tr.run_id in gate.running.get(pool, ()):
                self.add("pool", True, f"holds a slot of pool {pool}", usage)
                return ""
        self.add("pool", True, f"pool {pool}", usage)
        return ""

    def _upstream(self) -> list[str]:
        """A line per task upstream in this pipeline; the names of those that failed or did
        not emit what this task consumes, in the current or last run."""
        app = self.engine.app
        order: list[Task] = []
        frontier = [self.task]
        while frontier:
            for ds in frontier.pop().inputs:
                producer = app.producer.get(ds)
                same = producer is not None and producer.pipeline == self.st.name
                if same and producer is not None and producer not in order:
                    order.append(producer)
                    frontier.append(producer)
        direct = {ds: app.producer.get(ds) for ds in self.task.inputs}
        bad: list[str] = []
        for up in order:
            source = self.part if up.partitioning.partitioned else self.shared
            tr = source.runs.get(up.name) if source is not None else None
            title = f"upstream {up.name}"
            if tr is None:
                self.add("upstream", True, title, "has not run here")
            elif tr.status == "failed":
                self.add("upstream", False, f"{title} failed", tr.error or "")
                bad.append(up.name)
            elif tr.status == "succeeded":
                ours = [ds for ds, p in direct.items() if p is up]
                missing = [ds for ds in ours if ds not in tr.outputs]
                if missing:
                    why = f" ({tr.error})" if tr.error else ""
                    detail = f"succeeded without emitting {', '.join(missing)}{why}"
                    self.add("upstream", False, f"{title} skipped", detail)
                    bad.append(up.name)
                else:
                    self.add("upstream", True, f"{title} succeeded", f"run {tr.run_id}")
            else:
                self.add("upstream", True, f"{title} {tr.status}", f"run {tr.run_id}")
        return bad

    # -- the answer ------------------------------------------------------------------------------
    def _verdict(self, tr: TaskRun | None, pool: str, bad: list[str]) -> tuple[Status, str]:
        paused = self.st.paused
        if tr is not None and tr.status == "running":
            return "running", f"running on worker {tr.worker}"
        if tr is not None and tr.status == "queued":
            if pool:
                return "waiting", f"waiting for a slot of pool {pool}"
            return "queued", "queued: waiting for a worker"
        if tr is not None and tr.status == "retry_wait":
            if paused is not None:
                return "waiting", f"waiting for resume (paused by {paused.operator}) to retry"
            when = _at(tr.retry_at) if tr.retry_at is not None else "?"
            return "waiting", f"waiting for retry at {when} (attempt {tr.attempt + 1})"
        if self.runs.wanted(self.st, self.key, self.part, self.task) is not None:
            if paused is not None:
                return "waiting", f"waiting for resume (paused by {paused.operator})"
            held = self.part.pacing.get(self.task.name)
            if held is not None and held.due is not None:
                why = pacing.why(self.task, self.part, held.due)
                return "waiting", f"{why} until {_at(held.due)}"
            if self.part.run is None and not self.runs.slot_free(self.st):
                return "waiting", "waiting for a run slot (max_active_runs)"
            return "would_run", "would run now"
        reasons = []
        if tr is not None and tr.status == "failed":
            reasons.append(f"last attempt failed ({tr.error})")
        if bad:
            reasons.append(f"upstream failed or skipped: {', '.join(bad)}")
        if self.ignored:
            reasons.append(f"restated {', '.join(self.ignored)} ignored (restatements='ignore')")
        wanted = self.waiting_for if self.task.trigger == "all" else ["a newer version of an input"]
        if wanted:
            reasons.append("waiting for " + ", ".join(wanted))
        return "waiting", "; ".join(reasons)
