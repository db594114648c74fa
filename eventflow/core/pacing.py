"""Debounce and cooldown, decided: when a task that would run in a partition may start.

A task with `debounce` is decided only once its inputs have been quiet that long in the
partition; one with `cooldown` starts at most one run per that long there. A decision held back
is not dropped: its partition is listed in the pipeline's `held` (header record) with the time
it waits for (`Pacing.due`), the pipeline asks for a wake then, and the tick decides it on the
newest versions. The times it counts from (`Pacing.updated`, `Pacing.started`) are part of the
partition's record, so a restarted or new owner holds back exactly as the old one would have.
"""

from __future__ import annotations

from typing import Literal

from ..definitions import Task
from .state import Decision, Pacing, PartitionState, PipelineState, Wake

Why = Literal["debouncing", "cooling down"]


def paced(task: Task) -> bool:
    return task.debounce_s is not None or task.cooldown_s is not None


def updated(part: PartitionState, task: Task, now: float) -> bool:
    """A newer version of one of `task`'s inputs arrived in `part`: its quiet time starts
    again. True when the partition's state changed."""
    if task.debounce_s is None:
        return False
    _of(part, task).updated = now
    return True


def hold(
    task: Task, part: PartitionState, shared: PartitionState | None, now: float
) -> tuple[float, Why] | None:
    """Until when, and why, `task` must wait before it starts in `part` (None: it may start
    now). `shared` is the pipeline's unpartitioned state, whose inputs count for every
    partition."""
    found: list[tuple[float, Why]] = []
    mine = part.pacing.get(task.name)
    if task.debounce_s is not None:
        times = [mine.updated if mine is not None else None]
        if shared is not None and shared is not part:
            theirs = shared.pacing.get(task.name)
            times.append(theirs.updated if theirs is not None else None)
        last = max((t for t in times if t is not None), default=None)
        if last is not None and last + task.debounce_s > now:
            found.append((last + task.debounce_s, "debouncing"))
    if task.cooldown_s is not None and mine is not None and mine.started is not None:
        end = mine.started + task.cooldown_s
        if end > now:
            found.append((end, "cooling down"))
    return max(found) if found else None


def why(task: Task, part: PartitionState, due: float) -> Why:
    """What holds a decision waiting for `due` back: the cooldown if it ends then."""
    mine = part.pacing.get(task.name)
    if task.cooldown_s is None or mine is None or mine.started is None:
        return "debouncing"
    return "cooling down" if mine.started + task.cooldown_s >= due else "debouncing"


def defer(
    st: PipelineState, key: str, part: PartitionState, task: Task, until: float, d: Decision
) -> None:
    """Hold `task`'s decision in partition `key` back until `until`, and ask for a wake."""
    pacing = _of(part, task)
    if pacing.due != until:
        pacing.due = until
        d.dirty.add(key)
    if key not in st.held:
        st.held.append(key)
        d.header = True
    d.commands.append(Wake(until, st.name))


def started(st: PipelineState, key: str, part: PartitionState, task: Task, now: float) -> None:
    """A run of `task` started in `key`: the cooldown counts from now, and nothing of it is
    held back any longer."""
    if not paced(task):
        return
    pacing = _of(part, task)
    pacing.due = None
    if task.cooldown_s is not None:
        pacing.started = now
    release(st, key, part)


def due(part: PartitionState, now: float) -> list[str]:
    """Tasks whose held decision is due in `part`, their hold cleared (the caller decides
    them again, which holds them anew if they must wait longer)."""
    names = [name for name, p in part.pacing.items() if p.due is not None and p.due <= now]
    for name in names:
        part.pacing[name].due = None
    return names


def release(st: PipelineState, key: str, part: PartitionState | None) -> bool:
    """Take `key` off the pipeline's held partitions if nothing is held there any more; True
    when it was taken off."""
    if key not in st.held:
        return False
    if part is not None and any(p.due is not None for p in part.pacing.values()):
        return False
    st.held.remove(key)
    return True


def next_due(st: PipelineState) -> float | None:
    """The earliest decision held back in the pipeline."""
    times = [
        p.due
        for key in st.held
        if (part := st.partitions.get(key)) is not None
        for p in part.pacing.values()
        if p.due is not None
    ]
    return min(times) if times else None


def _of(part: PartitionState, task: Task) -> Pacing:
    found = part.pacing.get(task.name)
    if found is None:
        found = part.pacing[task.name] = Pacing()
    return found
