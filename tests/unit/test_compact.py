"""Compact states: a finished (pipeline, partition) state kept as its stored bytes is the same
state, and the engine decides the same on it, whatever happened before."""

from __future__ import annotations

import re
from collections import deque
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import eventflow as ef
from eventflow.core import Effects, Engine, codec
from eventflow.core.state import PartitionState, compact, dump, finished, load_partition
from eventflow.errors import EventError
from eventflow.events import Action, Event, pipeline_action

from .sim import Sim, produced

ID = re.compile("[0-9a-f]{32}")
PARTS = ["2026-11-21", "2026-11-22", "2026-11-23"]


def noop(ctx: ef.TaskContext) -> None:
    pass


def app() -> ef.App:
    x, y = ef.Dataset("x", ef.daily()), ef.Dataset("y", ef.daily())
    ax, bxy, cz = (ef.Dataset(n, ef.daily()) for n in ("ax", "bxy", "cz"))
    p = ef.Pipeline("compact", max_active_runs=2)
    p.task(inputs=[x], outputs=[ax], name="a", retries=ef.Retry(count=1, backoff_s=5))(noop)
    p.task(inputs=[x, y], outputs=[bxy], name="b", trigger="all")(noop)
    p.task(inputs=[ax, y], outputs=[cz], name="c", restatements="ignore")(noop)
    return ef.App([p])


class CompactingEngine(Engine):
    """Writes its records after every step as the runtimes do, which compacts the partitions
    each step left finished."""

    def handle(self, event: Event, now: float) -> Effects:
        fx = super().handle(event, now)
        codec.changes(self, fx)
        return fx

    def tick(self, pipeline: str, now: float, heard_since: float | None = None) -> Effects:
        fx = super().tick(pipeline, now, heard_since)
        codec.changes(self, fx)
        return fx


def compacting(app: ef.App) -> Sim:
    sim = Sim(app)
    sim.engine = CompactingEngine(app)
    return sim


def states(sim: Sim) -> dict[str, bytes]:
    """Each partition as stored; a compact one without expanding it."""
    return {k: dump(p) for k, p in sim.engine.pipelines["compact"].partitions.items()}


def compacted(sim: Sim) -> set[str]:
    parts = sim.engine.pipelines["compact"].partitions
    return {k for k, p in parts.items() if type(p) is not PartitionState}


def decided(sim: Sim) -> list[str]:
    """Events and requests, with the random event ids (correlations) numbered in order."""
    found: dict[str, str] = {}
    out = [f"{e.type} {e.data.model_dump_json()}" for e in sim.events]
    out += [r.model_dump_json() for r in sim.requests]
    return [ID.sub(lambda m: found.setdefault(m[0], f"#{len(found)}"), line) for line in out]


Step = tuple[str, Any, Any]

steps = st.lists(
    st.one_of(
        st.tuples(st.just("produce"), st.sampled_from(["x", "y"]), st.sampled_from(PARTS)),
        st.tuples(st.just("succeed"), st.integers(0, 3), st.none()),
        st.tuples(st.just("fail"), st.integers(0, 3), st.none()),
        st.tuples(st.just("wait"), st.sampled_from([1.0, 6.0]), st.none()),
        st.tuples(st.just("rerun_task"), st.sampled_from(["a", "b", "c"]), st.sampled_from(PARTS)),
        st.tuples(st.just("cancel"), st.none(), st.sampled_from(PARTS)),
        st.tuples(st.just("pause"), st.booleans(), st.none()),
    ),
    min_size=1,
    max_size=30,
)


def play(sim: Sim, step: Step, paused: list[bool]) -> str | None:
    """One step; an input the engine refuses gives the reason."""
    kind, arg, partition = step
    try:
        if kind == "produce":
            sim.versions += 1
            sim.send(produced(arg, partition, sim.versions))
        elif kind in ("succeed", "fail") and len(sim.queue) > arg:
            req = sim.queue[arg]
            del sim.queue[arg]
            sim.start(req)
            if kind == "succeed":
                sim.succeed(req)
            else:
                sim.fail(req)
        elif kind == "wait":
            sim.advance(arg)
        elif kind in ("rerun_task", "cancel"):
            action: Action = "rerun_task" if kind == "rerun_task" else "cancel"
            sim.send(
                pipeline_action(
                    "compact", action, reason="r", operator="o", partition=partition, task=arg
                )
            )
        elif kind == "pause" and arg != paused[0]:
            paused[0] = arg
            action = "pause" if arg else "resume"
            sim.send(pipeline_action("compact", action, reason="r", operator="o"))
    except EventError as e:
        return str(e)
    finally:  # workers never see a cancelled request again
        sim.queue = deque(r for r in sim.queue if r.run_id not in sim.cancelled)
    return None


