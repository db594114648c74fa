"""Debounce and cooldown, decided by the pure engine on a scripted clock."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest

import eventflow as ef
from eventflow.core import Effects, Engine, codec
from eventflow.core.codec import Snapshot
from eventflow.errors import DefinitionError, EventError
from eventflow.events import pipeline_action

from .sim import Sim, produced

D, D2 = "2026-11-22", "2026-11-23"


def noop(ctx: ef.TaskContext) -> None:
    pass


def paced_app(**options: Any) -> ef.App:
    raw, out, last = (ef.Dataset(n, ef.daily()) for n in ("raw", "out", "last"))
    p = ef.Pipeline("p")
    p.task(inputs=[raw], outputs=[out], name="load", **options)(noop)
    p.task(inputs=[out], outputs=[last], name="after")(noop)
    return ef.App([p])


def versions(sim: Sim, task: str) -> list[tuple[str, int]]:
    return [(r.partition, r.inputs[0].version) for r in sim.requests if r.task == task]


def reload(sim: Sim) -> Engine:
    """A new engine from every record of `sim`'s state, as a restarted runtime reads it."""
    engine = sim.engine
    everything = Effects(
        dirty_partitions={(p, k) for p, pst in engine.pipelines.items() for k in pst.partitions},
        dirty_headers=set(engine.pipelines),
    )
    snapshot = Snapshot()
    for key, value in codec.changes(engine, everything):
        snapshot.add(key.decode(), value)
    restarted = Engine(sim.app)
    snapshot.install(restarted)
    return restarted


# -- debounce ------------------------------------------------------------------------------------
def test_a_burst_makes_one_run_on_the_newest_version_once_quiet() -> None:
    sim = Sim(paced_app(debounce=10))
    for version in range(1, 11):
        sim.send(produced("raw", D, version))
        sim.advance(2)  # each update within the quiet time of the one before
    assert versions(sim, "load") == []
    sim.advance(7.9)
    assert versions(sim, "load") == [], "quiet for 9.9s only"
    sim.advance(0.1)
    assert versions(sim, "load") == [(D, 10)]
    sim.run_all()
    [run] = sim.runs
    assert run.status == "succeeded" and sim.outcome(run) == {
        "load": "succeeded",
        "after": "succeeded",
    }
    assert sim.engine.idle()


def test_debounce_counts_per_partition() -> None:
    sim = Sim(paced_app(debounce=timedelta(seconds=10)))
    sim.send(produced("raw", D, 1))
    sim.advance(6)
    sim.send(produced("raw", D2, 1))
    sim.advance(4)
    assert versions(sim, "load") == [(D, 1)], "D quiet for 10s, D2 for 4s"
    sim.advance(6)
    assert versions(sim, "load") == [(D, 1), (D2, 1)]


def test_an_update_while_the_task_runs_is_decided_once_quiet_after_it() -> None:
    sim = Sim(paced_app(debounce=10))
    sim.send(produced("raw", D, 1))
    sim.advance(10)
    req = sim.next_request("load")
    sim.start(req)
    sim.send(produced("raw", D, 2))
    sim.advance(3)
    sim.succeed(req)  # quiet for 3s only: held, not requested
    assert versions(sim, "load") == [(D, 1)]
    sim.advance(7)
    assert versions(sim, "load") == [(D, 1), (D, 2)]


def test_a_held_downstream_task_keeps_its_run_open() -> None:
    raw, out, last = (ef.Dataset(n, ef.daily()) for n in ("raw", "out", "last"))
    p = ef.Pipeline("p")
    p.task(inputs=[raw], outputs=[out], name="load")(noop)
    p.task(inputs=[out], outputs=[last], name="after", debounce=5)(noop)
    sim = Sim(ef.App([p]))
    sim.send(produced("raw", D, 1))
    sim.run_all()
    assert sim.runs == [], "the run waits for its held task"
    assert not sim.engine.idle()
    sim.advance(5)
    sim.run_all()
    [run] = sim.runs
    assert sim.outcome(run) == {"load": "succeeded", "after": "succeeded"}


def test_an_operators_rerun_is_not_held_back() -> None:
    sim = Sim(paced_app(debounce=10))
    sim.send(produced("raw", D, 1))
    sim.advance(10)
    sim.run_all()
    sim.send(pipeline_action("p", "rerun_task", partition=D, task="load", reason="r", operator="o"))
    assert versions(sim, "load") == [(D, 1), (D, 1)]


# -- cooldown ------------------------------------------------------------------------------------
def test_cooldown_spaces_run_starts_and_decides_the_last_update_when_it_ends() -> None:
    sim = Sim(paced_app(cooldown=60))
    t0 = sim.now
    sim.send(produced("raw", D, 1))
    assert versions(sim, "load") == [(D, 1)], "nothing started before: at once"
    sim.run_all()
    for version in (2, 3, 4):
        sim.advance(10)
        sim.send(produced("raw", D, version))
    sim.run_all()
    assert versions(sim, "load") == [(D, 1)]
    sim.advance(t0 + 60 - sim.now)
    assert versions(sim, "load") == [(D, 1), (D, 4)], "on the newest, never dropped"
    assert sim.requests[-1].task == "load"
    sim.run_all()
    sim.advance(30)
    sim.send(produced("raw", D, 5))
    sim.advance(29.5)
    assert versions(sim, "load")[-1] == (D, 4)
    sim.advance(0.5)
    assert versions(sim, "load")[-1] == (D, 5), "60s after the start before"


