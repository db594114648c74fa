"""Operators' actions decided by the core: pause, resume, rerun a task or a run, cancel."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

import eventflow as ef
from eventflow.core import Engine, codec
from eventflow.core.codec import Snapshot
from eventflow.embedded.control import control_allows
from eventflow.errors import EventError
from eventflow.events import (
    Action,
    DatasetVersion,
    PipelineAction,
    TaskFailed,
    TaskFailedData,
    TaskSucceeded,
    TaskSucceededData,
    decode,
    encode,
    pipeline_action,
)
from eventflow.kafka.signing import Signer
from eventflow.topics import destination

from .sim import Sim, produced, routed_inputs
from .test_runs import chain_app, noop

D, D2, D3 = "2026-11-22", "2026-11-23", "2026-11-24"


def act(sim: Sim, action: Action, partition: str = "", **fields: Any) -> None:
    fields.setdefault("reason", "because")
    sim.send(pipeline_action("p", action, operator="alice", partition=partition, **fields))


def started(sim: Sim) -> list[str]:
    return [e.data.run_id for e in sim.events if e.type == "eventflow.pipeline.run.started"]  # type: ignore[attr-defined]


# -- pause and resume ----------------------------------------------------------------------------
def test_pause_keeps_inputs_and_resume_triggers_once_per_partition() -> None:
    sim = Sim(chain_app())
    act(sim, "pause")
    for version in (1, 2, 3):
        sim.send(produced("raw", D, version))
    sim.send(produced("raw", D2, 1))
    assert not sim.queue and not started(sim), "nothing starts while paused"
    assert sim.engine.pipelines["p"].partitions[D].inputs["raw"].version == 3, "inputs kept"
    act(sim, "resume")
    assert sorted((r.task, r.partition, r.inputs[0].version) for r in sim.queue) == [
        ("first", D, 3),
        ("first", D2, 1),
    ]
    sim.run_all()
    assert [r.status for r in sim.runs] == ["succeeded", "succeeded"]
    assert len(started(sim)) == 2


def test_a_run_in_progress_holds_its_next_task_while_paused_and_goes_on_after_resume() -> None:
    sim = Sim(chain_app())
    sim.send(produced("raw", D, 1))
    first = sim.next_request("first")
    sim.start(first)
    act(sim, "pause")
    sim.succeed(first)  # a running attempt finishes
    assert not sim.queue, "the next task does not start while paused"
    assert not sim.runs, "the run stays open: it has a task to run"
    assert not sim.engine.idle()
    act(sim, "resume")
    sim.run_all()
    [run] = sim.runs
    assert sim.outcome(run) == {"first": "succeeded", "second": "succeeded"}
    assert len(started(sim)) == 1


def test_retries_wait_while_paused_and_are_asked_for_on_resume() -> None:
    sim = Sim(chain_app(retries=ef.Retry(count=1, backoff_s=10)))
    sim.send(produced("raw", D, 1))
    first = sim.next_request("first")
    sim.start(first)
    sim.fail(first)
    act(sim, "pause")
    sim.advance(30)
    assert not sim.queue, "the retry waits for the resume"
    assert not [at for at, _ in sim.wakes if at <= sim.now], "no wake is asked for meanwhile"
    act(sim, "resume")
    sim.advance(0)
    retry = sim.next_request("first")
    assert retry.attempt == 2


def test_max_active_runs_waiting_partitions_start_on_resume_in_order() -> None:
    raw, out = ef.Dataset("raw", ef.daily()), ef.Dataset("out", ef.daily())
    p = ef.Pipeline("p", max_active_runs=1)
    p.task(inputs=[raw], outputs=[out], name="t")(noop)
    sim = Sim(ef.App([p]))
    for day in (D, D2):
        sim.send(produced("raw", day, 1))
    act(sim, "pause")
    running = sim.next_request("t")
    sim.start(running)
    sim.succeed(running)  # its run ends; the waiting partition is not admitted while paused
    assert not sim.queue and sim.engine.pipelines["p"].waiting == [D2]
    sim.send(produced("raw", D3, 1))
    act(sim, "resume")
    assert [r.partition for r in sim.queue] == [D2]
    sim.run_all()
    assert [r.partition for r in sim.requests] == [D, D2, D3]


def test_pause_is_kept_in_the_pipeline_header_and_survives_a_restart() -> None:
    engine = Engine(chain_app())
    fx = engine.handle(pipeline_action("p", "pause", reason="deploy", operator="bob"), 50.0)
    records = codec.changes(engine, fx)
    assert [key for key, _ in records] == [codec.header_key("p")]
    snapshot = Snapshot()
    for key, value in records:
        snapshot.add(key.decode(), value)
    restarted = Engine(chain_app())
    snapshot.install(restarted)
    paused = restarted.pipelines["p"].paused
    assert paused is not None and (paused.operator, paused.reason, paused.at) == (
        "bob",
        "deploy",
        50,
    )
    assert not restarted.handle(produced("raw", D, 1), 60.0).dispatch
    old = Snapshot()
    old.add(codec.header_key("p").decode(), b'{"active": [], "waiting": []}')
    old.install(restarted)
    assert restarted.pipelines["p"].paused is None, "a header from before pauses: not paused"


def test_pause_twice_and_resume_unpaused_are_refused() -> None:
    sim = Sim(chain_app())
    with pytest.raises(EventError, match="'p' is not paused"):
        act(sim, "resume")
    act(sim, "pause", reason="first")
    with pytest.raises(EventError, match=r"already paused \(by alice: first\)"):
        act(sim, "pause")


# -- rerun ---------------------------------------------------------------------------------------
def test_rerun_task_gets_a_fresh_run_id_on_the_same_inputs_and_retriggers_downstream() -> None:
    sim = Sim(chain_app())
    sim.send(produced("raw", D, 1))
    sim.run_all()
    before = {r.task: r for r in sim.requests}
    act(sim, "rerun_task", D, task="first", reason="bad deploy")
    again = sim.next_request("first")
    assert again.run_id != before["first"].run_id
    assert again.attempt == 1
    assert [(i.dataset, i.version) for i in again.inputs] == [("raw", 1)]
    sim.start(again)
    sim.succeed(again)
    second = sim.next_request("second")  # its new output version counts as fresh
    assert second.inputs[0].version > before["second"].inputs[0].version
    sim.start(second)
    sim.succeed(second)
    first_run, rerun = sim.runs
    assert first_run.reason == ""
    assert rerun.status == "succeeded"
    assert rerun.reason == "task 'first' rerun by alice: bad deploy"
    act(sim, "rerun_task", D, task="first")
    assert sim.next_request("first").run_id not in {again.run_id, before["first"].run_id}


def test_a_rerun_s_retries_keep_its_run_id_key() -> None:
    sim = Sim(chain_app(retries=ef.Retry(count=1, backoff_s=1)))
    sim.send(produced("raw", D, 1))
    first = sim.next_request("first")
    sim.start(first)
    sim.fail(first, retriable=False)
    [failed] = sim.runs
    assert failed.status == "failed"
    act(sim, "rerun_task", D, task="first")
    rerun = sim.next_request("first")
    sim.start(rerun)
    sim.fail(rerun)
    sim.advance(1)
    retry = sim.next_request("first")
    assert retry.attempt == 2 and retry.run_id == rerun.run_id[:-1] + "2"
    sim.start(retry)
    sim.succeed(retry)
    sim.run_all()
    assert sim.runs[-1].status == "succeeded"


def test_a_rerun_waits_for_resume_and_for_a_run_slot() -> None:
    sim = Sim(chain_app())
    sim.send(produced("raw", D, 1))
    sim.run_all()
    act(sim, "pause")
    act(sim, "rerun_task", D, task="second")
    assert not sim.queue
    with pytest.raises(EventError, match="already waits"):
        act(sim, "rerun_task", D, task="second")
    act(sim, "resume")
    assert [r.task for r in sim.queue] == ["second"]


def test_rerun_run_reruns_the_entry_tasks_and_the_cascade_follows() -> None:
    sim = Sim(chain_app())
    sim.send(produced("raw", D, 1))
    sim.run_all()
    act(sim, "rerun_run", D, reason="backfill")
    assert [r.task for r in sim.queue] == ["first"]
    sim.run_all()
    assert sim.tasks_run() == ["first", "second", "first", "second"]
    assert sim.runs[-1].reason == "run rerun by alice: backfill"


@pytest.mark.parametrize(
    ("action", "fields", "reason"),
    [
        ("rerun_task", {"task": "first"}, "is in flight"),
        ("rerun_task", {"task": "second", "partition": D2}, "never ran in partition"),
        ("rerun_task", {"task": "nope"}, "has no task 'nope'"),
        ("rerun_run", {}, "in progress in partition"),
        ("rerun_run", {"partition": D2}, "never ran in partition"),
        ("cancel", {"partition": D2}, "no run in progress or waiting"),
    ],
)
def test_actions_that_cannot_be_carried_out_are_refused_with_the_reason(
    action: Action, fields: dict[str, Any], reason: str
) -> None:
    sim = Sim(chain_app())
    sim.send(produced("raw", D, 1))
    fields.setdefault("partition", D)
    with pytest.raises(EventError, match=reason):
        act(sim, action, **fields)
    assert [r.task for r in sim.requests] == ["first"], "nothing changed"


def test_an_unknown_pipeline_or_a_task_of_another_pipeline_is_refused() -> None:
    other = ef.Pipeline("other")
    other.task(inputs=[ef.Dataset("x")], name="elsewhere")(noop)
    p = ef.Pipeline("p")
    p.task(inputs=[ef.Dataset("raw")], name="here")(noop)
    engine = Engine(ef.App([p, other]))
    with pytest.raises(EventError, match="unknown pipeline 'nope'"):
        engine.handle(pipeline_action("nope", "pause", reason="r", operator="o"), 1.0)
    rerun = pipeline_action("p", "rerun_task", task="elsewhere", reason="r", operator="o")
    with pytest.raises(EventError, match="has no task 'elsewhere'"):
        engine.handle(rerun, 1.0)


# -- cancel --------------------------------------------------------------------------------------
def test_cancel_stops_the_bodies_and_fails_the_run_without_retry() -> None:
    sim = Sim(chain_app(retries=3))
    sim.send(produced("raw", D, 1))
    first = sim.next_request("first")
    sim.start(first)
    act(sim, "cancel", D, reason="wrong input")
    assert first.run_id in sim.cancelled, "the body is stopped"
    [run] = sim.runs
    assert run.status == "failed"
    assert run.reason == "cancelled by alice: wrong input"
    assert sim.outcome(run) == {"first": "failed", "second": "upstream_failed"}
    [record] = [e.data for e in sim.events if isinstance(e, TaskFailed)]
    assert (record.run_id, record.kind, record.retriable) == (first.run_id, "cancelled", False)
    sim.advance(3600)
    assert not sim.queue, "a cancelled attempt is not retried"
    logged = len(sim.events)
    sim.succeed(first)  # the worker's late report: its outputs are not published
    assert len(sim.events) == logged and not sim.queue


def test_cancel_drops_a_partition_waiting_for_a_run_slot() -> None:
    raw, out = ef.Dataset("raw", ef.daily()), ef.Dataset("out", ef.daily())
    p = ef.Pipeline("p", max_active_runs=1)
    p.task(inputs=[raw], outputs=[out], name="t")(noop)
    sim = Sim(ef.App([p]))
    for day in (D, D2, D3):
        sim.send(produced("raw", day, 1))
    act(sim, "cancel", D2)
    assert sim.engine.pipelines["p"].waiting == [D3]
    sim.run_all()
    assert [r.partition for r in sim.requests] == [D, D3]
    act(sim, "pause")
    act(sim, "resume")
    assert not sim.queue, "what the cancelled partition waited for is dropped"
    sim.send(produced("raw", D2, 2))
    assert [r.partition for r in sim.queue] == [D2], "new data triggers it again"


def test_outputs_of_a_cancelled_run_still_on_their_way_trigger_nothing() -> None:
    """On Kafka an output crosses the router before its consumers see it; a cancel may come
    between."""
    engine = Engine(chain_app())
    [routed] = routed_inputs(engine.handle(produced("raw", D, 1), 1.0))
    [first] = engine.handle(routed, 1.0).dispatch
    sim = Sim(chain_app())
    sim.engine = engine
    sim.start(first)
    ref = first.model_dump(include={"run_id", "task", "pipeline", "partition", "attempt"})
    out = DatasetVersion(dataset="a", partition=D, version=500)
    data = TaskSucceededData(**ref, worker="w", outputs=[out], duration_ms=1)
    [on_its_way] = engine.handle(TaskSucceeded.of(data), 2.0).events
    fx = engine.handle(pipeline_action("p", "cancel", partition=D, reason="r", operator="o"), 3.0)
    assert [e.type for e in fx.events] == ["eventflow.pipeline.run.failed"]
    assert not fx.dispatch
    [routed_out] = engine.handle(on_its_way, 4.0).events
    assert not engine.handle(routed_out, 4.0).dispatch, "second does not run on it"


def test_the_cancel_record_read_back_is_logged_not_decided() -> None:
    sim = Sim(chain_app())
    sim.send(produced("raw", D, 1))
    first = sim.next_request("first")
    act(sim, "cancel", D)
    [record] = [e for e in sim.events if isinstance(e, TaskFailed)]
    fx = sim.engine.handle(record, sim.now)
    assert not fx.events and not fx.dispatch and not fx.dirty_partitions
    forged = record.data.model_copy(update={"pipeline": "nope"})
    with pytest.raises(EventError):
        sim.engine.handle(TaskFailed.of(TaskFailedData(**forged.model_dump())), sim.now)
    assert first.run_id in sim.cancelled


# -- the event -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"action": "pause", "task": "t"}, "`task` is given with `rerun_task` and only with it"),
        ({"action": "rerun_task"}, "`task` is given with `rerun_task` and only with it"),
        ({"action": "resume", "partition": D}, "concerns the whole pipeline"),
        ({"action": "cancel", "partition": D, "reason": ""}, "reason"),
        ({"action": "cancel", "partition": D, "operator": ""}, "operator"),
        ({"action": "explode"}, "action"),
        ({"action": "cancel", "reason": "x" * 9000}, "reason"),
    ],
)
def test_an_action_that_does_not_fit_its_fields_is_refused_when_read(
    fields: dict[str, Any], reason: str
) -> None:
    data = {"pipeline": "p", "reason": "r", "operator": "o", **fields}
    envelope = {
        "specversion": "1.0",
        "id": "1",
        "source": "ui",
        "type": PipelineAction.event_type,
        "data": data,
    }
    with pytest.raises(EventError, match=reason):
        decode(orjson.dumps(envelope))


def test_actions_come_in_through_the_control_socket_and_signed_on_kafka() -> None:
    event = pipeline_action("p", "cancel", partition=D, reason="r", operator="o")
    assert control_allows(event)
    raw = encode(event)
    signer = Signer(b"k" * 32)
    topic = "eventflow.pipeline-inputs"
    with pytest.raises(EventError, match="without a valid signature"):
        signer.check(topic, event, raw, [])
    signer.check(topic, event, raw, signer.headers(topic, raw))
    assert destination(event) == (topic, "p")


def test_the_same_action_sent_again_is_refused_even_after_a_restart() -> None:
    sim = Sim(chain_app())
    sim.send(produced("raw", D, 1))
    sim.run_all()
    rerun = pipeline_action("p", "rerun_task", partition=D, task="first", reason="r", operator="o")
    fx = sim.engine.handle(rerun, sim.now)
    assert [r.task for r in fx.dispatch] == ["first"]
    sim.queue.extend(fx.dispatch)
    sim.run_all()
    with pytest.raises(EventError, match="carried out already"):
        sim.engine.handle(rerun, sim.now)
    snapshot = Snapshot()
    for key, value in codec.changes(sim.engine, fx):
        snapshot.add(key.decode(), value)
    restarted = Engine(chain_app())
    snapshot.install(restarted)
    with pytest.raises(EventError, match="carried out already"):
        restarted.handle(rerun, sim.now)
