"""Restated partitions: a new version of a partition that already had runs re-runs what is
downstream of it there, and nothing else; a task can ignore restatements."""

from __future__ import annotations

from typing import Any

import eventflow as ef

from .sim import Sim, produced

D, D2 = "2026-11-22", "2026-11-23"


def noop(ctx: ef.TaskContext) -> None:
    pass


def graph_app(**join: Any) -> ef.App:
    """raw -> clean -> report; ref -> rates; (clean, rates) -> joined."""
    names = ("raw", "ref", "clean", "rates", "report", "joined")
    raw, ref, clean, rates, report, joined = (ef.Dataset(n, ef.daily()) for n in names)
    p = ef.Pipeline("p")
    p.task(inputs=[raw], outputs=[clean], name="cleanse")(noop)
    p.task(inputs=[clean], outputs=[report], name="summarize")(noop)
    p.task(inputs=[ref], outputs=[rates], name="convert")(noop)
    p.task(inputs=[clean, rates], outputs=[joined], name="join", **join)(noop)
    return ef.App([p])


def settled(sim: Sim) -> Sim:
    for day in (D, D2):
        sim.send(produced("raw", day, 1))
        sim.send(produced("ref", day, 1))
    sim.run_all()
    sim.requests.clear()
    return sim


def ran(sim: Sim) -> list[tuple[str, str]]:
    return [(r.task, r.partition) for r in sim.requests]


def test_a_restated_partition_re_runs_exactly_what_is_downstream_of_it_there() -> None:
    sim = settled(Sim(graph_app()))
    rates = sim.engine.pipelines["p"].partitions[D].inputs["rates"].version
    sim.send(produced("raw", D, 2))
    sim.run_all()
    assert sorted(ran(sim)) == [("cleanse", D), ("join", D), ("summarize", D)]
    [joined] = [r for r in sim.requests if r.task == "join"]
    assert {i.dataset: i.version for i in joined.inputs}["rates"] == rates, "not restated"
    restated = sim.runs[-1]
    assert (restated.partition, restated.status) == (D, "succeeded")
    assert sim.outcome(restated) == dict.fromkeys(("cleanse", "summarize", "join"), "succeeded")


def test_a_join_waits_for_every_restated_input_on_its_way_and_runs_once() -> None:
    """Both sides of the join come from one restated source: it runs once, on both new
    versions, not first on a mix."""
    a_in, a_out, b_out, j = (ef.Dataset(n, ef.daily()) for n in ("src", "left", "right", "j"))
    p = ef.Pipeline("p")
    p.task(inputs=[a_in], outputs=[a_out], name="left_side")(noop)
    p.task(inputs=[a_in], outputs=[b_out], name="right_side")(noop)
    p.task(inputs=[a_out, b_out], outputs=[j], name="join")(noop)
    sim = Sim(ef.App([p]))
    sim.send(produced("src", D, 1))
    sim.run_all()
    [first] = [r for r in sim.requests if r.task == "join"]
    sim.requests.clear()
    sim.send(produced("src", D, 2))
    left = sim.next_request("left_side")
    sim.start(left)
    sim.succeed(left)  # right_side still in flight
    assert [r.task for r in sim.queue] == ["right_side"]
    found = sim.engine.explain("p", "join", D)
    [trigger] = [i for i in found.items if i.check == "trigger"]
    assert (trigger.ok, trigger.title) == (False, "restatement waits for upstream")
    assert "right_side (queued)" in trigger.detail
    sim.run_all()
    [join] = [r for r in sim.requests if r.task == "join"]
    before = {i.dataset: i.version for i in first.inputs}
    assert all(i.version > before[i.dataset] for i in join.inputs), "both restated"


def test_a_task_ignoring_restatements_stays_put_and_explain_says_why() -> None:
    sim = settled(Sim(graph_app(restatements="ignore")))
    sim.send(produced("raw", D, 2))
    sim.run_all()
    assert sorted(ran(sim)) == [("cleanse", D), ("summarize", D)]
    found = sim.engine.explain("p", "join", D)
    [clean] = [i for i in found.items if i.title.startswith("input clean")]
    assert (clean.ok, clean.title) == (False, "input clean: restatement ignored")
    assert "(restatements='ignore')" in clean.detail and "consumed at version" in clean.detail
    assert found.verdict.startswith("restated clean ignored (restatements='ignore')")
    sim.send(produced("ref", D, 2))
    sim.run_all()
    assert ("join", D) not in ran(sim), "every input restated: still ignored"


def test_a_task_ignoring_restatements_takes_a_new_version_after_a_failed_run() -> None:
    raw, out = ef.Dataset("raw", ef.daily()), ef.Dataset("out", ef.daily())
    p = ef.Pipeline("p")
    p.task(inputs=[raw], outputs=[out], name="load", restatements="ignore")(noop)
    sim = Sim(ef.App([p]))
    sim.send(produced("raw", D, 1))
    sim.fail(sim.next_request("load"), retriable=False)
    sim.send(produced("raw", D, 2))
    req = sim.next_request("load")
    assert req.inputs[0].version == 2
    sim.start(req)
    sim.succeed(req)
    sim.send(produced("raw", D, 3))
    assert not sim.queue, "succeeded on 2: 3 is a restatement, ignored"


def test_a_partition_seen_for_the_first_time_late_is_not_a_restatement() -> None:
    sim = settled(Sim(graph_app(restatements="ignore")))
    late = "2026-10-01"
    sim.send(produced("raw", late, 1))
    sim.send(produced("ref", late, 1))
    sim.run_all()
    assert ("join", late) in ran(sim)
    assert {p for _, p in ran(sim)} == {late}
