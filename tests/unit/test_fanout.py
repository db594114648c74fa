"""Dynamic fan-out, decided: the width, items as partitions with their own retries, a gather
that waits for every item, a failed item under each trigger rule, a rerun superseding, the
records it leaves, and what the App refuses."""

from __future__ import annotations

from typing import Literal

import pytest

import eventflow as ef
from eventflow.core.state import dump, load_partition
from eventflow.errors import EventError
from eventflow.events import (
    DatasetVersion,
    TaskRequested,
    TaskRequestedData,
    TaskSucceeded,
    TaskSucceededData,
    encode,
    pipeline_action,
)
from eventflow.testing import build_context

from .sim import Sim, produced

D = "2026-11-22"


def noop(ctx: ef.TaskContext) -> None:
    pass


def fan_app(trigger: Literal["all", "any"] = "all", width: int = 5, retries: int = 1) -> ef.App:
    day = ef.Dataset("day", ef.daily())
    files, parsed = ef.Dataset("files", ef.dynamic()), ef.Dataset("parsed", ef.dynamic())
    summary = ef.Dataset("summary", ef.daily())
    p = ef.Pipeline("p")
    p.task(inputs=[day], outputs=[files], name="listing", fan_out=ef.FanOut(max_width=width))(noop)
    p.task(inputs=[files], outputs=[parsed], name="parse", retries=retries)(noop)
    p.task(inputs=[parsed], outputs=[summary], name="total", gather=True, trigger=trigger)(noop)
    return ef.App([p])


def fan_out(sim: Sim, keys: list[str]) -> TaskRequestedData:
    """Run `listing` (queued first), naming `keys`."""
    req = sim.next_request("listing")
    sim.start(req)
    refs = []
    for key in keys:
        sim.versions += 1
        refs.append(DatasetVersion(dataset="files", partition=key, version=sim.versions))
    ref = req.model_dump(include={"run_id", "task", "pipeline", "partition", "attempt"})
    data = TaskSucceededData(**ref, worker="w1", outputs=refs, duration_ms=1)
    sim.send(TaskSucceeded.of(data))
    return req


def test_each_item_is_its_own_partition_and_the_gather_waits_for_all() -> None:
    sim = Sim(fan_app())
    sim.send(produced("day", D, 1))
    fan_out(sim, ["b", "a", "c"])
    parses = [r for r in sim.queue if r.task == "parse"]
    assert sorted(r.partition for r in parses) == ["a", "b", "c"]
    assert all(r.run_id.startswith(f"parse:{r.partition}:") for r in parses)
    for _ in range(2):  # two items done: the gather still waits
        req = sim.next_request("parse")
        sim.start(req)
        sim.succeed(req)
    assert not [r for r in sim.queue if r.task == "total"]
    last = sim.next_request("parse")
    sim.start(last)
    sim.succeed(last)
    gather = sim.next_request("total")
    assert gather.partition == D
    assert [(i.key, i.status) for i in gather.items or ()] == [
        ("a", "succeeded"),
        ("b", "succeeded"),
        ("c", "succeeded"),
    ]
    assert all(i.version is not None for i in gather.items or ())
    sim.start(gather)
    sim.succeed(gather)
    assert sim.engine.idle()
    day_runs = [r for r in sim.runs if r.partition == D]
    assert [sim.outcome(r) for r in day_runs] == [{"listing": "succeeded"}, {"total": "succeeded"}]


def test_an_item_retries_on_its_own() -> None:
    sim = Sim(fan_app())
    sim.send(produced("day", D, 1))
    fan_out(sim, ["a", "b"])
    a = sim.next_request("parse")
    sim.start(a)
    sim.fail(a)
    other = sim.next_request("parse")
    sim.advance(5)
    retry = sim.next_request("parse")
    assert retry.partition == a.partition and retry.attempt == 2
    assert other.partition != a.partition and other.attempt == 1
    for req in (retry, other):
        sim.start(req)
        sim.succeed(req)
    [gather] = [r for r in sim.queue if r.task == "total"]
    assert {i.status for i in gather.items or ()} == {"succeeded"}


