"""Backfills decided by the core: planning (modes, order, ranges, what is skipped and why) and
progress through the run decisions (max active, slots, downstream, cancel, restore)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

import eventflow as ef
from eventflow.core import Engine, codec
from eventflow.core.backfill import BackfillState, dry_run, resolve
from eventflow.core.codec import Snapshot
from eventflow.errors import EventError
from eventflow.events import BackfillPlan, PipelineActionData, pipeline_action

from .sim import Sim, produced
from .test_runs import chain_app, noop

D, D2, D3 = "2026-11-22", "2026-11-23", "2026-11-24"
#: A clock time after the schedule ticked for every partition the tests backfill.
AFTER = datetime(2027, 1, 1, tzinfo=UTC).timestamp()


def days(first: str, n: int) -> list[str]:
    start = date.fromisoformat(first)
    return [(start + timedelta(days=i)).isoformat() for i in range(n)]


def clock_app(*, max_active_runs: int | None = None) -> ef.App:
    """A daily scheduled asset (`daily`), and a second pipeline downstream of it."""
    clock, daily, report = (
        ef.Dataset("clock.daily", ef.daily()),
        ef.Dataset("daily", ef.daily()),
        ef.Dataset("report", ef.daily()),
    )
    p = ef.Pipeline("p", max_active_runs=max_active_runs)
    p.schedule(clock, "0 6 * * *")
    p.task(inputs=[clock], outputs=[daily], name="build")(noop)
    q = ef.Pipeline("q")
    q.task(inputs=[daily], outputs=[report], name="summarize")(noop)
    return ef.App([p, q])


def backfill(sim: Sim, bid: str = "b1", pipeline: str = "p", **plan: Any) -> None:
    sim.send(
        pipeline_action(
            pipeline,
            "backfill",
            reason="history",
            operator="alice",
            backfill=bid,
            plan=BackfillPlan(**plan),
        )
    )


def state(sim: Sim, bid: str = "b1", pipeline: str = "p") -> BackfillState:
    return sim.engine.pipelines[pipeline].backfills[bid]


def run_through(sim: Sim, limit: int) -> int:
    """Succeed queued requests one at a time; the most entry tasks in flight at once."""
    most = 0
    while sim.queue:
        most = max(most, sum(1 for r in sim.queue if r.task == "build"))
        assert most <= limit
        req = sim.queue.popleft()
        sim.start(req)
        sim.succeed(req)
    return most


# -- progress ------------------------------------------------------------------------------------
def test_a_30_day_backfill_runs_each_partition_once_max_active_at_a_time() -> None:
    sim = Sim(clock_app(), now=AFTER)
    backfill(sim, start=D, end=days(D, 30)[-1], max_active=3)
    assert len([r for r in sim.queue if r.task == "build"]) == 3, "three at a time"
    assert run_through(sim, 3) == 3
    built = sorted(r.partition for r in sim.requests if r.task == "build")
    assert built == days(D, 30), "each partition once"
    summarized = sorted(r.partition for r in sim.requests if r.task == "summarize")
    assert summarized == days(D, 30), "downstream once per partition"
    bf = state(sim)
    assert (bf.status, bf.total, bf.started, bf.succeeded, bf.failed, bf.skipped) == (
        "done",
        30,
        30,
        30,
        0,
        0,
    )
    p_runs = [r for r in sim.runs if r.pipeline == "p"]
    assert len(p_runs) == 30
    assert all(r.reason.startswith("backfill b1 by alice: history") for r in p_runs)
    # The clock's tick for the day, as the schedule would have produced it.
    first = next(r for r in sim.requests if r.task == "build" and r.partition == D)
    assert first.inputs[0].version == 1_795_327_200_000_000  # 2026-11-22T06:00Z
    assert first.inputs[0].metadata["backfill"] == "b1"


def test_a_second_backfill_of_the_same_range_runs_nothing_again() -> None:
    sim = Sim(clock_app(), now=AFTER)
    backfill(sim, start=D, end=D3, mode="all")
    run_through(sim, 4)
    before = len(sim.requests)
    backfill(sim, "b2", start=D, end=D3, mode="all")
    assert len(sim.requests) == before, "succeeded on the same input versions: never repeated"
    bf = state(sim, "b2")
    assert (bf.status, bf.skipped) == ("done", 3)
    assert bf.skips[0] == (D, "succeeded on the same input versions")


def test_pipeline_max_active_runs_and_the_backfill_max_active_both_hold() -> None:
    sim = Sim(clock_app(max_active_runs=1), now=AFTER)
    backfill(sim, start=D, end=days(D, 5)[-1], max_active=3)
    assert [r.partition for r in sim.queue] == [D], "one slot: the others wait for it"
    assert sim.engine.pipelines["p"].waiting == days(D, 3)[1:]
    assert run_through(sim, 1) == 1
    assert sorted(r.partition for r in sim.requests if r.task == "build") == days(D, 5)
    assert state(sim).succeeded == 5


def test_reverse_takes_the_newest_partition_first() -> None:
    sim = Sim(clock_app(), now=AFTER)
    backfill(sim, start=D, end=days(D, 6)[-1], max_active=1, reverse=True)
    run_through(sim, 1)
    order = [r.partition for r in sim.requests if r.task == "build"]
    assert order == list(reversed(days(D, 6)))


def test_cancel_starts_no_new_run_and_lets_the_running_ones_finish() -> None:
    sim = Sim(clock_app(), now=AFTER)
    backfill(sim, start=D, end=days(D, 10)[-1], max_active=2)
    sim.send(
        pipeline_action("p", "cancel_backfill", reason="enough", operator="bob", backfill="b1")
    )
    run_through(sim, 2)
    assert sorted(r.partition for r in sim.requests if r.task == "build") == days(D, 2)
    bf = state(sim)
    assert (bf.status, bf.started, bf.succeeded) == ("cancelled", 2, 2)
    with pytest.raises(EventError, match="cancelled already"):
        sim.send(pipeline_action("p", "cancel_backfill", reason="x", operator="bob", backfill="b1"))


def test_cancel_drops_the_partitions_waiting_for_a_run_slot() -> None:
    sim = Sim(clock_app(max_active_runs=1), now=AFTER)
    backfill(sim, start=D, end=days(D, 10)[-1], max_active=3)
    assert sim.engine.pipelines["p"].waiting == [D2, D3]
    sim.send(pipeline_action("p", "cancel_backfill", reason="wrong", operator="bob", backfill="b1"))
    assert sim.engine.pipelines["p"].waiting == []
    run_through(sim, 1)
    assert [r.partition for r in sim.requests if r.task == "build"] == [D], "none started after"
    bf = state(sim)
    assert (bf.status, bf.started, bf.succeeded, bf.skipped, bf.active) == (
        "cancelled",
        1,
        1,
        2,
        {},
    )


def test_a_failed_run_counts_failed_and_the_next_partition_starts() -> None:
    sim = Sim(clock_app(), now=AFTER)
    backfill(sim, start=D, end=D2, max_active=1)
    sim.fail(sim.next_request("build"), retriable=False)
    assert [r.partition for r in sim.queue] == [D2]
    run_through(sim, 1)
    bf = state(sim)
    assert (bf.status, bf.started, bf.succeeded, bf.failed) == ("done", 2, 1, 1)


def test_a_paused_pipeline_holds_the_backfill_until_resumed() -> None:
    sim = Sim(clock_app(), now=AFTER)
    sim.send(pipeline_action("p", "pause", reason="x", operator="bob"))
    backfill(sim, start=D, end=D3)
    assert not sim.queue and state(sim).cursor == 0
    sim.send(pipeline_action("p", "resume", reason="x", operator="bob"))
    run_through(sim, 4)
    assert state(sim).succeeded == 3


def test_a_backfill_whose_last_runs_end_while_paused_is_done() -> None:
    sim = Sim(clock_app(), now=AFTER)
    backfill(sim, start=D, end=D2, max_active=2)
    sim.send(pipeline_action("p", "pause", reason="x", operator="bob"))
    run_through(sim, 2)
    bf = state(sim)
    assert (bf.status, bf.succeeded) == ("done", 2), "nothing left for a resume to start"


def test_the_backfill_survives_a_restore_from_its_records_midway() -> None:
    sim = Sim(clock_app(), now=AFTER)
    records: dict[bytes, bytes] = {}
    engine = sim.engine
    # Collect records as a state log would, step by step.
    original = engine.handle

    def handle(event: Any, now: float) -> Any:
        fx = original(event, now)
        records.update(codec.changes(engine, fx))
        return fx

    engine.handle = handle  # type: ignore[method-assign]  # a recording state log
    backfill(sim, start=D, end=days(D, 6)[-1], max_active=2)
    first = sim.next_request("build")
    sim.start(first)
    sim.succeed(first)
    # A new coordinator reads the records back and carries on with the requests in flight.
    fresh = Engine(sim.app)
    snapshot = Snapshot()
    for key, value in records.items():
        snapshot.add(key.decode(), value)
    snapshot.install(fresh)
    assert fresh.pipelines["p"].backfills["b1"].cursor == 3
    sim.engine = fresh
    run_through(sim, 2)
    bf = state(sim)
    assert (bf.status, bf.succeeded) == ("done", 6)
    assert sorted(r.partition for r in sim.requests if r.task == "build") == days(D, 6)


# -- planning ------------------------------------------------------------------------------------
def failed_and_succeeded() -> Sim:
    """raw in D (succeeded), D2 (first failed), D3 (announced while paused: never ran)."""
    sim = Sim(chain_app())
    sim.send(produced("raw", D, 1))
    sim.run_all()
    sim.send(produced("raw", D2, 1))
    sim.fail(sim.next_request("first"), retriable=False)
    sim.send(pipeline_action("p", "pause", reason="x", operator="bob"))
    sim.send(produced("raw", D3, 1))
    sim.send(pipeline_action("p", "resume", reason="x", operator="bob"))
    return sim


@pytest.mark.parametrize(
    ("mode", "runs"),
    [("missing", []), ("failed", [D2]), ("all", [D2])],
)
def test_modes_choose_partitions_by_what_became_of_them(mode: str, runs: list[str]) -> None:
    sim = failed_and_succeeded()
    sim.run_all()  # D3 ran when resumed: nothing is missing any more
    before = len(sim.requests)
    backfill(sim, start=D, end=D3, mode=mode)
    started = [r.partition for r in sim.requests[before:] if r.task == "first"]
    assert started == runs
    assert state(sim).skips[0] == (D, "succeeded on the same input versions")


def test_a_failure_is_run_again_under_a_new_run_id_and_downstream_follows() -> None:
    sim = failed_and_succeeded()
    sim.run_all()
    failed = next(r for r in sim.requests if r.partition == D2)
    backfill(sim, partitions=[D2], mode="failed")
    again = sim.next_request("first")
    assert again.run_id != failed.run_id, "workers skip a run id they finished"
    assert again.inputs == failed.inputs, "on the versions stored for the partition"
    sim.start(again)
    sim.succeed(again)
    sim.run_all()
    assert [r.partition for r in sim.requests if r.task == "second"] == [D, D3, D2]
    assert state(sim).succeeded == 1


def test_missing_and_never_produced_inputs() -> None:
    sim = Sim(chain_app())
    sim.send(produced("raw", D, 1))
    sim.run_all()
    sim.send(pipeline_action("p", "pause", reason="x", operator="bob"))
    sim.send(produced("raw", D2, 1))
    # Cancelling the waiting partition consumes what it waited for: it never ran.
    engine = sim.engine
    pst = engine.pipelines["p"]
    pst.partitions[D2].consumed["first"] = {"raw": 1}
    sim.send(pipeline_action("p", "resume", reason="x", operator="bob"))
    assert not sim.queue
    bf = engine.actions.backfills.new(pst, _data(start=D, end=D3, mode="missing"), sim.now)
    planned = dry_run(engine.actions.backfills, pst, bf)
    assert [(p.partition, p.run, p.why) for p in planned] == [
        (D, False, "succeeded on the same input versions"),
        (D2, True, "missing: first on raw@1"),
        (D3, False, f"input 'raw' was never produced for {D3!r}"),
    ]
    backfill(sim, start=D, end=D3, mode="missing")
    assert [(r.task, r.partition) for r in sim.queue] == [("first", D2)]
    sim.run_all()
    bf = state(sim)
    assert (bf.status, bf.started, bf.succeeded, bf.skipped) == ("done", 1, 1, 2)
    assert [p for p, _ in bf.skips] == [D, D3]


def test_the_dry_run_is_the_plan_the_backfill_carries_out() -> None:
    sim = failed_and_succeeded()
    sim.run_all()
    pst = sim.engine.pipelines["p"]
    bf = sim.engine.actions.backfills.new(pst, _data(start=D, end=D3, mode="all"), sim.now)
    would = [p.partition for p in dry_run(sim.engine.actions.backfills, pst, bf) if p.run]
    before = len(sim.requests)
    backfill(sim, start=D, end=D3, mode="all")
    sim.run_all()
    assert [r.partition for r in sim.requests[before:] if r.task == "first"] == would == [D2]


def _data(**plan: Any) -> PipelineActionData:
    return PipelineActionData(
        pipeline="p",
        action="backfill",
        backfill="dry",
        plan=BackfillPlan(**plan),
        reason="x",
        operator="alice",
    )


def test_ranges_resolve_in_the_partitioning_of_the_tasks_started() -> None:
    app = chain_app()
    assert resolve(app, "p", BackfillPlan(start=D, end=D3)) == (D, None, 3)
    assert resolve(app, "p", BackfillPlan(partitions=[D3, D, D3])) == (None, [D3, D], 2)
    with pytest.raises(EventError, match="ends"):
        resolve(app, "p", BackfillPlan(start=D3, end=D))
    with pytest.raises(EventError, match="not a daily key"):
        resolve(app, "p", BackfillPlan(start="2026-11", end=D))
    hourly = ef.Pipeline("h")
    hourly.task(inputs=[ef.Dataset("in", ef.hourly())], outputs=[ef.Dataset("out", ef.hourly())])(
        noop
    )
    region = ef.Pipeline("r")
    region.task(
        inputs=[ef.Dataset("rin", ef.static("eu", "us", "ap"))],
        outputs=[ef.Dataset("rout", ef.static("eu", "us", "ap"))],
        name="regions",
    )(noop)
    both = ef.App([hourly, region])
    assert resolve(both, "h", BackfillPlan(start="2026-11-22T22", end="2026-11-23T01"))[2] == 4
    assert resolve(both, "r", BackfillPlan(start="us", end="ap")) == (None, ["us", "ap"], 2)
    with pytest.raises(ValueError, match="one of them"):
        BackfillPlan(start=D, end=D, partitions=[D])


def test_refused_backfills_change_nothing() -> None:
    sim = Sim(clock_app(), now=AFTER)
    backfill(sim, start=D, end=D)
    with pytest.raises(EventError, match="already"):
        backfill(sim, start=D, end=D)
    with pytest.raises(EventError, match="does not consume"):
        backfill(sim, "b3", dataset="report", start=D, end=D)
    assert list(sim.engine.pipelines["p"].backfills) == ["b1"]


def test_from_a_dataset_starts_its_consumers_and_theirs_follow() -> None:
    sim = Sim(clock_app(), now=AFTER)
    sim.send(produced("daily", D, 5))
    sim.run_all()
    backfill(sim, pipeline="q", dataset="daily", start=D, end=D2, mode="all")
    assert state(sim, pipeline="q").skips == [
        (D, "succeeded on the same input versions"),
        (D2, f"input 'daily' was never produced for {D2!r}"),
    ]


def test_a_partition_whose_clock_has_not_ticked_yet_is_not_run_ahead_of_time() -> None:
    # 03:00 on D: D's clock ticks at 06:00, D2's and D3's are days away.
    before_tick = datetime(2026, 11, 22, 3, tzinfo=UTC).timestamp()
    sim = Sim(clock_app(), now=before_tick)
    backfill(sim, start=days(D, 3)[0], end=D3, mode="all")
    bf = state(sim)
    assert not sim.queue, "nothing is built before its data can exist"
    assert (bf.status, bf.started, bf.skipped) == ("done", 0, 3)
    assert bf.skips[0] == (
        D,
        f"its clock 'clock.daily' ticks for {D!r} at 2026-11-22T06:00:00+00:00, still to come",
    )
    # The schedule's own tick, when it comes, builds the partition as usual.
    sim.now = datetime(2026, 11, 22, 6, tzinfo=UTC).timestamp()
    sim.send(produced("clock.daily", D, int(sim.now * 1_000_000)))
    assert [(r.task, r.partition) for r in sim.queue] == [("build", D)]


def test_a_partition_held_by_a_debounce_is_waited_for_not_skipped() -> None:
    raw, out = ef.Dataset("raw", ef.daily()), ef.Dataset("out", ef.daily())
    p = ef.Pipeline("p")
    p.task(inputs=[raw], outputs=[out], name="build", debounce=60)(noop)
    sim = Sim(ef.App([p]), now=AFTER)
    sim.send(produced("raw", D, 1))
    assert not sim.queue, "debouncing"
    backfill(sim, partitions=[D])
    assert (state(sim).started, state(sim).skipped, state(sim).status) == (1, 0, "running")
    sim.advance(61)
    assert [r.task for r in sim.queue] == ["build"]
    run_through(sim, 1)
    assert (state(sim).status, state(sim).succeeded) == ("done", 1)