def test_cooldown_and_debounce_together_wait_for_both() -> None:
    sim = Sim(paced_app(debounce=5, cooldown=60))
    sim.send(produced("raw", D, 1))
    sim.advance(5)
    sim.run_all()
    sim.advance(50)
    sim.send(produced("raw", D, 2))
    sim.advance(5)
    assert versions(sim, "load") == [(D, 1)], "quiet, but cooling down until 65s"
    sim.advance(5)
    assert versions(sim, "load") == [(D, 1), (D, 2)]


# -- durability, operators, explain --------------------------------------------------------------
def test_a_held_decision_survives_a_restart_from_the_records() -> None:
    sim = Sim(paced_app(debounce=10))
    sim.send(produced("raw", D, 1))
    sim.advance(4)
    sim.send(produced("raw", D, 2))
    assert sim.engine.pipelines["p"].held == [D]
    restarted = reload(sim)
    assert restarted.pipelines["p"].held == [D]
    [(at, pipeline)] = restarted.recover().wakes
    assert (at, pipeline) == (sim.now + 10, "p")
    assert not restarted.tick("p", at - 0.1).dispatch
    [req] = restarted.tick("p", at).dispatch
    assert (req.task, req.inputs[0].version) == ("load", 2)
    assert restarted.pipelines["p"].held == []


def test_a_header_holding_nothing_back_is_written_as_before() -> None:
    sim = Sim(paced_app(debounce=10))
    assert b"held" not in codec.header(sim.engine, "p")
    sim.send(produced("raw", D, 1))
    assert b'"held":["2026-11-22"]' in codec.header(sim.engine, "p")
    old = Snapshot()
    old.add(codec.header_key("p").decode(), b'{"active": [], "waiting": []}')
    old.install(sim.engine)
    assert sim.engine.pipelines["p"].held == []


def test_a_held_decision_waits_for_resume() -> None:
    sim = Sim(paced_app(debounce=10))
    sim.send(produced("raw", D, 1))
    sim.send(pipeline_action("p", "pause", reason="r", operator="o"))
    sim.advance(20)
    assert versions(sim, "load") == []
    sim.send(pipeline_action("p", "resume", reason="r", operator="o"))
    assert versions(sim, "load") == [(D, 1)]


def test_cancel_drops_a_held_decision() -> None:
    sim = Sim(paced_app(debounce=10))
    sim.send(produced("raw", D, 1))
    sim.send(pipeline_action("p", "cancel", partition=D, reason="bad data", operator="o"))
    assert sim.engine.pipelines["p"].held == []
    sim.advance(10)
    assert versions(sim, "load") == []
    assert sim.engine.idle()
    with pytest.raises(EventError, match="nor a decision held back"):
        sim.engine.handle(
            pipeline_action("p", "cancel", partition=D, reason="again", operator="o"), sim.now
        )


def test_explain_says_debouncing_or_cooling_down_until_when() -> None:
    sim = Sim(paced_app(debounce=10, cooldown=100))
    t0 = sim.now
    sim.send(produced("raw", D, 1))
    found = sim.engine.explain("p", "load", D)
    assert found.status == "waiting"
    assert found.verdict == "debouncing until 1970-01-01T00:16:50+00:00"
    [line] = [i for i in found.items if i.check == "pacing"]
    assert not line.ok and line.detail == "debounce 10s, cooldown 100s"
    sim.advance(10)
    sim.run_all()
    sim.send(produced("raw", D, 2))
    sim.advance(10)
    found = sim.engine.explain("p", "load", D)
    assert found.verdict == "cooling down until 1970-01-01T00:18:30+00:00"
    sim.advance(t0 + 110 - sim.now - 0.1)
    assert versions(sim, "load") == [(D, 1)]
    sim.advance(0.1)
    assert versions(sim, "load") == [(D, 1), (D, 2)]
    assert [i.ok for i in sim.engine.explain("p", "load", D).items if i.check == "pacing"] == [True]


# -- definitions ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"debounce": -1}, "debounce must be a positive number of seconds"),
        ({"debounce": 0}, "debounce must be a positive"),
        ({"cooldown": math.nan}, "cooldown must be a positive"),
        ({"cooldown": math.inf}, "cooldown must be a positive"),
        ({"debounce": True}, "debounce must be a positive"),
        ({"debounce": "5"}, "debounce must be a positive"),
        ({"cooldown": timedelta(seconds=-5)}, "cooldown must be a positive"),
        ({"debounce": 60, "cooldown": 60}, "a cooldown of 60s within a debounce of 60s never"),
        ({"restatements": "sometimes"}, "restatements 'sometimes' is not one of follow, ignore"),
    ],
)
def test_pacing_options_that_mean_nothing_are_refused(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(DefinitionError, match=f"task 'load' \\(pipeline 'p'\\): {message}"):
        paced_app(**options)


def test_ignoring_restatements_needs_a_partitioned_input() -> None:
    feed = ef.Dataset("feed")
    p = ef.Pipeline("p")
    p.task(inputs=[feed], name="t", restatements="ignore")(noop)
    with pytest.raises(DefinitionError, match="needs a partitioned input"):
        ef.App([p])


def test_options_in_seconds_or_timedelta() -> None:
    app = paced_app(debounce=timedelta(milliseconds=1500), cooldown=90)
    task = app.tasks["load"]
    assert (task.debounce_s, task.cooldown_s, task.restatements) == (1.5, 90.0, "follow")