@pytest.mark.parametrize("trigger", ["all", "any"])
def test_a_failed_item_and_the_trigger_rule(trigger: Literal["all", "any"]) -> None:
    sim = Sim(fan_app(trigger=trigger, retries=0))
    sim.send(produced("day", D, 1))
    fan_out(sim, ["a", "b"])
    a, b = sim.next_request("parse"), sim.next_request("parse")
    sim.start(a)
    sim.fail(a)
    assert not [r for r in sim.queue if r.task == "total"], "b has not ended"
    sim.start(b)
    sim.succeed(b)
    gathers = [r for r in sim.queue if r.task == "total"]
    if trigger == "all":
        assert gathers == []
    else:
        [gather] = gathers
        assert [(i.key, i.status, i.version is None) for i in gather.items or ()] == [
            ("a", "failed", True),
            ("b", "succeeded", False),
        ]


def test_a_second_fan_out_supersedes_the_first() -> None:
    sim = Sim(fan_app())
    sim.send(produced("day", D, 1))
    fan_out(sim, ["a", "b"])
    old_a = sim.next_request("parse")
    sim.send(produced("day", D, 2))  # a rerun of the fan-out while `b` and `a` still run
    first_b = sim.next_request("parse")
    fan_out(sim, ["b", "c"])
    for req in (old_a, first_b):  # `a` is no item of the new fan-out; `b` runs again after
        sim.start(req)
        sim.succeed(req)
    assert not [r for r in sim.queue if r.task == "total"]
    sim.run_all()
    gathers = [r for r in sim.requests if r.task == "total"]
    assert [[i.key for i in g.items or ()] for g in gathers] == [["b", "c"]]
    parsed_b = [r for r in sim.requests if r.task == "parse" and r.partition == "b"]
    assert len(parsed_b) == 2, "b's gathered version is the one the new fan-out fed"


def test_a_fan_out_wider_than_max_width_is_refused() -> None:
    sim = Sim(fan_app(width=2))
    sim.send(produced("day", D, 1))
    req = sim.next_request("listing")
    refs = [
        DatasetVersion(dataset="files", partition=k, version=50 + n) for n, k in enumerate("abc")
    ]
    ref = req.model_dump(include={"run_id", "task", "pipeline", "partition", "attempt"})
    data = TaskSucceededData(**ref, worker="w1", outputs=refs, duration_ms=1)
    with pytest.raises(EventError, match="wider than 2"):
        sim.engine.runs.validate(sim.engine.pipelines["p"], data)


def test_a_fan_out_of_1000_items_keeps_its_record_compact() -> None:
    sim = Sim(fan_app(width=1000))
    sim.send(produced("day", D, 1))
    keys = [f"file-{n:04d}.csv" for n in range(1000)]
    fan_out(sim, keys)
    sim.run_all()
    [gather] = [r for r in sim.requests if r.task == "total"]
    assert [i.key for i in gather.items or ()] == keys
    record = dump(sim.engine.pipelines["p"].partitions[D])
    assert len(record) < 100_000
    assert load_partition(record).fan_outs["listing"].results == (
        sim.engine.pipelines["p"].partitions[D].fan_outs["listing"].results
    )
    item = dump(sim.engine.pipelines["p"].partitions["file-0500.csv"])
    assert len(item) < 2_000


def test_dynamic_keys_are_validated() -> None:
    scheme = ef.dynamic()
    assert scheme.validate("2026-11-22.part-1=x") == "2026-11-22.part-1=x"
    for bad in ("", "a:b", "a/b", "../x", " a", "x" * 101, "-a"):
        with pytest.raises(EventError):
            scheme.validate(bad)


def test_emit_names_partitions_and_enforces_the_width() -> None:
    ctx = build_context(fan_app(width=2).tasks["listing"])
    ctx.fan_out("files", ["a", "b"])
    ctx.emit("files", partition="a", rows=3)  # the same key again: no wider
    assert ctx.fanned == {"files": {"a": {"rows": 3}, "b": {}}}
    with pytest.raises(ef.DefinitionError, match="max_width=2"):
        ctx.emit("files", partition="c")
    assert ctx.definition_error is not None
    bad = build_context(fan_app().tasks["listing"])
    with pytest.raises(ef.DefinitionError, match="name the partition"):
        bad.emit("files")
    with pytest.raises(ef.DefinitionError, match="not a dynamic key"):
        bad.emit("files", partition="a/b")


