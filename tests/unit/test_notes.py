"""Decision notes: what became of an announcement from outside, at the router and at each
consuming pipeline, tied to it by its correlation."""

from __future__ import annotations

import eventflow as ef
from eventflow.core import Engine
from eventflow.events import (
    DatasetProduced,
    DatasetProducedData,
    Decided,
    DecisionData,
    Event,
    pipeline_action,
)

from .sim import produced, routed_inputs

D = "2026-11-20"


def app() -> ef.App:
    a, b, c, out, checked = (ef.Dataset(n, ef.daily()) for n in ("a", "b", "c", "out", "checked"))
    left, right = ef.Pipeline("left"), ef.Pipeline("right")

    @left.task(inputs=[a], outputs=[out])
    def first(ctx: ef.TaskContext) -> None:
        ctx.emit(out)

    @right.task(inputs=[a, c])
    def join(ctx: ef.TaskContext) -> None:
        pass

    @right.task(inputs=[checked, b])
    def guarded(ctx: ef.TaskContext) -> None:
        pass

    @right.check(checked)
    def sane(ctx: ef.CheckContext) -> bool:
        return True

    return ef.App([left, right])


def notes(events: list[Event]) -> list[DecisionData]:
    return [e.data for e in events if isinstance(e, Decided)]


def test_the_router_says_where_a_version_went_and_each_pipeline_what_it_did() -> None:
    engine = Engine(app())
    sent = produced("a", D, 1)
    fx = engine.handle(sent, 1.0)
    [note] = notes(fx.events)
    assert (note.stage, note.outcome, note.pipelines) == ("router", "routed", ["left", "right"])
    assert note.correlation == sent.id
    routed = routed_inputs(fx)
    assert {r.correlationid for r in routed} == {sent.id}, "what it sets going carries its id"
    by_pipeline = {r.data.pipeline: notes(engine.handle(r, 1.0).events) for r in routed}
    [started] = by_pipeline["left"]
    assert (started.outcome, started.tasks) == ("triggered", ["first"])
    assert started.runs == [f"left:{D}:1"]
    [waiting] = by_pipeline["right"]
    assert waiting.outcome == "waiting" and waiting.detail == "join: waiting for c"
    assert waiting.correlation == sent.id


def test_a_producers_own_correlation_id_is_kept() -> None:
    engine = Engine(app())
    data = DatasetProducedData(dataset="a", partition=D, version=1)
    sent = DatasetProduced.of(data, correlationid="spark-job-42")
    fx = engine.handle(sent, 1.0)
    assert notes(fx.events)[0].correlation == "spark-job-42"
    assert {r.correlationid for r in routed_inputs(fx)} == {"spark-job-42"}


def test_a_version_not_newer_is_ignored_with_the_version_seen() -> None:
    engine = Engine(app())
    engine.handle(produced("a", D, 5), 1.0)
    [note] = notes(engine.handle(produced("a", D, 3), 2.0).events)
    assert note.outcome == "ignored"
    assert note.detail == "version 3 is not newer than 5, already seen"


def test_a_version_with_checks_is_held_and_one_nobody_consumes_is_unused() -> None:
    engine = Engine(app())
    [held] = notes(engine.handle(produced("checked", D, 1), 1.0).events)
    assert held.outcome == "held" and "sane" in held.detail
    [unused] = notes(engine.handle(produced("out", D, 1), 1.0).events)
    assert unused.outcome == "unused" and unused.pipelines == []


def test_a_paused_pipeline_says_so() -> None:
    engine = Engine(app())
    engine.handle(pipeline_action("left", "pause", reason="r", operator="o"), 1.0)
    fx = engine.handle(produced("a", D, 1), 2.0)
    [routed] = [r for r in routed_inputs(fx) if r.data.pipeline == "left"]
    [note] = notes(engine.handle(routed, 2.0).events)
    assert note.outcome == "paused" and "paused" in note.detail


def test_task_outputs_get_no_notes() -> None:
    engine = Engine(app())
    data = DatasetProducedData(dataset="out", partition=D, version=1, producer="first:x:1")
    assert notes(engine.handle(DatasetProduced.of(data), 1.0).events) == []


def test_a_note_stays_small_at_any_fan_out() -> None:
    source = ef.Dataset("source", ef.daily())
    wide = ef.Pipeline("wide")
    for n in range(50):

        @wide.task(inputs=[source], name=f"leaf{n:02}")
        def leaf(ctx: ef.TaskContext) -> None:
            pass

    engine = Engine(ef.App([wide]))
    [routed] = routed_inputs(engine.handle(produced("source", D, 1), 1.0))
    [note] = notes(engine.handle(routed, 1.0).events)
    assert note.outcome == "triggered" and len(note.tasks) == 50
    assert note.detail.startswith("requested leaf00, leaf01,") and "and 40 more" in note.detail
