"""Dynamic fan-out over the run decisions: a task names partitions of a `dynamic()` output at
run time; each is an ordinary partition of the pipeline (its own runs, attempts, retries, log);
a gather runs once per fan-out, in the fan-out's partition, after every item ended.

The fan-out's record (`FanOutState`) lives in the partition that fanned out; an item finds it
through the producer its input names (the fan-out's run id, which holds that partition), so no
index of items is kept anywhere else and the parent is the only record an item's end writes
besides its own. Everything is decided by the pipeline's one owner: `App` refuses a gather
whose items are produced in another pipeline.
"""

from __future__ import annotations

from ..definitions import App, Task
from ..events import FanOutItem, TaskSucceededData
from .state import Decision, FanOutState, PartitionState, PipelineState


def dynamic_outputs(app: App, task: Task) -> tuple[str, ...]:
    return task.dynamic_outputs


def parent_of(run_id: str, task: str) -> str | None:
    """The partition a run id of `task` (`task:partition:key:attempt`) ran in."""
    if not run_id.startswith(f"{task}:"):
        return None
    parts = run_id[len(task) + 1 :].rsplit(":", 2)
    return parts[0] if len(parts) == 3 else None


def on_fanned(app: App, part: PartitionState, task: Task, data: TaskSucceededData) -> None:
    """A fan-out task's success accepted: its items replace the last fan-out's (whose items
    still running are then no one's to wait for)."""
    if task.name not in app.gathers_of:
        return
    dynamic = set(dynamic_outputs(app, task))
    keys = sorted({o.partition for o in data.outputs if o.dataset in dynamic})
    last = part.fan_outs.get(task.name)
    part.fan_outs[task.name] = FanOutState(
        run_id=data.run_id, seq=(last.seq if last is not None else 0) + 1, items=keys
    )


def parents(app: App, st: PipelineState, part: PartitionState) -> list[tuple[str, Task]]:
    """The partitions (with their fan-out task) whose current fan-out named this item."""
    found = []
    for name in app.gathers_of:
        task = app.tasks[name]
        if task.pipeline != st.name:
            continue
        for ds in dynamic_outputs(app, task):
            have = part.inputs.get(ds)
            if have is None or have.producer is None:
                continue
            parent = parent_of(have.producer, name)
            if parent is not None:
                found.append((parent, task))
    return found


def settle(
    app: App, st: PipelineState, key: str, failed: bool, d: Decision, *, ran: bool = False
) -> list[tuple[str, list[Task]]]:
    """Record how item `key` ended, once nothing of it runs or waits; the parents (with their
    gathers) whose fan-out is now complete. `ran`: a run of the item just ended, so a success
    replaces an earlier failure (an operator's rerun of the failed task). Recorded while the
    pipeline is paused too: the resume then evaluates the gather."""
    part = st.partitions.get(key)
    if part is None or part.run is not None:
        return []
    if key in st.waiting or key in st.held:
        return []
    done = []
    for parent, task in parents(app, st, part):
        holder = st.partitions.get(parent)
        fo = holder.fan_outs.get(task.name) if holder is not None else None
        if fo is None or key not in fo.items or key in fo.results:
            continue
        if key in fo.failed and (failed or not ran):
            continue
        outputs = [ds for ds in dynamic_outputs(app, task) if ds in part.inputs]
        producers = {part.inputs[ds].producer for ds in outputs}
        if fo.run_id not in producers:
            continue  # an item of an earlier fan-out, superseded
        gathers = app.gathers_of[task.name]
        if failed:
            fo.failed.append(key)
        else:
            if key in fo.failed:
                fo.failed.remove(key)
            fo.results[key] = {
                g.inputs[0]: part.inputs[g.inputs[0]].version
                for g in gathers
                if g.inputs[0] in part.inputs
            }
        d.dirty.add(parent)
        if fo.complete:
            done.append((parent, gathers))
    return done


def rejected(
    app: App, st: PipelineState, key: str, dataset: str, producer: str | None, d: Decision
) -> list[tuple[str, list[Task]]]:
    """A blocking check rejected the input a fan-out gave item `key`: nothing runs on it, so
    the item failed; the parents (with their gathers) whose fan-out is now complete."""
    done = []
    for name, gathers in app.gathers_of.items():
        task = app.tasks[name]
        if producer is None or task.pipeline != st.name or dataset not in task.dynamic_outputs:
            continue
        parent = parent_of(producer, name)
        if parent is None:
            continue
        holder = st.partitions.get(parent)
        fo = holder.fan_outs.get(name) if holder is not None else None
        if fo is None or fo.run_id != producer or key not in fo.items:
            continue
        if key in fo.results or key in fo.failed:
            continue
        fo.failed.append(key)
        d.dirty.add(parent)
        if fo.complete:
            done.append((parent, gathers))
    return done


def gathered(app: App, part: PartitionState, task: Task) -> dict[str, int] | None:
    """What a gather would run on in this partition: its fan-out's number, once every item
    ended (under `trigger="all"`, well), if it has not gathered that fan-out yet."""
    fo = part.fan_outs.get(app.gather_source[task.name].name)
    if fo is None or not fo.complete or (task.trigger == "all" and fo.failed):
        return None
    ds = task.inputs[0]
    if fo.seq <= part.consumed.get(task.name, {}).get(ds, 0):
        return None
    return {ds: fo.seq}


def items(app: App, part: PartitionState, task: Task) -> list[FanOutItem]:
    """Every item of the fan-out a gather runs on, in key order."""
    fo = part.fan_outs.get(app.gather_source[task.name].name)
    if fo is None:
        return []
    ds = task.inputs[0]
    failed = set(fo.failed)
    return [
        FanOutItem(
            key=key,
            status="failed" if key in failed else "succeeded",
            version=fo.results.get(key, {}).get(ds),
        )
        for key in fo.items
    ]