def _app(**options: object) -> ef.App:
    day = ef.Dataset("day", ef.daily())
    files, out = ef.Dataset("files", ef.dynamic()), ef.Dataset("out", ef.daily())
    other = ef.Pipeline("other")
    p = ef.Pipeline("p")
    fan = options.pop("fan", ef.FanOut(max_width=3))
    gather_in = options.pop("gather_in", files)
    p.task(inputs=[day], outputs=[files], name="listing", fan_out=fan)(noop)  # type: ignore[arg-type]
    where = other if options.pop("elsewhere", False) else p
    where.task(inputs=[gather_in], outputs=[out], name="total", gather=True)(noop)  # type: ignore[list-item]
    return ef.App([p, other] if other.tasks else [p])


def test_the_app_validates_fan_outs_and_gathers() -> None:
    app = _app()
    assert app.gather_source["total"].name == "listing"
    assert app.tasks["total"].partitioning == ef.daily()
    for width in (0, 10_001, 2.5, True):
        with pytest.raises(ef.DefinitionError, match="max_width"):
            _app(fan=ef.FanOut(max_width=width))  # type: ignore[arg-type]
    with pytest.raises(ef.DefinitionError, match="not fed by a fan-out of pipeline 'other'"):
        _app(elsewhere=True)
    with pytest.raises(ef.DefinitionError, match="one input, partitioned dynamic"):
        _app(gather_in=ef.Dataset("day", ef.daily()))
    day, plain = ef.Dataset("day", ef.daily()), ef.Dataset("plain", ef.daily())
    p = ef.Pipeline("p")
    p.task(inputs=[day], outputs=[plain], fan_out=ef.FanOut(), name="x")(noop)
    with pytest.raises(ef.DefinitionError, match="needs an output partitioned dynamic"):
        ef.App([p])


# -- an item's end is never lost -----------------------------------------------------------------
def act(
    sim: Sim,
    action: Literal["pause", "resume", "cancel", "rerun_task"],
    partition: str = "",
    task: str | None = None,
) -> None:
    event = pipeline_action(
        "p", action, operator="alice", reason="because", partition=partition, task=task
    )
    sim.send(event)


def gathers(sim: Sim) -> list[list[tuple[str, str]]]:
    return [[(i.key, i.status) for i in r.items or ()] for r in sim.requests if r.task == "total"]


def test_an_item_that_ends_while_paused_is_gathered_after_resume() -> None:
    sim = Sim(fan_app())
    sim.send(produced("day", D, 1))
    fan_out(sim, ["a", "b"])
    a, b = sim.next_request("parse"), sim.next_request("parse")
    sim.start(a)
    sim.succeed(a)
    sim.start(b)
    act(sim, "pause")
    sim.succeed(b)  # its run ends while paused
    act(sim, "resume")
    sim.run_all()
    assert gathers(sim) == [[("a", "succeeded"), ("b", "succeeded")]]


def test_a_rerun_of_a_failed_item_lets_a_gather_of_all_run() -> None:
    sim = Sim(fan_app(retries=0))
    sim.send(produced("day", D, 1))
    fan_out(sim, ["a", "b"])
    a, b = sim.next_request("parse"), sim.next_request("parse")
    sim.start(a)
    sim.fail(a)
    sim.start(b)
    sim.succeed(b)
    assert gathers(sim) == []
    sim.send(produced("files", "a", a.inputs[0].version))  # a repeat changes nothing
    assert gathers(sim) == []
    act(sim, "rerun_task", partition="a", task="parse")
    sim.run_all()
    assert gathers(sim) == [[("a", "succeeded"), ("b", "succeeded")]]


