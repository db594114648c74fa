"""Property: any order and duplication of the same events gives one run per set of inputs, and a
task ignoring restatements runs once per partition."""

from __future__ import annotations

import itertools
from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

import eventflow as ef
from eventflow.events import Action, pipeline_action

from .sim import Sim, produced

PARTS = ["2026-11-21", "2026-11-22"]


def noop(ctx: ef.TaskContext) -> None:
    pass


def app() -> ef.App:
    x, y = ef.Dataset("x", ef.daily()), ef.Dataset("y", ef.daily())
    ax, bxy, cz, dxy = (ef.Dataset(n, ef.daily()) for n in ("ax", "bxy", "cz", "dxy"))
    p = ef.Pipeline("prop", max_active_runs=1)
    p.task(inputs=[x], outputs=[ax], name="a")(noop)
    p.task(inputs=[x, y], outputs=[bxy], name="b", trigger="all")(noop)
    p.task(inputs=[ax, y], outputs=[cz], name="c", trigger="any")(noop)
    p.task(inputs=[x, y], outputs=[dxy], name="d", restatements="ignore")(noop)
    return ef.App([p])


events = st.lists(
    st.tuples(st.sampled_from(["x", "y"]), st.sampled_from(PARTS), st.integers(1, 4)),
    min_size=1,
    max_size=24,
)


@settings(max_examples=300, deadline=None)
@given(events=events, data=st.data())
def test_any_interleaving_and_duplication_yields_one_run_per_input_set(
    events: list[tuple[str, str, int]], data: st.DataObject
) -> None:
    deliver(Sim(app()), events, data, pauses=False)


@settings(max_examples=150, deadline=None)
@given(events=events, data=st.data())
def test_pauses_anywhere_lose_nothing_and_run_no_input_set_twice(
    events: list[tuple[str, str, int]], data: st.DataObject
) -> None:
    deliver(Sim(app()), events, data, pauses=True)


def deliver(
    sim: Sim, events: list[tuple[str, str, int]], data: st.DataObject, *, pauses: bool
) -> None:
    """Every event twice in some order, workers finishing runs in between (and an operator
    pausing and resuming the pipeline at random, if `pauses`), then the invariants."""
    paused = False
    for dataset, partition, version in events + data.draw(st.permutations(events)):
        sim.send(produced(dataset, partition, version))
        if pauses and data.draw(st.booleans()):
            paused = not paused
            action: Action = "pause" if paused else "resume"
            sim.send(pipeline_action("prop", action, reason="r", operator="o"))
        # workers finish a random number of queued runs between deliveries
        for _ in range(data.draw(st.integers(0, len(sim.queue)))):
            req = sim.queue.popleft()
            sim.start(req)
            sim.succeed(req)
    if paused:
        sim.send(pipeline_action("prop", "resume", reason="r", operator="o"))
    sim.run_all()

    keys = [
        (r.task, r.partition, tuple((i.dataset, i.version) for i in r.inputs)) for r in sim.requests
    ]
    assert len(keys) == len(set(keys)), "a set of input versions ran twice"

    by_task: dict[tuple[str, str], list[dict[str, int]]] = defaultdict(list)
    for r in sim.requests:
        by_task[(r.task, r.partition)].append({i.dataset: i.version for i in r.inputs})
    for (task, _), runs in by_task.items():
        if task in ("b", "d"):  # all: the first run has every input
            assert set(runs[0]) == {"x", "y"}
        for before, after in itertools.pairwise(runs):
            # any, and all following restatements: nothing older, something newer
            assert all(after.get(d, -1) >= v for d, v in before.items())
            assert any(after[d] > before.get(d, -1) for d in after)

    for partition in PARTS:
        both = {d for d, p, _ in events if p == partition} == {"x", "y"}
        assert len(by_task.get(("d", partition), [])) == both, "restatements ignored"
        sent = [v for d, p, v in events if d == "x" and p == partition]
        runs_a = by_task.get(("a", partition), [])
        assert (runs_a[-1]["x"] if runs_a else None) == (max(sent) if sent else None), (
            "a single-input task ends on the newest version"
        )

    assert sim.engine.idle()
    started = [e for e in sim.events if e.type == "eventflow.pipeline.run.started"]
    assert len(started) == len(sim.runs), "every run that started finished"
    assert all(run.status == "succeeded" for run in sim.runs)
