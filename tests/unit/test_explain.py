"""`Engine.explain`: one test per reason a task runs, waits or would run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import eventflow as ef
from eventflow.core import ExplainItem, Explanation
from eventflow.core.state import InputState
from eventflow.errors import EventError
from eventflow.events import pipeline_action

from .sim import Sim, produced
from .test_runs import chain_app, join_app, noop

D, D2 = "2026-11-22", "2026-11-23"


def explain(sim: Sim, task: str, partition: str = D, pipeline: str = "p") -> Explanation:
    return sim.engine.explain(pipeline, task, partition)


def item(found: Explanation, check: str, title_part: str = "") -> ExplainItem:
    [hit] = [i for i in found.items if i.check == check and title_part in i.title]
    return hit


def test_the_checklist_is_in_reading_order_and_json_ready() -> None:
    sim = Sim(chain_app())
    sim.send(produced("raw", D, 1))
    found = explain(sim, "second")
    checks = [i.check for i in found.items]
    assert checks == ["paused", "input", "trigger", "attempt", "max_active_runs", "upstream"]
    assert Explanation.model_validate_json(found.model_dump_json()) == found


def test_paused() -> None:
    sim = Sim(chain_app())
    sim.send(pipeline_action("p", "pause", reason="migration", operator="alice"))
    sim.send(produced("raw", D, 1))
    found = explain(sim, "first")
    paused = item(found, "paused")
    assert not paused.ok and "paused by alice" in paused.detail and "migration" in paused.detail
    assert (found.status, found.verdict) == ("waiting", "waiting for resume (paused by alice)")
    assert item(found, "trigger").ok, "the inputs were kept"
    sim.send(pipeline_action("p", "resume", reason="done", operator="alice"))
    assert item(explain(sim, "first"), "paused").ok


def test_each_input_latest_version_against_the_version_last_consumed() -> None:
    sim = Sim(join_app("all", partitioned=False))
    sim.send(produced("x", "", 1))
    sim.send(produced("y", "", 1))
    sim.run_all()
    sim.send(produced("x", "", 5))
    found = explain(sim, "join", "", pipeline="j")
    x, y = item(found, "input", "input x"), item(found, "input", "input y")
    assert x.ok and "latest version 5; last consumed 1" in x.detail
    assert not y.ok and "latest version 1; last consumed 1" in y.detail
    assert found.verdict == "waiting for a newer y"


def test_an_input_never_seen() -> None:
    sim = Sim(join_app("all"))
    sim.send(produced("x", D, 1))
    found = explain(sim, "join", pipeline="j")
    y = item(found, "input", "input y")
    assert not y.ok and "no version yet; never consumed" in y.detail
    assert found.verdict == "waiting for y"


def checked_app(checks: int = 1) -> ef.App:
    raw, out = ef.Dataset("raw", ef.daily()), ef.Dataset("out", ef.daily())
    p = ef.Pipeline("p")
    p.task(inputs=[raw], outputs=[out], name="t")(noop)
    found = [ef.check(raw, name=f"c{n}")(lambda ctx: True) for n in range(checks)]
    return ef.App([p], checks=found)


def test_an_input_held_by_its_pending_checks() -> None:
    sim = Sim(checked_app())
    sim.send(produced("raw", D, 1))
    found = explain(sim, "t")
    raw = item(found, "input")
    assert not raw.ok and "version 1 held: checks pending: c0" in raw.detail
    assert found.verdict == "waiting for checks on raw"


def test_an_input_with_a_failed_check_while_others_are_pending() -> None:
    sim = Sim(checked_app(checks=2))
    sim.send(produced("raw", D, 1))
    sim.answer_check(False, "3 null rows")
    raw = item(explain(sim, "t"), "input")
    assert "checks pending: c1; c0 failed (3 null rows)" in raw.detail


def test_an_input_rejected_by_a_blocking_check() -> None:
    sim = Sim(checked_app())
    sim.send(produced("raw", D, 1))
    sim.answer_check(False, "3 null rows")
    raw = item(explain(sim, "t"), "input")
    assert not raw.ok
    assert "version 1 rejected: check 'c0' failed: 3 null rows" in raw.detail


def test_the_trigger_rule_all_and_any() -> None:
    for rule, ok in (("all", False), ("any", True)):
        sim = Sim(join_app(rule))
        sim.send(pipeline_action("j", "pause", reason="r", operator="o"))
        sim.send(produced("x", D, 1))
        trigger = item(explain(sim, "join", pipeline="j"), "trigger")
        assert trigger.ok == ok and trigger.title.startswith(f"trigger rule '{rule}'")
        assert ("on x@1" in trigger.detail) == ok


def test_an_operator_s_rerun_waiting() -> None:
    sim = Sim(chain_app())
    sim.send(produced("raw", D, 1))
    sim.run_all()
    sim.send(pipeline_action("p", "pause", reason="r", operator="o"))
    sim.send(
        pipeline_action("p", "rerun_task", partition=D, task="first", reason="x", operator="bo")
    )
    trigger = item(explain(sim, "first"), "trigger")
    assert trigger.ok and trigger.title == "operator's rerun requested"
    assert trigger.detail == "task 'first' rerun by bo: x; on raw@1"


def test_the_attempt_queued() -> None:
    sim = Sim(chain_app(retries=2))
    sim.send(produced("raw", D, 1))
    found = explain(sim, "first")
    attempt = item(found, "attempt")
    assert (
        attempt.ok and attempt.title == "queued" and "attempt 1 of 3 queued since" in attempt.detail
    )
    assert (found.status, found.verdict) == ("queued", "queued: waiting for a worker")


def test_the_attempt_running_on_a_worker() -> None:
    sim = Sim(chain_app())
    sim.send(produced("raw", D, 1))
    sim.start(sim.next_request("first"))
    found = explain(sim, "first")
    assert "running on worker w1 since 1970-01-01T00:16:40+00:00" in item(found, "attempt").detail
    assert (found.status, found.verdict) == ("running", "running on worker w1")


def test_a_retry_pending_with_its_time_and_attempt_number() -> None:
    sim = Sim(chain_app(retries=ef.Retry(count=2, backoff_s=60)))
    sim.send(produced("raw", D, 1))
    first = sim.next_request("first")
    sim.start(first)
    sim.fail(first, "flaky network")
    found = explain(sim, "first")
    attempt = item(found, "attempt")
    assert not attempt.ok and attempt.title == "retry pending"
    assert (
        "attempt 1 of 3 failed: flaky network; attempt 2 at 1970-01-01T00:17:40" in attempt.detail
    )
    assert found.verdict == "waiting for retry at 1970-01-01T00:17:40+00:00 (attempt 2)"


def test_the_last_attempt_failed_with_its_error() -> None:
    sim = Sim(chain_app())
    sim.send(produced("raw", D, 1))
    first = sim.next_request("first")
    sim.start(first)
    sim.fail(first, "division by zero")
    found = explain(sim, "first")
    attempt = item(found, "attempt")
    assert not attempt.ok and "failed after 1 attempt(s): division by zero" in attempt.detail
    assert found.verdict.startswith("last attempt failed (division by zero); waiting for a newer")


def test_waiting_for_a_run_slot() -> None:
    raw, out = ef.Dataset("raw", ef.daily()), ef.Dataset("out", ef.daily())
    p = ef.Pipeline("p", max_active_runs=1)
    p.task(inputs=[raw], outputs=[out], name="t")(noop)
    sim = Sim(ef.App([p]))
    sim.send(produced("raw", D, 1))
    sim.send(produced("raw", D2, 1))
    found = explain(sim, "t", D2)
    slot = item(found, "max_active_runs")
    assert not slot.ok and slot.detail == "1 of 1 runs active; this partition is 1 of 1 waiting"
    assert found.verdict == "waiting for a run slot (max_active_runs)"
    assert item(explain(sim, "t", D), "max_active_runs").title == "run in progress"


def test_waiting_for_a_pool_slot() -> None:
    raw = ef.Dataset("raw", ef.daily())
    p = ef.Pipeline("p")
    for n in range(2):
        p.task(inputs=[raw], outputs=[], pool="gpu", name=f"t{n}")(noop)
    sim = Sim(ef.App([p], pools=[ef.Pool("gpu", 1)]))
    sim.send(produced("raw", D, 1))
    holding, queued = explain(sim, "t0"), explain(sim, "t1")
    assert item(holding, "pool").title == "holds a slot of pool gpu"
    pool = item(queued, "pool")
    assert not pool.ok and "is 1 in the queue of pool gpu: 1/1 slots used, 1 queued" in pool.detail
    assert (queued.status, queued.verdict) == ("waiting", "waiting for a slot of pool gpu")


def test_an_upstream_failure_in_the_last_run() -> None:
    sim = Sim(chain_app())
    sim.send(produced("raw", D, 1))
    first = sim.next_request("first")
    sim.start(first)
    sim.fail(first, "boom")
    found = explain(sim, "second")
    upstream = item(found, "upstream")
    assert (
        not upstream.ok and upstream.title == "upstream first failed" and upstream.detail == "boom"
    )
    assert "upstream failed or skipped: first" in found.verdict


def test_an_upstream_skip_of_this_task_s_input() -> None:
    raw, yes, no = (ef.Dataset(n, ef.daily()) for n in ("raw", "yes", "no"))
    p = ef.Pipeline("p")
    p.task(inputs=[raw], outputs=[yes, no], name="gate")(noop)
    p.task(inputs=[no], outputs=[], name="on_no")(noop)
    sim = Sim(ef.App([p]))
    sim.send(produced("raw", D, 1))
    sim.run_all(lambda req: ["yes"])
    upstream = item(explain(sim, "on_no"), "upstream")
    assert not upstream.ok and upstream.title == "upstream gate skipped"
    assert upstream.detail == "succeeded without emitting no"


def test_would_run_now() -> None:
    """A state the engine itself never leaves behind (it triggers at once), set by hand."""
    sim = Sim(chain_app())
    sim.send(produced("raw", D, 1))
    sim.run_all()
    sim.engine.pipelines["p"].partitions[D].inputs["raw"] = InputState(9)
    found = explain(sim, "first")
    assert (found.status, found.verdict) == ("would_run", "would run now")
    assert all(i.ok for i in found.items)


@pytest.mark.parametrize(
    ("pipeline", "task", "partition", "reason"),
    [
        ("nope", "first", D, "unknown pipeline 'nope'"),
        ("p", "nope", D, "pipeline 'p' has no task 'nope'"),
        ("p", "first", "someday", "partition 'someday' is not a daily key"),
    ],
)
def test_unknown_names_are_a_clear_error(
    pipeline: str, task: str, partition: str, reason: str
) -> None:
    with pytest.raises(EventError, match=reason):
        Sim(chain_app()).engine.explain(pipeline, task, partition)


def test_the_embedded_runtime_explains_state_it_keeps_on_disk_only(tmp_path: Path) -> None:
    async def scenario() -> Explanation:
        settings = ef.Settings(home=tmp_path, state_cache=0)
        async with ef.EmbeddedRuntime(chain_app(), settings) as runtime:
            await runtime.emit("raw", D, version=3)
            await runtime.wait_idle()
            assert D not in runtime.engine.pipelines["p"].partitions, "paged out"
            return await runtime.explain("p", "first", D)

    found = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert item(found, "attempt").title == "last attempt succeeded"
    assert "latest version 3; last consumed 3" in item(found, "input").detail