def test_cancelling_an_item_waiting_for_a_run_slot_ends_it() -> None:
    day = ef.Dataset("day", ef.daily())
    files, parsed = ef.Dataset("files", ef.dynamic()), ef.Dataset("parsed", ef.dynamic())
    summary = ef.Dataset("summary", ef.daily())
    p = ef.Pipeline("p", max_active_runs=1)
    p.task(inputs=[day], outputs=[files], name="listing", fan_out=ef.FanOut(max_width=5))(noop)
    p.task(inputs=[files], outputs=[parsed], name="parse")(noop)
    p.task(inputs=[parsed], outputs=[summary], name="total", gather=True, trigger="any")(noop)
    sim = Sim(ef.App([p]))
    sim.send(produced("day", D, 1))
    fan_out(sim, ["a", "b"])
    assert sim.engine.pipelines["p"].waiting == ["b"]
    act(sim, "cancel", partition="b")
    sim.run_all()
    assert gathers(sim) == [[("a", "succeeded"), ("b", "failed")]]


def test_an_item_whose_input_a_check_rejects_fails() -> None:
    day = ef.Dataset("day", ef.daily())
    files, parsed = ef.Dataset("files", ef.dynamic()), ef.Dataset("parsed", ef.dynamic())
    summary = ef.Dataset("summary", ef.daily())
    p = ef.Pipeline("p")
    p.task(inputs=[day], outputs=[files], name="listing", fan_out=ef.FanOut(max_width=5))(noop)
    p.task(inputs=[files], outputs=[parsed], name="parse")(noop)
    p.task(inputs=[parsed], outputs=[summary], name="total", gather=True, trigger="any")(noop)
    gate = ef.check(files, blocking=True, name="gate")(lambda ctx: True)
    sim = Sim(ef.App([p], checks=[gate]))
    sim.send(produced("day", D, 1))
    fan_out(sim, ["a", "b"])
    sim.answer_check(False, "empty file")  # a's
    sim.answer_check(True)
    sim.run_all()
    assert gathers(sim) == [[("a", "failed"), ("b", "succeeded")]]


@pytest.mark.parametrize("trigger", ["all", "any"])
def test_a_key_another_day_fans_out_to_first_fails_the_first_days_item(
    trigger: Literal["all", "any"],
) -> None:
    # Keys are global to a dataset: the second day takes `a` and `b` over before the first
    # day's items ran. The first day's items end as failed (its gather is not left waiting
    # forever); the second day gathers both.
    sim = Sim(fan_app(trigger))
    sim.send(produced("day", D, 1))
    sim.send(produced("day", "2026-11-23", 1))
    fan_out(sim, ["a", "b"])
    fan_out(sim, ["a", "b"])
    sim.run_all()
    first = sim.engine.pipelines["p"].partitions[D].fan_outs["listing"]
    assert first.complete and sorted(first.failed) == ["a", "b"]
    gathered = sorted(r.partition for r in sim.requests if r.task == "total")
    assert gathered == ([D, "2026-11-23"] if trigger == "any" else ["2026-11-23"])


def test_emit_checks_the_key_length_and_width_the_coordinator_checks() -> None:
    day = ef.Dataset("day", ef.daily())
    short, other = ef.Dataset("short", ef.dynamic(max_length=5)), ef.Dataset("other", ef.dynamic())
    p = ef.Pipeline("p")
    p.task(inputs=[day], outputs=[short, other], name="listing", fan_out=ef.FanOut(max_width=2))(
        noop
    )
    task = ef.App([p]).tasks["listing"]
    ctx = build_context(task, D)
    with pytest.raises(ef.DefinitionError, match="1 to 5"):
        ctx.emit(short, partition="abcdefgh")  # the coordinator would refuse the success
    ctx = build_context(task, D)
    ctx.fan_out(short, ["x", "y"])
    ctx.fan_out(other, ["y", "x"])  # the same items
    with pytest.raises(ef.DefinitionError, match="max_width=2"):
        ctx.emit(other, partition="z")  # a third item: `Runs.validate` counts every output's


def test_only_a_gathers_request_carries_items() -> None:
    # Workers of earlier versions refuse a request with a field they do not know.
    sim = Sim(fan_app())
    sim.send(produced("day", D, 1))
    fan_out(sim, ["a"])
    sim.run_all()
    requests = {r.task: r for r in sim.requests}
    assert b'"items"' not in encode(TaskRequested.of(requests["parse"]))
    assert [i.key for i in requests["total"].items or ()] == ["a"]
