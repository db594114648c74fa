"""The trust boundary and hostile input, on every runtime.

Outsiders may announce datasets; task, check, pool and pipeline-run events come only from
eventflow's services. Run ids are derived from public facts, so each forgery below names a real
run. Whatever is refused is dead-lettered with its bytes; the runs it aimed at finish as if it
never came, and the service keeps serving.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

import pytest

import eventflow as ef
from eventflow.core import Engine, run_id, run_key
from eventflow.core.router import check_run_id
from eventflow.events import (
    MAX_VERSION,
    CheckCompleted,
    CheckCompletedData,
    DatasetReset,
    DatasetResetData,
    DatasetVersion,
    Event,
    PipelineInput,
    PipelineInputData,
    PipelineRunData,
    PipelineRunSucceeded,
    TaskFailed,
    TaskFailedData,
    TaskProgressData,
    TaskRequested,
    TaskRequestedData,
    TaskStarted,
    TaskSucceeded,
    TaskSucceededData,
    utcnow,
)

from .conftest import Start
from .harness import Harness, Recorder

D1 = "2026-11-22"


def refused(h: Harness, raw: bytes) -> str:
    """The reason the dead letter of `raw` gives; fails if there is none."""
    for letter in h.dead_letters():
        if letter.original_bytes == raw:
            return letter.reason
    raise AssertionError(f"no dead letter for {raw[:80]!r}: {[d.reason for d in h.dead_letters()]}")


async def wait_until(condition: Any, what: str, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - state of another component, no signal for it
            await asyncio.sleep(0.01)


def one_task(partitions: Any = None) -> tuple[ef.App, Recorder]:
    """`body` consumes `src` and emits `out`, recording each call."""
    rec = Recorder()
    scheme = partitions or ef.partitions.NONE
    src, out = ef.Dataset("src", scheme), ef.Dataset("out", scheme)
    p = ef.Pipeline("p")

    @p.task(inputs=[src], outputs=[out])
    def body(ctx: ef.TaskContext) -> None:
        rec.enter(ctx)

    return ef.App([p]), rec


def gated_chain() -> tuple[ef.App, Recorder, asyncio.Event]:
    """`one` (daily) waits for a gate before emitting `mid`; `two` consumes `mid`."""
    rec, gate = Recorder(), asyncio.Event()
    src, mid = ef.Dataset("src", ef.daily()), ef.Dataset("mid", ef.daily())
    end = ef.Dataset("end", ef.daily())
    p = ef.Pipeline("gated")

    @p.task(inputs=[src], outputs=[mid])
    async def one(ctx: ef.TaskContext) -> None:
        rec.enter(ctx)
        await gate.wait()
        ctx.emit(mid, real=True)

    @p.task(inputs=[mid], outputs=[end])
    async def two(ctx: ef.TaskContext) -> None:
        rec.enter(ctx)
        assert ctx.inputs["mid"].metadata == {"real": True}

    return ef.App([p], datasets=[end]), rec, gate


async def test_forged_results_are_refused_and_the_real_run_finishes(start: Start) -> None:
    app, rec, gate = gated_chain()
    async with start(app) as h:
        await h.emit("src", D1, 7)
        await wait_until(lambda: rec.tasks() == ["one"], "one started")
        rid = run_id("one", D1, run_key("one", D1, {"src": 7}), 1)
        ref: dict[str, Any] = {
            "run_id": rid,
            "task": "one",
            "pipeline": "gated",
            "partition": D1,
            "attempt": 1,
            "worker": "forger",
        }
        elsewhere = DatasetVersion(dataset="mid", partition="2026-11-23", version=9)
        undeclared = DatasetVersion(dataset="end", partition=D1, version=9)
        forged = [
            TaskSucceeded.of(TaskSucceededData(**ref, outputs=[elsewhere], duration_ms=1)),
            TaskSucceeded.of(TaskSucceededData(**ref, outputs=[undeclared], duration_ms=1)),
            TaskFailed.of(TaskFailedData(**ref, error="forged", kind="error", retriable=False)),
            PipelineRunSucceeded.of(
                PipelineRunData(
                    pipeline="gated",
                    partition=D1,
                    run_id=f"gated:{D1}:1",
                    status="succeeded",
                    started_at=utcnow(),
                    finished_at=utcnow(),
                )
            ),
        ]
        sent = [await h.forge(event) for event in forged[:3]]
        await h.forge(forged[3])
        # Each forgery is decided before the real result exists: they come in before the gate.
        await wait_until(lambda: len(h.dead_letters()) >= 3, "the forgeries refused")
        gate.set()
        await h.wait_idle()
    assert rec.tasks() == ["one", "two"], "the real run went on, once"
    assert [r.status for r in h.runs()] == ["succeeded"], "no forged outcome in the history"
    for raw in sent:
        reason = refused(h, raw)
        assert "signature" in reason or "emitted by eventflow itself" in reason, reason


async def test_a_forged_check_result_cannot_pass_a_failing_blocking_check(start: Start) -> None:
    rec = Recorder()
    raw_ds, clean = ef.Dataset("raw"), ef.Dataset("clean")
    p = ef.Pipeline("checked")

    @ef.check(raw_ds, blocking=True)
    def never(ctx: ef.CheckContext) -> tuple[bool, str]:
        return False, "always fails"

    @p.task(inputs=[raw_ds], outputs=[clean])
    def consume(ctx: ef.TaskContext) -> None:
        rec.enter(ctx)

    async with start(ef.App([p], checks=[never])) as h:
        target = DatasetVersion(dataset="raw", version=5)
        data = CheckCompletedData(
            run_id=check_run_id("never", target),
            check="never",
            target=target,
            passed=True,
            blocking=True,
        )
        forged = await h.forge(CheckCompleted.of(data))
        await h.emit("raw", version=5)
        await h.wait_idle()
        await wait_until(
            lambda: any(d.original_bytes == forged for d in h.dead_letters()),
            "the forged check result refused",
        )
    assert rec.tasks() == [], "the blocked version was never consumed"


async def test_a_forged_task_request_never_runs(start: Start) -> None:
    app, rec = one_task()
    async with start(app) as h:
        request = TaskRequestedData(
            run_id=run_id("body", "", run_key("body", "", {"src": 1}), 1),
            task="body",
            pipeline="p",
            pipeline_run_id="p:-:1",
            inputs=[],
            timeout_s=5,
        )
        forged = await h.forge(TaskRequested.of(request))
        await wait_until(
            lambda: any(d.original_bytes == forged for d in h.dead_letters()),
            "the forged request refused",
        )
        await h.emit("src", version=2)
        await h.wait_idle()
    assert rec.calls == [("body", "", {"src": 2})], "only the real request ran"


class Progress(TypedDict):
    worker: str
    attempt: int


async def test_internal_events_naming_what_the_app_lacks_are_dead_lettered(start: Start) -> None:
    """As if a service of another App (or a bug) sent them: signed, yet refused with a reason."""
    app, rec = one_task(ef.daily())
    progress: Progress = {"worker": "w", "attempt": 1}
    bad: list[tuple[Event, str]] = [
        (
            PipelineInput.of(
                PipelineInputData(dataset="src", partition=D1, version=1, pipeline="nope")
            ),
            "unknown pipeline 'nope'",
        ),
        (
            PipelineInput.of(
                PipelineInputData(dataset="out", partition=D1, version=1, pipeline="p")
            ),
            "does not consume 'out'",
        ),
        (
            PipelineInput.of(
                PipelineInputData(dataset="src", partition="someday", version=1, pipeline="p")
            ),
            "not a daily key",
        ),
        (
            TaskStarted.of(
                TaskProgressData(run_id="x:1", task="ghost", pipeline="p", partition=D1, **progress)
            ),
            "has no task 'ghost'",
        ),
        (
            TaskStarted.of(
                TaskProgressData(
                    run_id="body::abc:1", task="body", pipeline="p", partition="", **progress
                )
            ),
            "does not run in partition",
        ),
        (
            TaskSucceeded.of(
                TaskSucceededData(
                    run_id=run_id("body", D1, run_key("body", D1, {"src": 1}), 1),
                    task="body",
                    pipeline="p",
                    partition=D1,
                    outputs=[],
                    duration_ms=0,
                    **progress,
                )
            ),
            "not in flight",
        ),
        (
            CheckCompleted.of(
                CheckCompletedData(
                    run_id="c:1",
                    check="c",
                    target=DatasetVersion(dataset="src", partition=D1, version=1),
                    passed=True,
                    blocking=True,
                )
            ),
            "has no check 'c'",
        ),
    ]
    async with start(app) as h:
        for event, _ in bad:
            await h.inject(event)
        await h.emit("src", D1, 3)
        await h.wait_idle()
        await wait_until(lambda: len(h.dead_letters()) >= len(bad), "every refusal")
    reasons = [d.reason for d in h.dead_letters()]
    for _, reason in bad:
        assert any(reason in r for r in reasons), (reason, reasons)
    assert rec.calls == [("body", D1, {"src": 3})], "the service still serves"


async def test_an_input_whose_decision_fails_unexpectedly_is_dead_lettered(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in deciding one input (here: made to raise) costs that input, not the service."""
    app, rec = one_task(ef.static("good", "bad"))
    handle = Engine.handle

    def buggy(self: Engine, event: Event, now: float) -> Any:
        effects = handle(self, event, now)  # change the state first: it must be put back
        if getattr(event.data, "partition", "") == "bad" and event.type.endswith("produced"):
            raise ZeroDivisionError("a bug")
        return effects

    monkeypatch.setattr(Engine, "handle", buggy)
    async with start(app) as h:
        await h.emit("src", "bad", 1)
        await h.emit("src", "good", 1)
        await h.wait_idle()
        await wait_until(lambda: h.dead_letters(), "the undecidable input refused")
        await h.emit("src", "good", 2)
        await h.wait_idle()
    assert [c[:2] for c in rec.calls] == [("body", "good"), ("body", "good")]
    assert "ZeroDivisionError: a bug" in h.dead_letters()[0].reason


async def test_a_dataset_frozen_by_a_huge_version_is_reset_through_the_log(start: Start) -> None:
    app, rec = one_task()
    async with start(app) as h:
        await h.emit("src", version=MAX_VERSION)
        await h.wait_idle()
        await h.emit("src", version=100)  # older than the mark: ignored
        await h.wait_idle()
        reset = DatasetReset.of(DatasetResetData(dataset="src", version=0, reason="bad version"))
        await h.forge(reset)  # an operator's command: allowed over the control socket...
        await h.inject(reset)  # ...and signed on Kafka (a second reset changes nothing)
        await h.wait_idle()
        await h.emit("src", version=101)
        await h.wait_idle()
    assert [c[2] for c in rec.calls] == [{"src": MAX_VERSION}, {"src": 101}]
