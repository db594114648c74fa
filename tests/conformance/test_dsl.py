"""The DSL's promises end to end: failures a body declares final are not retried, and checks
attached through a pipeline guard their dataset."""

from __future__ import annotations

import eventflow as ef

from .conftest import Start
from .harness import Recorder


def outcome(run: ef.PipelineRunData) -> dict[str, str]:
    return {t.task: t.status for t in run.tasks}


async def test_fail_ends_the_run_after_one_attempt(start: Start) -> None:
    rec = Recorder()
    raw, out = ef.Dataset("raw"), ef.Dataset("out")
    p = ef.Pipeline("final")

    @p.task(inputs=[raw], outputs=[out], retries=ef.Retry(count=3, backoff_s=0.01))
    def validate(ctx: ef.TaskContext) -> None:
        rec.enter(ctx)
        raise ef.Fail("column 'ts' missing")

    p.task(inputs=[out], name="after")(rec.enter)
    async with start(ef.App([p])) as h:
        await h.emit("raw")
        await h.wait_idle()
    assert rec.tasks() == ["validate"], "one attempt, no retry, nothing downstream"
    [run] = h.runs()
    assert run.status == "failed"
    assert outcome(run) == {"validate": "failed", "after": "upstream_failed"}
    assert (run.tasks[0].attempts, run.tasks[0].error) == (1, "column 'ts' missing")
    assert "task 'validate' failed: column 'ts' missing" in run.reason


async def test_an_undeclared_emit_ends_the_run_after_one_attempt(start: Start) -> None:
    rec = Recorder()
    raw, good, bad = ef.Dataset("raw"), ef.Dataset("good"), ef.Dataset("bad")
    p = ef.Pipeline("undeclared")

    @p.task(inputs=[raw], outputs=[good], retries=ef.Retry(count=3, backoff_s=0.01))
    def route(ctx: ef.TaskContext) -> None:
        rec.enter(ctx)
        ctx.emit(bad)

    p.task(inputs=[good], name="after")(rec.enter)
    async with start(ef.App([p], datasets=[bad])) as h:
        await h.emit("raw")
        await h.wait_idle()
    assert rec.tasks() == ["route"]
    [run] = h.runs()
    assert run.status == "failed"
    assert outcome(run) == {"route": "failed", "after": "upstream_failed"}
    assert run.tasks[0].attempts == 1
    assert run.tasks[0].error == (
        "definition: task 'route' emitted 'bad', which is not one of its declared outputs ['good']"
    )


async def test_a_check_attached_through_the_pipeline_guards_its_dataset(start: Start) -> None:
    rec = Recorder()
    raw, table = ef.Dataset("raw"), ef.Dataset("table")
    p = ef.Pipeline("guarded")

    @p.task(inputs=[raw], outputs=[table])
    def build(ctx: ef.TaskContext) -> None:
        ctx.emit(table, rows=ctx.inputs[raw].metadata["rows"])

    p.task(inputs=[table], name="train")(rec.enter)

    @p.check(table)
    def has_rows(ctx: ef.CheckContext) -> tuple[bool, str]:
        return ctx.metadata["rows"] > 0, f"{ctx.metadata['rows']} rows"

    async with start(ef.App([p])) as h:
        await h.emit("raw", rows=0)
        await h.wait_idle()
    assert rec.tasks() == []
    [run] = h.runs()
    assert run.status == "failed" and "check 'has_rows' failed: 0 rows" in run.reason
    assert [(c.check, c.passed) for c in h.checks()] == [("has_rows", False)]
