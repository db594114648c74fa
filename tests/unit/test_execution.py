"""How a body's ending becomes a result event: which failures the retry policy may retry."""

from __future__ import annotations

from collections.abc import Callable

import eventflow as ef
from eventflow.events import (
    CheckCompletedData,
    CheckRequestedData,
    DatasetVersion,
    Event,
    TaskFailedData,
    TaskRequestedData,
    TaskSucceededData,
)
from eventflow.execution import Executor

raw, out = ef.Dataset("raw"), ef.Dataset("out")


def executor(fn: Callable[[ef.TaskContext], object], **checks: ef.Check) -> Executor:
    p = ef.Pipeline("p")
    p.task(inputs=[raw], outputs=[out], retries=3, name="t")(fn)  # type: ignore[arg-type]
    return Executor(ef.App([p], checks=checks.values()), worker="w", max_metadata_bytes=1024)


async def attempt(fn: Callable[[ef.TaskContext], object]) -> Event:
    req = TaskRequestedData(
        run_id="t::k:1",
        task="t",
        pipeline="p",
        pipeline_run_id="p::1",
        inputs=[DatasetVersion(dataset="raw", version=1)],
        timeout_s=10,
    )
    reported: list[Event] = []

    async def report(event: Event) -> None:
        reported.append(event)

    *_, result = await executor(fn).run_task(req, report)
    assert [e.type for e in reported] == ["eventflow.task.started"]
    return result


async def test_fail_is_not_retriable_and_reports_its_reason() -> None:
    def body(ctx: ef.TaskContext) -> None:
        raise ef.Fail("input has no 'ts' column")

    result = await attempt(body)
    assert isinstance(result.data, TaskFailedData)
    assert (result.data.kind, result.data.retriable) == ("error", False)
    assert result.data.error == "input has no 'ts' column"


async def test_an_undeclared_emit_fails_without_retry_even_when_the_body_catches_it() -> None:
    async def body(ctx: ef.TaskContext) -> None:
        try:
            ctx.emit("typo")
        except ef.DefinitionError:
            pass

    result = await attempt(body)
    assert isinstance(result.data, TaskFailedData)
    assert (result.data.kind, result.data.retriable) == ("definition", False)
    assert result.data.error == (
        "task 't' emitted 'typo', which is not one of its declared outputs ['out']"
    )


async def test_other_exceptions_stay_retriable() -> None:
    def body(ctx: ef.TaskContext) -> None:
        raise ConnectionError("database away")

    result = await attempt(body)
    assert isinstance(result.data, TaskFailedData)
    assert (result.data.kind, result.data.retriable) == ("error", True)
    assert result.data.error == "ConnectionError: database away"


async def test_the_body_sees_task_info_and_inputs_by_dataset() -> None:
    seen: list[object] = []

    def body(ctx: ef.TaskContext) -> None:
        seen.extend([ctx.task, ctx.inputs[raw].version])
        ctx.emit(out, n=1)

    result = await attempt(body)
    assert isinstance(result.data, TaskSucceededData)
    assert [(o.dataset, o.metadata) for o in result.data.outputs] == [("out", {"n": 1})]
    [info, version] = seen
    assert isinstance(info, ef.TaskInfo)
    assert (info.name, info.timeout_s, info.retries, version) == ("t", 10, 3, 1)


async def test_fail_in_a_check_fails_it_with_the_reason() -> None:
    @ef.check(raw, name="c")
    def gate(ctx: ef.CheckContext) -> bool:
        raise ef.Fail("only 3 rows")

    run = executor(lambda ctx: None, c=gate)
    req = CheckRequestedData(
        run_id="c:1", check="c", target=DatasetVersion(dataset="raw", version=1), timeout_s=5
    )
    result = await run.run_check(req)
    assert isinstance(result.data, CheckCompletedData)
    assert (result.data.passed, result.data.message) == (False, "only 3 rows")
