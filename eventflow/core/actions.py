"""Operators' actions on a pipeline, decided: pause, resume, rerun a task or a run, cancel.

An action is an input like any other (`PipelineAction`, on `eventflow.pipeline-inputs`): decided
here over the same state and with the same run decisions (`Runs`), persisted and replicated with
the rest, carried out once. An action that cannot be carried out is refused before anything
changes, with a reason the operator reads.
"""

from __future__ import annotations

import math

from ..definitions import App, Task
from ..errors import EventError
from ..events import PipelineActionData, TaskFailed, TaskFailedData
from . import pacing
from .backfill import Backfills
from .runs import Runs
from .state import IN_FLIGHT, Decision, Pause, PipelineState, Publish, Release, Rerun, Wake

#: Operators' actions per pipeline whose ids are kept to refuse a repeat.
ACTIONS_KEPT = 64


class Actions:
    """The action decisions for every pipeline of one App, over its run decisions."""

    def __init__(self, runs: Runs) -> None:
        self.runs = runs
        self.app: App = runs.app
        self.backfills = Backfills(runs)

    def on_action(
        self, st: PipelineState, data: PipelineActionData, now: float, action_id: str
    ) -> Decision:
        """Pause, resume, rerun or cancel. Raises `EventError`, before any state changes, for an
        action that cannot be carried out, saying why (the operator reads it in the dead
        letter, or as the reply of a dev instance). An action is carried out once: the same
        event sent again (a retried send, a replay) is refused by its id."""
        if action_id in st.acted:
            raise EventError(f"action {action_id!r} was carried out already")
        d = self._act(st, data, now)
        st.acted = [*st.acted[1 - ACTIONS_KEPT :], action_id]
        d.header = True  # the pause and the ids of the actions carried out are in the header
        return d

    def _act(self, st: PipelineState, data: PipelineActionData, now: float) -> Decision:
        d = Decision()
        if data.action == "pause":
            if st.paused is not None:
                raise EventError(
                    f"pipeline {st.name!r} is already paused (by {st.paused.operator}: "
                    f"{st.paused.reason})"
                )
            st.paused = Pause(data.operator, data.reason, now)
        elif data.action == "resume":
            if st.paused is None:
                raise EventError(f"pipeline {st.name!r} is not paused")
            st.paused = None
            self._resume(st, now, d)
        elif data.action == "cancel":
            self._cancel(st, data, now, d)
        elif data.action in ("backfill", "cancel_backfill"):
            d = self.backfills.on_action(st, data, now)
        else:
            self._rerun(st, data, now, d)
        return d

    def _resume(self, st: PipelineState, now: float, d: Decision) -> None:
        """What was held while paused: the runs in progress go on, partitions waiting for a
        slot get the free ones, then every other partition is evaluated (inputs that arrived
        meanwhile trigger once per partition), and the retries that came due are asked for."""
        tasks = self.app.pipelines[st.name].tasks
        for key in list(st.active):
            self.runs.evaluate(st, key, tasks, now, d)
        self.runs.admit_waiting(st, now, d)
        for key in list(st.partitions):
            if key not in st.active and key not in st.waiting:
                self.runs.evaluate(st, key, tasks, now, d)
        for key in list(st.active):
            self.runs.finish_if_done(st, key, now, d)
        wake = self.runs.next_wake(st)
        if wake is not None:
            d.commands.append(Wake(wake, st.name))

    def _rerun(self, st: PipelineState, data: PipelineActionData, now: float, d: Decision) -> None:
        key = data.partition
        part = st.partitions.get(key)
        if data.action == "rerun_task":
            task = self.app.tasks.get(data.task or "")
            if task is None or task.pipeline != st.name:
                raise EventError(f"pipeline {st.name!r} has no task {data.task!r}")
            names = [task.name]
        else:
            if part is not None and part.run is not None:
                raise EventError(
                    f"pipeline {st.name!r} has run {part.run.run_id!r} in progress in partition "
                    f"{key!r}: cancel it first, or rerun single tasks"
                )
            names = [t.name for t in self.entry_tasks(st.name) if part and t.name in part.runs]
            if not names:
                raise EventError(f"pipeline {st.name!r} never ran in partition {key!r}")
        for name in names:
            tr = part.runs.get(name) if part is not None else None
            if part is None or tr is None:
                raise EventError(f"task {name!r} never ran in partition {key!r}")
            if tr.status in IN_FLIGHT:
                raise EventError(
                    f"task {name!r} is in flight in partition {key!r} ({tr.status}, run "
                    f"{tr.run_id!r}): wait for it to end, or cancel the run"
                )
            if name in part.reruns:
                raise EventError(f"a rerun of task {name!r} in partition {key!r} already waits")
        assert part is not None
        cause = data.describe()
        for name in names:
            part.rerun_seq += 1
            part.reruns[name] = Rerun(part.rerun_seq, cause)
            if part.run is not None:  # its earlier failure in this run is superseded
                failed = f"task {name!r} failed"
                part.run.failures = [f for f in part.run.failures if not f.startswith(failed)]
        d.dirty.add(key)
        self.runs.evaluate(st, key, [self.app.tasks[n] for n in names], now, d)

    def _cancel(self, st: PipelineState, data: PipelineActionData, now: float, d: Decision) -> None:
        """The active run ends failed, its attempts in flight stopped and not retried; a
        partition waiting for a run slot, or held back by a debounce or cooldown, stops
        waiting, and what it waited for is dropped."""
        key = data.partition
        part = st.partitions.get(key)
        run = part.run if part is not None else None
        if part is None or (run is None and key not in st.waiting and key not in st.held):
            raise EventError(
                f"pipeline {st.name!r} has no run in progress or waiting in partition {key!r}, "
                "nor a decision held back there"
            )
        cause = data.describe()
        tasks = self.app.pipelines[st.name].tasks
        d.dirty.add(key)
        part.reruns.clear()
        # Decisions a debounce or cooldown holds back here go with the run: dropped, like the
        # inputs of a partition waiting for a slot.
        for name in pacing.due(part, math.inf):
            task = self.app.tasks.get(name)
            versions = self.runs.wanted(st, key, part, task) if task is not None else None
            if versions is not None:
                part.consumed[name] = versions
        d.header |= pacing.release(st, key, part)
        if run is None:
            if key in st.waiting:
                st.waiting.remove(key)
            for task in tasks:
                versions = self.runs.wanted(st, key, part, task)
                if versions is not None:
                    part.consumed[task.name] = versions
            # An item of a fan-out that will not run now: it ended, failed, for its gather.
            self.runs.settle(st, key, True, now, d)
            return
        for name in run.tasks:
            tr = part.runs[name]
            if tr.status not in IN_FLIGHT:
                continue
            task = self.app.tasks[name]
            if tr.status in ("queued", "running"):
                d.commands.append(Release(tr.run_id, task.pool))
                failed = TaskFailedData(
                    run_id=tr.run_id,
                    task=name,
                    pipeline=st.name,
                    partition=key,
                    attempt=tr.attempt,
                    worker=tr.worker or "",
                    error=cause,
                    kind="cancelled",
                    retriable=False,
                )
                d.commands.append(
                    Publish(
                        TaskFailed.of(failed, source=self.runs.source, correlationid=run.run_id)
                    )
                )
            tr.status = "failed"
            tr.error = cause
            tr.retry_at = None
        # Outputs of this run still on their way through the router: its consumers here do not
        # run on them when they arrive.
        for ds, version in run.expected.items():
            for consumer in self.app.consumers.get(ds, ()):
                if consumer.pipeline == st.name:
                    part.consumed.setdefault(consumer.name, {})[ds] = version
        run.expected.clear()
        run.failures.insert(0, cause)
        self.runs.finish_if_done(st, key, now, d, hold=False)

    def entry_tasks(self, pipeline: str) -> list[Task]:
        """Tasks of the pipeline whose inputs no task of the same pipeline produces."""
        found = []
        for task in self.app.pipelines[pipeline].tasks:
            producers = (self.app.producer.get(ds) for ds in task.inputs)
            if all(p is None or p.pipeline != pipeline for p in producers):
                found.append(task)
        return found
