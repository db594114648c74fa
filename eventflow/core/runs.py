"""Pipeline runs, decided: (pipeline state, event, now) -> (changed state, commands).

Per (pipeline, partition): triggers, de-duplication, retries with backoff, timeouts, heartbeats,
max active runs, run completion and outcome.

No I/O and no clock: time arrives as `now`, and timers leave as `Wake` commands that come back as
`tick`. The same input always yields the same output, so any runtime (embedded, Kafka) that
persists the state and the commands together gets the same behaviour. `decide` updates the state
in place and names the partitions it changed, so a store writes only those.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Literal

from ..definitions import App, Task
from ..errors import EventError
from ..events import (
    DatasetProduced,
    DatasetProducedData,
    DatasetResetData,
    DatasetVersion,
    Event,
    Payload,
    PipelineInputData,
    PipelineRunData,
    PipelineRunFailed,
    PipelineRunStarted,
    PipelineRunSucceeded,
    TaskFailedData,
    TaskOutcome,
    TaskProgressData,
    TaskRef,
    TaskRequestedData,
    TaskSucceededData,
)
from ..partitions import UNPARTITIONED
from . import fanout, pacing
from .state import (
    IN_FLIGHT,
    Decision,
    Dispatch,
    InputState,
    PartitionState,
    PipelineState,
    Publish,
    Release,
    RunState,
    TaskRun,
    Wake,
)

#: Extra time a worker gets to report its own timeout before declaring it.
TIMEOUT_GRACE_S = 2.0


def run_key(task: str, partition: str, inputs: dict[str, int], rerun: int = 0) -> str:
    """Identity of a task run's input versions: equal inputs, equal key, never a second run.
    An operator's rerun salts it with the partition's rerun counter, so the rerun's ids differ
    from every earlier one (workers skip a run id they have finished)."""
    parts = [task, partition, *(f"{d}={v}" for d, v in sorted(inputs.items()))]
    if rerun:
        parts.append(f"rerun={rerun}")
    return hashlib.blake2b("|".join(parts).encode(), digest_size=6).hexdigest()


def run_id(task: str, partition: str, key: str, attempt: int) -> str:
    return f"{task}:{partition}:{key}:{attempt}"


def key_of(ref: TaskRef) -> str | None:
    """The input-versions key inside `ref.run_id`, if the id is the one `run_id` builds for
    this task, partition and attempt."""
    prefix, suffix = f"{ref.task}:{ref.partition}:", f":{ref.attempt}"
    rid = ref.run_id
    if not (rid.startswith(prefix) and rid.endswith(suffix)):
        return None
    key = rid[len(prefix) : len(rid) - len(suffix)]
    return key if len(key) == 12 and all(c in "0123456789abcdef" for c in key) else None


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class Runs:
    """The run decisions for every pipeline of one App."""

    def __init__(
        self,
        app: App,
        *,
        default_timeout_s: float = 3600.0,
        heartbeat_timeout_s: float = 0.0,
        source: str = "eventflow",
    ) -> None:
        self.app = app
        self.default_timeout_s = default_timeout_s
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.source = source
        self._upstream: dict[str, tuple[list[str], set[str]]] = {}

    # -- entry points ----------------------------------------------------------------------------
    def validate(self, st: PipelineState, ref: TaskRef) -> None:
        """Refuse a task event (or a pooled request) that does not match the run it claims,
        before any state changes: a task of another pipeline, a malformed partition, a run id
        not derived for this task, partition and attempt, a request naming another pool than
        the task's, outputs the task does not declare or in another partition. A result for a
        run not in flight is refused by its handler, which still frees the run's pool slot."""
        task = self.app.tasks.get(ref.task)
        if task is None or task.pipeline != st.name:
            raise EventError(f"pipeline {st.name!r} has no task {ref.task!r}")
        if task.partitioning.partitioned == (ref.partition == UNPARTITIONED):
            raise EventError(f"task {ref.task!r} does not run in partition {ref.partition!r}")
        key = key_of(ref)
        if key is None:
            raise EventError(
                f"run id {ref.run_id!r} is not a run of {ref.task!r} in this partition"
            )
        if isinstance(ref, TaskRequestedData) and ref.pool != task.pool:
            raise EventError(f"task {ref.task!r} does not run in pool {ref.pool!r}")
        if isinstance(ref, TaskSucceededData):
            fanned: set[str] = set()
            for out in ref.outputs:
                if out.dataset not in task.outputs:
                    raise EventError(f"task {ref.task!r} does not declare output {out.dataset!r}")
                scheme = self.app.datasets[out.dataset].partitions
                if task.fan_out is not None and scheme.kind == "dynamic":
                    scheme.validate(out.partition)
                    fanned.add(out.partition)
                    if len(fanned) > task.fan_out.max_width:
                        raise EventError(
                            f"task {ref.task!r} fanned out wider than {task.fan_out.max_width}"
                        )
                    continue
                partitioned = scheme.partitioned
                if out.partition != (ref.partition if partitioned else UNPARTITIONED):
                    raise EventError(
                        f"output {out.dataset!r} in partition {out.partition!r} of a run in "
                        f"partition {ref.partition!r}"
                    )

    def on_reset(self, st: PipelineState, data: DatasetResetData) -> Decision:
        """Forget input versions above the reset mark, so newer real versions trigger again."""
        d = Decision()
        keys = list(st.partitions) if data.partition == UNPARTITIONED else [data.partition]
        for key in keys:
            part = st.partitions.get(key)
            if part is None:
                continue
            have = part.inputs.get(data.dataset)
            if have is not None and have.version > data.version:
                del part.inputs[data.dataset]
                d.dirty.add(key)
            for consumed in part.consumed.values():
                if consumed.get(data.dataset, 0) > data.version:
                    consumed[data.dataset] = data.version
                    d.dirty.add(key)
        return d

    def known_version(self, st: PipelineState, dataset: str, partition: str) -> int | None:
        """The newest version of `dataset` the pipeline holds for `partition`, if any."""
        part = st.partitions.get(partition)
        have = part.inputs.get(dataset) if part is not None else None
        return have.version if have is not None else None

    def on_input(self, st: PipelineState, data: PipelineInputData, now: float) -> Decision:
        """A routed dataset version (after its checks) for a pipeline that consumes it."""
        d = Decision()
        part = st.partition(data.partition)
        run = part.run
        expected = run is not None and run.expected.get(data.dataset) == data.version
        if run is not None and expected:
            del run.expected[data.dataset]
            d.dirty.add(data.partition)
        known = part.inputs.get(data.dataset)
        if not data.accepted:
            if run is not None and expected:
                run.failures.append(f"{data.dataset}@{data.version} rejected: {data.reason}")
                run.blocked.append(data.dataset)
            if known is None or data.version > known.version:
                part.rejected[data.dataset] = (data.version, data.reason)  # for `explain`
                d.dirty.add(data.partition)
            self.finish_if_done(st, data.partition, now, d)
            if data.partition != UNPARTITIONED and self.app.gathers_of:  # an item failed
                found = fanout.rejected(
                    self.app, st, data.partition, data.dataset, data.producer, d
                )
                self._gather(st, found, now, d)
            return d
        if known is None or data.version > known.version:
            if known is not None and known.producer != data.producer and self.app.gathers_of:
                # Keys are global: another fan-out took this item over before it ended for
                # the last one, whose gather must not wait for it forever.
                found = fanout.rejected(
                    self.app, st, data.partition, data.dataset, known.producer, d
                )
                self._gather(st, found, now, d)
            part.inputs[data.dataset] = InputState(data.version, data.metadata, data.producer)
            part.rejected.pop(data.dataset, None)
            d.dirty.add(data.partition)
            consumers = [
                t for t in self.app.consumers.get(data.dataset, ()) if t.pipeline == st.name
            ]
            for task in consumers:
                pacing.updated(part, task, now)
            if data.partition == UNPARTITIONED:
                for key in list(st.partitions):
                    self.evaluate(st, key, consumers, now, d)
            else:
                self.evaluate(st, data.partition, consumers, now, d)
        self.finish_if_done(st, data.partition, now, d)
        if data.partition != UNPARTITIONED:  # an item nothing here runs on ends at once
            self.settle(st, data.partition, False, now, d)
        return d

    def on_started(self, st: PipelineState, data: TaskProgressData, now: float) -> Decision:
        d = Decision()
        tr = self._current(st, data)
        if tr is not None and tr.run_id == data.run_id and tr.status in ("queued", "running"):
            tr.started_at = now  # again on redelivery: the timeout counts from this start
            tr.status = "running"
            tr.seen_at = now
            tr.worker = data.worker
            d.dirty.add(data.partition)
            d.commands.append(Wake(self._deadline(self.app.tasks[data.task], tr, now), st.name))
        return d

    def on_heartbeat(self, st: PipelineState, data: TaskProgressData, now: float) -> Decision:
        d = Decision()
        tr = self._current(st, data)
        if tr is not None and tr.run_id == data.run_id and tr.status == "running":
            tr.seen_at = now
            d.dirty.add(data.partition)
            d.commands.append(Wake(self._deadline(self.app.tasks[data.task], tr, now), st.name))
        return d

    def on_succeeded(self, st: PipelineState, data: TaskSucceededData, now: float) -> Decision:
        """First success of a generation wins, even from an attempt thought lost."""
        task = self.app.tasks[data.task]
        d = self._ended(st, task, data)
        tr = self._current(st, data)
        if d.refused is not None or tr is None or tr.status not in IN_FLIGHT:
            return d
        if tr.status in ("queued", "running"):
            d.commands.append(Release(tr.run_id, task.pool))
        tr.status = "succeeded"
        tr.run_id = data.run_id
        tr.attempt = data.attempt
        tr.error = data.skipped
        tr.outputs = list(dict.fromkeys(o.dataset for o in data.outputs))
        tr.worker = data.worker
        d.dirty.add(data.partition)
        part = st.partitions[data.partition]
        if task.fan_out is not None:
            fanout.on_fanned(self.app, part, task, data)
        for out in data.outputs:
            if out.partition != data.partition and out.partition != UNPARTITIONED:
                pass  # an item of a fan-out: it runs in its own partition
            elif part.run is not None and any(
                c.pipeline == st.name for c in self.app.consumers.get(out.dataset, ())
            ):
                part.run.expected[out.dataset] = out.version
            produced = DatasetProducedData(
                dataset=out.dataset,
                partition=out.partition,
                version=out.version,
                metadata=out.metadata,
                producer=data.run_id,
            )
            d.commands.append(Publish(self._event(DatasetProduced, produced, tr.pipeline_run)))
        self.evaluate(st, data.partition, [task], now, d)
        self.finish_if_done(st, data.partition, now, d)
        return d

    def on_failed(self, st: PipelineState, data: TaskFailedData, now: float) -> Decision:
        task = self.app.tasks[data.task]
        d = self._ended(st, task, data)
        tr = self._current(st, data)
        if d.refused is not None or tr is None:
            return d
        if tr.run_id == data.run_id and tr.status in ("queued", "running"):
            self._fail(st, data.partition, task, tr, data, now, d)
            self.finish_if_done(st, data.partition, now, d)
        return d

    def _ended(self, st: PipelineState, task: Task, data: TaskProgressData) -> Decision:
        """Whatever becomes of a result, its attempt has ended: the pool slot its run id may
        hold is freed. A signed request the pool stage admitted for a run this coordinator never
        asked for holds one too, and nothing else would ever free it. A result for a run not in
        flight is refused (`Decision.refused`), with that release all the same."""
        d = Decision()
        tr = self._current(st, data)
        if tr is None or tr.key != key_of(data):
            d.refused = f"result for run {data.run_id!r}, which is not in flight"
        # The attempt in flight is released by the handler, as it decides on it.
        in_flight = (
            tr is not None and tr.run_id == data.run_id and tr.status in ("queued", "running")
        )
        if task.pool is not None and not in_flight:
            d.commands.append(Release(data.run_id, task.pool))
        return d

    def tick(self, st: PipelineState, now: float, heard_since: float | None = None) -> Decision:
        """Retries whose backoff ended, and running tasks past their deadline or silent.

        `heard_since`: since when the runtime has been able to hear workers' reports (a Kafka
        coordinator after a broker outage). Silence before then proves nothing, so no run is
        declared lost or timed out until a whole heartbeat window has been heard since."""
        d = Decision()
        judge_from = self._judge_from(heard_since)
        judging = judge_from is None or now >= judge_from
        if st.paused is None:  # a resume decides what came due meanwhile
            for key in list(st.held):
                self._decide_held(st, key, now, d)
        for key in list(st.active):
            part = st.partitions[key]
            for name, tr in list(part.runs.items()):
                task = self.app.tasks[name]
                if tr.status == "retry_wait" and tr.retry_at is not None and tr.retry_at <= now:
                    if st.paused is None:
                        self._retry(st, key, task, tr, now, d)
                elif tr.status == "running" and tr.started_at is not None and judging:
                    timeout = self.app.timeout_of(task, self.default_timeout_s)
                    kind: Literal["timeout", "lost"]
                    if now >= tr.started_at + timeout + TIMEOUT_GRACE_S:
                        why, kind = (
                            f"timed out after {timeout:g}s (no report from worker)",
                            "timeout",
                        )
                    elif self._silent(tr, now):
                        why, kind = f"worker {tr.worker} stopped sending heartbeats", "lost"
                    else:
                        continue
                    failure = TaskFailedData(
                        run_id=tr.run_id,
                        task=name,
                        pipeline=st.name,
                        partition=key,
                        attempt=tr.attempt,
                        worker=tr.worker or "",
                        error=why,
                        kind=kind,
                    )
                    self._fail(st, key, task, tr, failure, now, d)
            self.finish_if_done(st, key, now, d)
        wake = self.next_wake(st, judge_from)
        if wake is not None:
            d.commands.append(Wake(wake, st.name))
        return d

    def _decide_held(self, st: PipelineState, key: str, now: float, d: Decision) -> None:
        """Decisions a debounce or cooldown held back in `key` that are due now, on the
        newest versions (held again if their inputs moved meanwhile)."""
        part = st.partitions.get(key)
        names = pacing.due(part, now) if part is not None else []
        if pacing.release(st, key, part):
            d.header = True
        if part is None or not names:
            return
        d.dirty.add(key)
        tasks = [self.app.tasks[n] for n in names if n in self.app.tasks]
        self.evaluate(st, key, tasks, now, d)
        self.finish_if_done(st, key, now, d)

    def _judge_from(self, heard_since: float | None) -> float | None:
        if heard_since is None:
            return None
        return heard_since + max(self.heartbeat_timeout_s, TIMEOUT_GRACE_S)

    def in_flight(self, st: PipelineState) -> list[TaskRequestedData]:
        """Requests that must be (re)sent after a restart: queued or running runs, oldest first."""
        found: list[tuple[float, TaskRequestedData]] = []
        for key in st.active:
            for name, tr in st.partitions[key].runs.items():
                if tr.status in ("queued", "running"):
                    task = self.app.tasks[name]
                    req = self._request_data(st, key, task, tr)
                    found.append((tr.requested_at, req))
        return [req for _, req in sorted(found, key=lambda pair: pair[0])]

    def next_wake(self, st: PipelineState, judge_from: float | None = None) -> float | None:
        """The earliest retry or deadline; deadlines no earlier than `judge_from`."""
        times: list[float] = []
        for key in st.active:
            for name, tr in st.partitions[key].runs.items():
                if tr.status == "retry_wait" and tr.retry_at is not None:
                    if st.paused is None:  # a resume asks for the wake again
                        times.append(tr.retry_at)
                elif tr.status == "running":
                    seen = tr.seen_at or tr.requested_at
                    deadline = self._deadline(self.app.tasks[name], tr, seen)
                    times.append(max(deadline, judge_from or deadline))
        held = pacing.next_due(st) if st.paused is None else None
        if held is not None:
            times.append(held)
        return min(times) if times else None

    # -- triggering ------------------------------------------------------------------------------
    def evaluate(
        self, st: PipelineState, key: str, tasks: list[Task], now: float, d: Decision
    ) -> None:
        if st.paused is not None:
            return  # the inputs are kept; `resume` evaluates every partition
        part = st.partitions.get(key)
        if part is None:
            return
        shared = st.partitions.get(UNPARTITIONED)
        for task in tasks:
            versions = self.wanted(st, key, part, task)
            if versions is None:
                continue
            if task.name not in part.reruns and pacing.paced(task):
                held = pacing.hold(task, part, shared, now)
                if held is not None:
                    pacing.defer(st, key, part, task, held[0], d)
                    continue
            run = part.run
            if run is None:
                if not self.slot_free(st):
                    if key not in st.waiting:
                        st.waiting.append(key)
                    return
                run = self._start_run(st, key, now, d)
            rerun = part.reruns.pop(task.name, None)
            if rerun is not None and rerun.cause not in run.causes:
                run.causes.append(rerun.cause)
            salt = rerun.salt if rerun is not None else 0
            self._request(st, key, task, versions, 1, run.run_id, now, d, rerun=salt)
            pacing.started(st, key, part, task, now)

    def wanted(
        self, st: PipelineState, key: str, part: PartitionState, task: Task
    ) -> dict[str, int] | None:
        """The input versions `task` would run on in this partition now that a run slot is
        free and the pipeline not paused, or None: it runs elsewhere, is in flight, or neither
        an operator's rerun nor its trigger rule asks for it."""
        if task.partitioning.partitioned == (key == UNPARTITIONED):
            return None
        current = part.runs.get(task.name)
        if current is not None and current.status in IN_FLIGHT:
            return None
        if current is not None and task.name in part.reruns:
            return dict(current.inputs)
        if task.gather:
            return fanout.gathered(self.app, part, task)
        return self.fresh_inputs(st, part, task)

    def slot_free(self, st: PipelineState) -> bool:
        """Whether a new pipeline run may start (`max_active_runs`)."""
        limit = self.app.pipelines[st.name].max_active_runs
        return limit is None or len(st.active) < limit

    def fresh_inputs(
        self,
        st: PipelineState,
        part: PartitionState,
        task: Task,
        seen: list[tuple[str, InputState | None, int | None]] | None = None,
    ) -> dict[str, int] | None:
        """Input versions to run on, or None when the trigger rule is not met. `seen`, if
        given, receives (dataset, latest version known, version last consumed) per input, in
        the task's order: what `explain` shows of this same verdict.

        A restatement (`restated`) counts as new with `restatements="follow"`, even where
        `all` would wait for the other inputs, once nothing upstream of the task is still on
        its way there (`unsettled`); with `"ignore"` it does not count, unless the task's last
        run in the partition failed."""
        last = part.consumed.get(task.name, {})
        shared = st.partitions.get(UNPARTITIONED)
        restated = self.restated(part, task)
        ignored = task.restatements == "ignore" and self._succeeded(part, task)
        versions: dict[str, int] = {}
        newer = stale = missing = follows = 0
        for ds in task.inputs:
            source = part if self.app.datasets[ds].partitions.partitioned else shared
            have = source.inputs.get(ds) if source is not None else None
            if seen is not None:
                seen.append((ds, have, last.get(ds)))
            if have is None:
                missing += 1
                if task.trigger == "all" and seen is None:
                    return None
                continue
            versions[ds] = have.version
            if ds in restated and ignored:
                stale += 1
            elif have.version > last.get(ds, -1):
                newer += 1
                follows += ds in restated
            else:
                stale += 1
                if task.trigger == "all" and seen is None and not restated:
                    return None
        if not newer:
            return None
        if task.trigger == "any" or not (missing or stale):
            return versions
        # `all` with an input not newer: a restatement followed, once upstream settled.
        if missing or not follows or self.unsettled(st, part, task):
            return None
        return versions

    def restated(self, part: PartitionState, task: Task) -> set[str]:
        """Inputs of `task` restated in this partition: partitioned inputs with a version newer
        than the one its last run here consumed (only a task that ran here has restatements)."""
        tr = part.runs.get(task.name)
        if tr is None:
            return set()
        found = set()
        for ds, consumed in tr.inputs.items():
            have = part.inputs.get(ds)
            partitioned = self.app.datasets[ds].partitions.partitioned
            if partitioned and have is not None and have.version > consumed:
                found.add(ds)
        return found

    def _succeeded(self, part: PartitionState, task: Task) -> bool:
        tr = part.runs.get(task.name)
        return tr is not None and tr.status == "succeeded"

    def unsettled(self, st: PipelineState, part: PartitionState, task: Task) -> list[str]:
        """What upstream of `task` in its pipeline is still on its way in this partition: tasks
        in flight, held back, or failed there, and outputs of the run not yet routed back. A
        restatement waits for them, so that the task runs once on the versions they bring
        rather than once on a mix and again."""
        cached = self._upstream.get(task.name)
        if cached is None:
            names: list[str] = []
            frontier = [task]
            while frontier:
                for ds in frontier.pop().inputs:
                    up = self.app.producer.get(ds)
                    if up is not None and up.pipeline == task.pipeline and up.name not in names:
                        names.append(up.name)
                        frontier.append(up)
            feeds = {ds for n in names for ds in self.app.tasks[n].inputs} | set(task.inputs)
            cached = self._upstream[task.name] = (names, feeds)
        names, feeds = cached
        found = []
        for name in names:
            tr = part.runs.get(name)
            held = part.pacing.get(name)
            if tr is not None and (tr.status in IN_FLIGHT or tr.status == "failed"):
                found.append(f"{name} ({tr.status})")
            elif held is not None and held.due is not None:
                found.append(f"{name} (held)")
        run = part.run
        if run is not None:
            found += [f"{ds} (on its way)" for ds in run.expected if ds in feeds]
        return found

    def settle(
        self,
        st: PipelineState,
        key: str,
        failed: bool,
        now: float,
        d: Decision,
        *,
        ran: bool = False,
    ) -> None:
        """An item of a fan-out ended: its gathers may run now in the partition that fanned
        out."""
        if not self.app.gathers_of:
            return  # on the hot path of every App: most have no fan-out
        self._gather(st, fanout.settle(self.app, st, key, failed, d, ran=ran), now, d)

    def _gather(
        self, st: PipelineState, found: list[tuple[str, list[Task]]], now: float, d: Decision
    ) -> None:
        for parent, gathers in found:
            self.evaluate(st, parent, gathers, now, d)
            self.finish_if_done(st, parent, now, d)

    def _start_run(self, st: PipelineState, key: str, now: float, d: Decision) -> RunState:
        part = st.partitions[key]
        part.run_seq += 1
        run = RunState(run_id=f"{st.name}:{key or '-'}:{part.run_seq}", started_at=now)
        part.run = run
        st.active.append(key)
        if key in st.waiting:
            st.waiting.remove(key)
        data = PipelineRunData(
            pipeline=st.name,
            partition=key,
            run_id=run.run_id,
            status="running",
            started_at=_at(now),
        )
        d.commands.append(Publish(self._event(PipelineRunStarted, data, run.run_id)))
        return run

    def _retry(
        self, st: PipelineState, key: str, task: Task, tr: TaskRun, now: float, d: Decision
    ) -> None:
        self._request(
            st, key, task, tr.inputs, tr.attempt + 1, tr.pipeline_run, now, d, rerun=tr.rerun
        )
        # The retry stays in the trace of the attempts before it.
        retried = st.partitions[key].runs[task.name]
        retried.trace, retried.tracestate = tr.trace, tr.tracestate

    def _request(
        self,
        st: PipelineState,
        key: str,
        task: Task,
        versions: dict[str, int],
        attempt: int,
        pipeline_run: str,
        now: float,
        d: Decision,
        *,
        rerun: int = 0,
    ) -> None:
        part = st.partitions[key]
        rkey = run_key(task.name, key, versions, rerun)
        part.consumed[task.name] = dict(versions)
        tr = part.runs[task.name] = TaskRun(
            run_id=run_id(task.name, key, rkey, attempt),
            key=rkey,
            attempt=attempt,
            status="queued",
            inputs=dict(versions),
            pipeline_run=pipeline_run,
            requested_at=now,
            rerun=rerun,
        )
        run = part.run
        if run is not None and task.name not in run.tasks:
            run.tasks.append(task.name)
        d.dirty.add(key)
        d.commands.append(Dispatch(self._request_data(st, key, task, tr)))

    def _request_data(
        self, st: PipelineState, key: str, task: Task, tr: TaskRun
    ) -> TaskRequestedData:
        part = st.partitions[key]
        shared = st.partitions.get(UNPARTITIONED)
        inputs = []
        for ds, version in tr.inputs.items() if not task.gather else ():
            partitioned = self.app.datasets[ds].partitions.partitioned
            source = part if partitioned else shared
            have = source.inputs.get(ds) if source is not None else None
            meta = have.metadata if have is not None and have.version == version else {}
            inputs.append(
                DatasetVersion.model_construct(
                    dataset=ds, partition=key if partitioned else "", version=version, metadata=meta
                )
            )
        return TaskRequestedData(
            run_id=tr.run_id,
            task=task.name,
            pipeline=st.name,
            partition=key,
            attempt=tr.attempt,
            pipeline_run_id=tr.pipeline_run,
            inputs=inputs,
            timeout_s=self.app.timeout_of(task, self.default_timeout_s),
            pool=task.pool,
            items=fanout.items(self.app, part, task) if task.gather else None,
        )

    # -- failure and completion ------------------------------------------------------------------
    def _fail(
        self,
        st: PipelineState,
        key: str,
        task: Task,
        tr: TaskRun,
        data: TaskFailedData,
        now: float,
        d: Decision,
    ) -> None:
        d.commands.append(Release(tr.run_id, task.pool))
        tr.error = f"{data.kind}: {data.error}" if data.kind != "error" else data.error
        tr.worker = data.worker or tr.worker
        d.dirty.add(key)
        if data.retriable and tr.attempt <= task.retry.count:
            tr.status = "retry_wait"
            tr.retry_at = now + task.retry.delay(tr.attempt)
            d.commands.append(Wake(tr.retry_at, st.name))
            return
        tr.status = "failed"
        run = st.partitions[key].run
        if run is not None:
            tries = f" after {tr.attempt} attempts" if tr.attempt > 1 else ""
            run.failures.append(f"task {task.name!r} failed{tries}: {tr.error}")

    def finish_if_done(
        self, st: PipelineState, key: str, now: float, d: Decision, *, hold: bool = True
    ) -> None:
        """End the partition's run if nothing of it is in flight or on its way; `hold` keeps it
        open while a pause, a debounce or a cooldown holds back one of its tasks."""
        part = st.partitions.get(key)
        run = part.run if part is not None else None
        if part is None or run is None or run.expected:
            return
        if any(part.runs[t].status in IN_FLIGHT for t in run.tasks):
            return
        if hold and self._held_in(part, run):
            return  # the cascade goes on once the debounce or cooldown lets that task start
        if (
            hold
            and st.paused is not None
            and any(
                self.wanted(st, key, part, t) is not None for t in self.app.pipelines[st.name].tasks
            )
        ):
            return  # a task of this run is held by the pause: the run goes on after `resume`
        data = PipelineRunData(
            pipeline=st.name,
            partition=key,
            run_id=run.run_id,
            status="failed" if run.failures else "succeeded",
            started_at=_at(run.started_at),
            finished_at=_at(now),
            tasks=self._outcomes(st.name, part, run),
            reason="; ".join([*run.causes, *run.failures]),
        )
        kind = PipelineRunFailed if run.failures else PipelineRunSucceeded
        d.commands.append(Publish(self._event(kind, data, run.run_id)))
        part.run = None
        st.active.remove(key)
        d.dirty.add(key)
        tasks = self.app.pipelines[st.name].tasks
        self.admit_waiting(st, now, d)
        # Inputs that arrived while this run held the partition may trigger a new run now.
        self.evaluate(st, key, tasks, now, d)
        if key != UNPARTITIONED and self.app.gathers_of:
            self.settle(st, key, bool(run.failures), now, d, ran=True)

    def _held_in(self, part: PartitionState, run: RunState) -> bool:
        """Whether a task the run's cascade reached is held back by its debounce or cooldown."""
        held = [n for n, p in part.pacing.items() if p.due is not None and n not in run.tasks]
        return any(n in self.app.downstream(t) for n in held for t in run.tasks)

    def admit_waiting(self, st: PipelineState, now: float, d: Decision) -> None:
        """Partitions waiting for a run slot get the free ones, first come first served."""
        tasks = self.app.pipelines[st.name].tasks
        while st.waiting and st.paused is None and self.slot_free(st):
            nxt = st.waiting.pop(0)
            self.evaluate(st, nxt, tasks, now, d)
            d.dirty.add(nxt)

    def _outcomes(self, pipeline: str, part: PartitionState, run: RunState) -> list[TaskOutcome]:
        outcomes: list[TaskOutcome] = []
        failed_below: set[str] = set()
        reached: set[str] = set()
        for name in run.tasks:
            tr = part.runs[name]
            outcomes.append(
                TaskOutcome(
                    task=name,
                    status="failed" if tr.status == "failed" else "succeeded",
                    run_id=tr.run_id,
                    attempts=tr.attempt,
                    error=tr.error,
                    outputs=tr.outputs,
                )
            )
            below = set(self.app.downstream(name))
            reached |= below
            if tr.status == "failed":
                failed_below |= below
        for ds in run.blocked:
            for consumer in self.app.consumers.get(ds, ()):
                failed_below |= {consumer.name, *self.app.downstream(consumer.name)}
        dynamic = any(self.app.tasks[n].partitioning.kind == "dynamic" for n in run.tasks)
        for task in self.app.pipelines[pipeline].tasks:
            if task.gather or (task.partitioning.kind == "dynamic") != dynamic:
                continue  # runs in another partition, or once per fan-out in a run of its own
            if task.name in reached and task.name not in run.tasks:
                if task.name in failed_below:
                    outcomes.append(TaskOutcome(task=task.name, status="upstream_failed"))
                else:
                    outcomes.append(TaskOutcome(task=task.name, status="skipped"))
        return outcomes

    # -- helpers ---------------------------------------------------------------------------------
    def _current(self, st: PipelineState, data: TaskProgressData) -> TaskRun | None:
        part = st.partitions.get(data.partition)
        return part.runs.get(data.task) if part is not None else None

    def _deadline(self, task: Task, tr: TaskRun, seen: float) -> float:
        started = tr.started_at if tr.started_at is not None else seen
        deadline = started + self.app.timeout_of(task, self.default_timeout_s) + TIMEOUT_GRACE_S
        if self.heartbeat_timeout_s > 0:
            deadline = min(deadline, seen + self.heartbeat_timeout_s)
        return deadline

    def _silent(self, tr: TaskRun, now: float) -> bool:
        seen = tr.seen_at if tr.seen_at is not None else tr.requested_at
        return self.heartbeat_timeout_s > 0 and now - seen >= self.heartbeat_timeout_s

    def _event(self, kind: type[Event], data: Payload, correlation: str) -> Event:
        return kind.of(data, source=self.source, correlationid=correlation)