@settings(max_examples=200, deadline=None)
@given(steps=steps)
def test_compacting_finished_states_changes_no_decision_and_no_state(steps: list[Step]) -> None:
    plain, compacts = Sim(app()), compacting(app())
    paused = [[False], [False]]
    for step in steps:
        refused = [
            play(sim, step, flag) for sim, flag in zip((plain, compacts), paused, strict=True)
        ]
        assert refused[0] == refused[1]
        # the stored form of every partition is the same, compact or not
        assert states(compacts) == states(plain)
        # and a compact one expands to an equal state, and to exactly its bytes
        parts = compacts.engine.pipelines["compact"].partitions
        for key in compacted(compacts):
            raw = dump(parts[key])
            assert parts[key] == plain.engine.pipelines["compact"].partitions[key]
            assert type(parts[key]) is PartitionState
            assert parts[key] == load_partition(raw)
            compact(parts[key], raw)
            assert dump(parts[key]) == raw
        for key in parts:
            for task in ("a", "b", "c"):
                assert compacts.engine.explain("compact", task, key) == plain.engine.explain(
                    "compact", task, key
                )
    for sim, flag in zip((plain, compacts), paused, strict=True):
        if flag[0]:
            play(sim, ("pause", False, None), flag)
        sim.run_all()
    assert decided(compacts) == decided(plain)
    assert states(compacts) == states(plain)


def test_a_finished_partition_is_kept_compact_and_expands_when_an_event_names_it() -> None:
    sim = compacting(app())
    sim.send(produced("x", PARTS[0], 1))
    pst = sim.engine.pipelines["compact"]
    running = pst.partitions[PARTS[0]]
    assert not finished(running)
    assert not compacted(sim), "a partition with a run in flight stays expanded"

    sim.run_all()
    assert compacted(sim) == {PARTS[0]}
    held = pst.partitions[PARTS[0]]  # the same object throughout: references stay valid
    assert held is running
    assert isinstance(held, PartitionState)  # reads `__class__` only: still compact
    assert compacted(sim) == {PARTS[0]}

    sim.send(produced("y", PARTS[0], 1))  # b and c want y: the state is read and changed
    assert {r.task for r in sim.requests[-2:]} == {"b", "c"}
    assert not compacted(sim)
    assert held.runs["b"].status == "queued"
    sim.run_all()
    assert compacted(sim) == {PARTS[0]}


def test_a_restore_keeps_finished_partitions_compact_and_live_ones_expanded() -> None:
    sim = Sim(app())
    sim.send(produced("x", PARTS[0], 1))
    sim.run_all()
    sim.send(produced("x", PARTS[1], 1))  # left running
    records = codec.changes(
        sim.engine,
        Effects(dirty_partitions={("compact", k) for k in PARTS[:2]}),
    )
    snapshot = codec.Snapshot()
    for key, value in records:
        snapshot.add(key.decode(), value)
    restored = snapshot.partitions["compact"]
    assert type(restored[PARTS[0]]) is not PartitionState
    assert type(restored[PARTS[1]]) is PartitionState
    assert restored == sim.engine.pipelines["compact"].partitions


def test_a_write_to_a_compact_state_before_any_read_is_kept() -> None:
    sim = compacting(app())
    sim.send(produced("x", PARTS[0], 1))
    req = sim.queue.popleft()
    sim.start(req)
    sim.succeed(req)
    assert compacted(sim) == {PARTS[0]}
    part = sim.engine.pipelines["compact"].partitions[PARTS[0]]
    part.run_seq = 99
    assert type(part) is PartitionState, "expanded by the write"
    assert part.run_seq == 99 and part.runs, "the write kept, the rest expanded from the bytes"
