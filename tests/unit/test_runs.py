"""The pure decisions: triggers, de-duplication, retries, timeouts, pools, runs, checks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import eventflow as ef
from eventflow.core import Engine, Refused, run_id, run_key
from eventflow.core.state import dump, load_partition
from eventflow.errors import EventError
from eventflow.events import (
    Event,
    PoolReleased,
    PoolReleasedData,
    TaskFailed,
    TaskFailedData,
    TaskRequested,
    TaskRequestedData,
    TaskSucceeded,
    TaskSucceededData,
)
from eventflow.runtime.step import Inbound, Step

from .sim import Sim, produced, routed_inputs

D = "2026-11-22"


def noop(ctx: ef.TaskContext) -> None:
    pass


def chain_app(**task_options: object) -> ef.App:
    raw, a, b = (
        ef.Dataset("raw", ef.daily()),
        ef.Dataset("a", ef.daily()),
        ef.Dataset("b", ef.daily()),
    )
    p = ef.Pipeline("p")
    p.task(inputs=[raw], outputs=[a], name="first", **task_options)(noop)  # type: ignore[arg-type]
    p.task(inputs=[a], outputs=[b], name="second")(noop)
    return ef.App([p])


def test_chain_runs_in_order_and_completes_one_run() -> None:
    sim = Sim(chain_app())
    sim.send(produced("raw", D, 1))
    assert [r.task for r in sim.queue] == ["first"]
    sim.run_all()
    assert sim.tasks_run() == ["first", "second"]
    [run] = sim.runs
    assert run.status == "succeeded"
    assert run.partition == D
    assert sim.outcome(run) == {"first": "succeeded", "second": "succeeded"}
    assert sim.engine.idle()


def test_repeated_or_older_version_never_starts_a_second_run() -> None:
    sim = Sim(chain_app())
    sim.send(produced("raw", D, 5))
    sim.send(produced("raw", D, 5))
    sim.send(produced("raw", D, 3))
    sim.run_all()
    sim.send(produced("raw", D, 5))
    sim.send(produced("raw", D, 4))
    sim.run_all()
    assert sim.tasks_run() == ["first", "second"]
    sim.send(produced("raw", D, 6))
    sim.run_all()
    assert sim.tasks_run() == ["first", "second", "first", "second"]


def test_run_id_is_derived_from_task_partition_inputs_and_attempt() -> None:
    sim = Sim(chain_app())
    sim.send(produced("raw", D, 7))
    [req] = sim.queue
    assert req.run_id == f"first:{D}:{run_key('first', D, {'raw': 7})}:1"
    assert run_key("first", D, {"raw": 7}) != run_key("first", D, {"raw": 8})
    assert run_key("first", D, {"raw": 7}) != run_key("first", "2026-11-23", {"raw": 7})


def join_app(trigger: str, *, partitioned: bool = True) -> ef.App:
    x, y, z = (ef.Dataset(n, ef.daily()) if partitioned else ef.Dataset(n) for n in "xyz")
    p = ef.Pipeline("j")
    p.task(inputs=[x, y], outputs=[z], trigger=trigger, name="join")(noop)  # type: ignore[arg-type]
    return ef.App([p])


def test_all_join_waits_for_every_input_per_partition() -> None:
    sim = Sim(join_app("all"))
    sim.send(produced("x", D, 1))
    sim.send(produced("y", "2026-11-23", 1))
    assert not sim.queue, "inputs of different partitions never meet"
    sim.send(produced("y", D, 1))
    req = sim.next_request("join")
    assert {i.dataset: i.version for i in req.inputs} == {"x": 1, "y": 1}
    sim.start(req)
    sim.succeed(req)
    sim.send(produced("x", D, 2))
    req = sim.next_request("join")
    assert {i.dataset: i.version for i in req.inputs} == {"x": 2, "y": 1}, "x restated"


def test_all_join_of_unpartitioned_inputs_waits_for_every_input_again() -> None:
    sim = Sim(join_app("all", partitioned=False))
    sim.send(produced("x", "", 1))
    sim.send(produced("y", "", 1))
    sim.run_all()
    sim.send(produced("x", "", 2))
    assert not sim.queue, "all: y has not changed since it was consumed"
    sim.send(produced("y", "", 2))
    assert [r.task for r in sim.queue] == ["join"]


def test_any_join_runs_on_each_new_input() -> None:
    sim = Sim(join_app("any"))
    sim.send(produced("x", D, 1))
    req = sim.next_request("join")
    assert [i.dataset for i in req.inputs] == ["x"]
    sim.start(req)
    sim.succeed(req)
    sim.send(produced("y", D, 1))
    req = sim.next_request("join")
    assert {i.dataset: i.version for i in req.inputs} == {"x": 1, "y": 1}


def test_unpartitioned_input_counts_for_every_partition() -> None:
    ref, daily_in, out = ef.Dataset("ref"), ef.Dataset("d", ef.daily()), ef.Dataset("o", ef.daily())
    p = ef.Pipeline("p")
    p.task(inputs=[daily_in, ref], outputs=[out], name="t")(noop)
    sim = Sim(ef.App([p]))
    sim.send(produced("d", "2026-11-21", 1))
    sim.send(produced("d", "2026-11-22", 1))
    assert not sim.queue
    sim.send(produced("ref", "", 1))
    assert sorted(r.partition for r in sim.queue) == ["2026-11-21", "2026-11-22"]
    sim.run_all()
    sim.send(produced("d", "2026-11-23", 1))
    req = sim.next_request("t")
    assert {i.dataset: (i.partition, i.version) for i in req.inputs} == {
        "d": ("2026-11-23", 1),
        "ref": ("", 1),
    }


def test_retry_waits_for_backoff_then_gives_up_and_fails_run() -> None:
    sim = Sim(chain_app(retries=ef.Retry(count=2, backoff_s=10, factor=3, max_delay_s=20)))
    sim.send(produced("raw", D, 1))
    first = sim.next_request("first")
    sim.start(first)
    sim.fail(first)
    assert not sim.queue
    assert sim.wakes[-1][0] == sim.now + 10
    sim.advance(9.9)
    assert not sim.queue, "backoff not over"
    sim.advance(0.2)
    second = sim.next_request("first")
    assert second.attempt == 2 and second.run_id.endswith(":2")
    sim.start(second)
    sim.fail(second)
    sim.advance(19.9)
    assert not sim.queue, "second delay is 10*3 capped to 20"
    sim.advance(0.2)
    third = sim.next_request("first")
    sim.start(third)
    sim.fail(third, "still broken")
    [run] = sim.runs
    assert run.status == "failed"
    assert "after 3 attempts: still broken" in run.reason
    assert sim.outcome(run) == {"first": "failed", "second": "upstream_failed"}


def test_non_retriable_failure_fails_at_once() -> None:
    sim = Sim(chain_app(retries=3))
    sim.send(produced("raw", D, 1))
    req = sim.next_request()
    sim.start(req)
    sim.fail(req, retriable=False)
    assert sim.runs[0].status == "failed"


def test_timeout_is_declared_when_worker_never_reports() -> None:
    sim = Sim(chain_app(timeout_s=30, retries=1))
    sim.send(produced("raw", D, 1))
    req = sim.next_request()
    sim.start(req)
    sim.advance(31)
    assert not sim.queue, "grace for the worker's own timeout report"
    sim.advance(2)
    assert req.run_id in sim.cancelled
    sim.advance(1)
    retry = sim.next_request()
    assert retry.attempt == 2
    sim.start(retry)
    sim.succeed(retry)
    sim.fail(req, "late report of the first attempt")
    sim.run_all()
    assert sim.runs[0].status == "succeeded"


def test_lost_worker_is_detected_by_missing_heartbeats() -> None:
    sim = Sim(chain_app(retries=1), heartbeat_timeout_s=10)
    sim.send(produced("raw", D, 1))
    req = sim.next_request()
    sim.start(req)
    for _ in range(5):
        sim.advance(5)
        sim.heartbeat(req)
    assert not sim.queue, "heartbeats keep it alive"
    sim.advance(10)
    assert req.run_id in sim.cancelled
    state = sim.engine.pipelines["p"].partitions[D].runs["first"]
    assert state.error == "lost: worker w1 stopped sending heartbeats"
    sim.advance(1)  # the retry's backoff
    retry = sim.next_request()
    assert retry.attempt == 2


def test_silence_the_runtime_could_not_hear_is_not_held_against_a_task() -> None:
    """A broker outage: no heartbeat arrives for 40 s, yet the worker was fine all along. Only
    once the coordinator has heard for a whole heartbeat window may silence count again."""
    for outage_known in (True, False):
        sim = Sim(chain_app(retries=0), heartbeat_timeout_s=10)
        sim.send(produced("raw", D, 1))
        req = sim.next_request()
        sim.start(req)
        sim.heartbeat(req)
        if outage_known:
            sim.heard_since = sim.now + 40  # the broker comes back in 40 s
        sim.advance(40)
        lost = req.run_id in sim.cancelled
        assert lost != outage_known, "lost only when the runtime says it could hear all along"
        if outage_known:
            sim.heartbeat(req)  # the backlog arrives
            sim.advance(9)
            assert req.run_id not in sim.cancelled
            sim.succeed(req)
            sim.run_all()
            assert [r.status for r in sim.runs] == ["succeeded"]


def test_first_success_wins_and_later_results_are_ignored() -> None:
    sim = Sim(chain_app(retries=1), heartbeat_timeout_s=10)
    sim.send(produced("raw", D, 1))
    slow = sim.next_request()
    sim.start(slow)
    sim.advance(10)
    sim.advance(1)
    retry = sim.next_request()
    sim.start(retry)
    sim.succeed(slow)  # the "lost" worker finished after all
    assert retry.run_id in sim.cancelled
    sim.succeed(retry)
    sim.run_all()
    assert sim.tasks_run() == ["first", "first", "second"]
    [run] = sim.runs
    assert run.status == "succeeded"


def test_max_active_runs_queues_partitions_until_a_slot_frees() -> None:
    raw, out = ef.Dataset("raw", ef.daily()), ef.Dataset("out", ef.daily())
    p = ef.Pipeline("p", max_active_runs=1)
    p.task(inputs=[raw], outputs=[out], name="t")(noop)
    sim = Sim(ef.App([p]))
    for day in ("2026-11-20", "2026-11-21", "2026-11-22"):
        sim.send(produced("raw", day, 1))
    assert [r.partition for r in sim.queue] == ["2026-11-20"]
    sim.run_all()
    assert [r.partition for r in sim.requests] == ["2026-11-20", "2026-11-21", "2026-11-22"]
    assert [r.status for r in sim.runs] == ["succeeded"] * 3


def test_pool_limits_concurrency_across_tasks() -> None:
    raw = ef.Dataset("raw")
    p = ef.Pipeline("p")
    for n in range(4):
        p.task(inputs=[raw], outputs=[ef.Dataset(f"o{n}")], pool="gpu", name=f"t{n}")(noop)
    sim = Sim(ef.App([p], pools=[ef.Pool("gpu", 2)]))
    sim.send(produced("raw"))
    assert len(sim.queue) == 2
    first = sim.next_request()
    sim.start(first)
    sim.succeed(first)
    assert len(sim.queue) == 2, "a freed slot admits the next"
    sim.run_all()
    assert len(sim.requests) == 4
    assert sim.runs[0].status == "succeeded"


def pooled_app() -> ef.App:
    """`one` needs the single slot of pool `cpu`; `two` runs anywhere."""
    raw, a = ef.Dataset("raw", ef.daily()), ef.Dataset("a", ef.daily())
    p = ef.Pipeline("p")
    p.task(inputs=[raw], outputs=[a], pool="cpu", name="one")(noop)
    p.task(inputs=[a], outputs=[], name="two")(noop)
    return ef.App([p], pools=[ef.Pool("cpu", 1)])


def pooled_request(version: int, **changes: Any) -> TaskRequestedData:
    """A request of `one` as the coordinator would make it (for a run it may never have started)."""
    fields: dict[str, Any] = {
        "run_id": run_id("one", D, run_key("one", D, {"raw": version}), 1),
        "task": "one",
        "pipeline": "p",
        "partition": D,
        "pipeline_run_id": "p:x:1",
        "inputs": [],
        "timeout_s": 5,
        "pool": "cpu",
    }
    return TaskRequestedData(**(fields | changes))


def result(request: TaskRequestedData, kind: type[Event] = TaskSucceeded) -> Event:
    ref = {k: getattr(request, k) for k in ("run_id", "task", "pipeline", "partition", "attempt")}
    if kind is TaskSucceeded:
        return TaskSucceeded.of(TaskSucceededData(**ref, worker="w", outputs=[], duration_ms=1))
    return TaskFailed.of(TaskFailedData(**ref, worker="w", error="e", kind="error"))


def test_the_pool_stage_admits_only_requests_the_coordinator_could_make() -> None:
    """A slot is freed by the result of the run it was given to: a request no worker can
    report on as that run would hold its slot for good."""
    engine = Engine(pooled_app(), local_pools=False)
    forged = {
        "task": pooled_request(1, task="nope"),
        "pipeline": pooled_request(1, pipeline="nope"),
        "pool": pooled_request(1, task="two"),
        "run id": pooled_request(1, run_id="one:2026-11-22:abc:1"),
        "partition": pooled_request(1, partition="someday"),
    }
    for what, request in forged.items():
        with pytest.raises(EventError):
            engine.handle(TaskRequested.of(request), 1000.0)
        assert engine.gate.usage()["cpu"] == (0, 0, 1), what
    plausible = pooled_request(1)
    assert engine.handle(TaskRequested.of(plausible), 1000.0).dispatch == [plausible]


def test_a_result_frees_the_slot_its_run_holds_though_no_run_asked_for_it() -> None:
    engine = Engine(pooled_app(), local_pools=False)
    stray = pooled_request(1)
    assert engine.handle(TaskRequested.of(stray), 1000.0).dispatch == [stray]  # signed, plausible
    [routed] = routed_inputs(engine.handle(produced("raw", D, 2), 1000.0))
    [wanted] = engine.handle(routed, 1000.0).pool_requests
    assert engine.handle(TaskRequested.of(wanted), 1000.0).dispatch == [], "the stray holds it"
    for kind in (TaskFailed, TaskSucceeded):
        with pytest.raises(Refused, match="not in flight") as refused:
            engine.handle(result(stray, kind), 1001.0)
        assert refused.value.effects.pool_releases == [(stray.run_id, "cpu")]
    released = PoolReleased.of(PoolReleasedData(run_id=stray.run_id, pool="cpu"))
    assert engine.handle(released, 1001.0).dispatch == [wanted]


def test_a_result_of_another_attempt_frees_that_attempt_s_slot_too() -> None:
    sim = Sim(pooled_app())
    sim.send(produced("raw", D, 1))
    first = sim.next_request("one")
    third = first.model_copy(update={"run_id": first.run_id[:-1] + "3", "attempt": 3})
    fx = sim.engine.handle(result(third, TaskFailed), sim.now)  # ignored: not the attempt asked
    assert fx.cancel == [third.run_id], "whatever holds the third attempt's slot is freed"
    fx = sim.engine.handle(result(third), sim.now)  # first success of the generation wins
    assert sorted(fx.cancel) == sorted([first.run_id, third.run_id])


def test_a_refused_result_is_dead_lettered_and_its_release_still_sent() -> None:
    engine = Engine(pooled_app(), local_pools=False)
    stray = pooled_request(1)
    step = Step(engine, source="test", follow=False)
    out = asyncio.run(step.run([Inbound(result(stray), "eventflow.task-events")], 1000.0))
    assert "not in flight" in (out.receipts[0].dead_letter or "")
    released = [e.data for t, _, e in out.messages if t == "eventflow.pools"]
    assert released == [PoolReleasedData(run_id=stray.run_id, pool="cpu")]


def branch_app() -> ef.App:
    raw, yes, no, done = (ef.Dataset(n, ef.daily()) for n in ("raw", "yes", "no", "done"))
    p = ef.Pipeline("b")
    p.task(inputs=[raw], outputs=[yes, no], name="gate")(noop)
    p.task(inputs=[yes], outputs=[done], name="on_yes")(noop)
    p.task(inputs=[no], outputs=[], name="on_no")(noop)
    return ef.App([p])


def test_branch_not_taken_is_skipped_not_failed() -> None:
    sim = Sim(branch_app())
    sim.send(produced("raw", D, 1))
    sim.run_all(lambda req: ["yes"] if req.task == "gate" else None)
    [run] = sim.runs
    assert run.status == "succeeded"
    assert sim.outcome(run) == {"gate": "succeeded", "on_yes": "succeeded", "on_no": "skipped"}


def checked_app(blocking: bool) -> ef.App:
    raw, merged, model = (ef.Dataset(n, ef.daily()) for n in ("raw", "merged", "model"))
    p = ef.Pipeline("q")
    p.task(inputs=[raw], outputs=[merged], name="merge")(noop)
    p.task(inputs=[merged], outputs=[model], name="train")(noop)
    gate = ef.check(merged, blocking=blocking, name="gate")(lambda ctx: True)
    return ef.App([p], checks=[gate])


def test_failing_blocking_check_stops_downstream_and_fails_run() -> None:
    sim = Sim(checked_app(blocking=True))
    sim.send(produced("raw", D, 1))
    sim.run_all()
    assert sim.tasks_run() == ["merge"]
    assert not sim.runs, "the run waits for the check"
    sim.answer_check(False, "3 null rows")
    sim.run_all()
    assert sim.tasks_run() == ["merge"]
    [run] = sim.runs
    assert run.status == "failed"
    assert "check 'gate' failed: 3 null rows" in run.reason
    assert sim.outcome(run) == {"merge": "succeeded", "train": "upstream_failed"}


def test_failing_non_blocking_check_only_warns() -> None:
    sim = Sim(checked_app(blocking=False))
    sim.send(produced("raw", D, 1))
    sim.run_all()
    sim.answer_check(False, "odd distribution")
    sim.run_all()
    assert sim.tasks_run() == ["merge", "train"]
    assert sim.runs[0].status == "succeeded"


def test_external_dataset_failing_check_never_triggers() -> None:
    raw, out = ef.Dataset("raw"), ef.Dataset("out")
    p = ef.Pipeline("p")
    p.task(inputs=[raw], outputs=[out], name="t")(noop)
    sim = Sim(ef.App([p], checks=[ef.check(raw, name="c")(lambda ctx: True)]))
    sim.send(produced("raw", "", 1))
    assert not sim.queue and len(sim.checks) == 1
    sim.answer_check(False)
    assert not sim.queue and not sim.runs
    sim.send(produced("raw", "", 2))
    sim.answer_check(True)
    assert [r.task for r in sim.queue] == ["t"]


def test_new_input_during_a_run_triggers_again_after_it() -> None:
    sim = Sim(chain_app())
    sim.send(produced("raw", D, 1))
    req = sim.next_request("first")
    sim.send(produced("raw", D, 2))
    assert not sim.queue, "one run of a task per partition at a time"
    sim.start(req)
    sim.succeed(req)
    again = sim.next_request("first")
    assert again.inputs[0].version == 2


def test_state_survives_serialization() -> None:
    sim = Sim(chain_app(retries=1))
    sim.send(produced("raw", D, 1))
    part = sim.engine.pipelines["p"].partitions[D]
    assert load_partition(dump(part)) == part
