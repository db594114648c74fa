"""Task logs: what an attempt logs and prints is kept per attempt, capped, and sent in chunks."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import weakref
from collections.abc import Callable

import pytest

import eventflow as ef
from eventflow import capture
from eventflow.core import Engine
from eventflow.events import (
    DatasetVersion,
    Event,
    TaskFailedData,
    TaskLog,
    TaskLogData,
    TaskRequestedData,
    TaskSucceededData,
)
from eventflow.execution import Executor
from eventflow.runtime.clock import SystemClock
from eventflow.testing import EmbeddedHarness, build_context

raw, out = ef.Dataset("raw"), ef.Dataset("out")


def executor(
    *bodies: Callable[[ef.TaskContext], object], **options: float | int | None
) -> Executor:
    """Tasks `t0`, `t1`... running `bodies`."""
    p = ef.Pipeline("p")
    for n, fn in enumerate(bodies):
        p.task(inputs=[raw], outputs=[ef.Dataset(f"out{n}")], name=f"t{n}")(fn)  # type: ignore[arg-type]
    return Executor(ef.App([p]), worker="w", max_metadata_bytes=1024, **options)  # type: ignore[arg-type]


def request(task: str = "t0", attempt: int = 1) -> TaskRequestedData:
    return TaskRequestedData(
        run_id=f"{task}::k:{attempt}",
        task=task,
        pipeline="p",
        attempt=attempt,
        pipeline_run_id="p::1",
        inputs=[DatasetVersion(dataset="raw", version=1)],
        timeout_s=10,
    )


class Reports:
    """What an attempt reported while it ran, with a signal for each log chunk."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.chunk = asyncio.Event()

    async def __call__(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, TaskLog):
            self.chunk.set()

    def logs(self) -> list[TaskLogData]:
        return [e.data for e in self.events if isinstance(e.data, TaskLogData)]


def chunks(events: list[Event]) -> list[TaskLogData]:
    return [e.data for e in events if isinstance(e.data, TaskLogData)]


def lines(logs: list[TaskLogData]) -> list[tuple[str, str]]:
    return [(line.level, line.message) for chunk in logs for line in chunk.lines]


async def test_what_a_body_logs_through_ctx_log_and_loggers_under_it_is_kept() -> None:
    async def body(ctx: ef.TaskContext) -> None:
        ctx.log.debug("not kept: below INFO")
        ctx.log.info("read %d rows", 10)
        logging.getLogger(f"{ctx.log.name}.db").warning("slow query")
        logging.getLogger("elsewhere").warning("not the task's logger")
        try:
            raise ValueError("bad row")
        except ValueError:
            ctx.log.exception("skipping a row")

    reports = Reports()
    events = await executor(body).run_task(request(), reports)
    [chunk] = chunks(events)
    assert isinstance(events[-1].data, TaskSucceededData)
    assert (chunk.run_id, chunk.task, chunk.pipeline, chunk.attempt) == ("t0::k:1", "t0", "p", 1)
    assert (chunk.seq, chunk.truncated) == (0, False)
    assert events[0].correlationid == "p::1"
    assert lines([chunk])[:2] == [("INFO", "read 10 rows"), ("WARNING", "slow query")]
    level, message = lines([chunk])[2]
    assert level == "ERROR"
    assert message.startswith("skipping a row\nTraceback")
    assert message.endswith("ValueError: bad row")
    assert len(chunk.lines) == 3
    assert reports.logs() == []  # a short attempt sends its log with the result


async def test_a_failing_body_logs_its_traceback() -> None:
    def body(ctx: ef.TaskContext) -> None:
        ctx.log.info("starting")
        raise ConnectionError("database away")

    events = await executor(body).run_task(request(), Reports())
    assert isinstance(events[-1].data, TaskFailedData)
    [(_, first), (level, last)] = lines(chunks(events))
    assert first == "starting"
    assert level == "ERROR"
    assert last.startswith("Traceback") and last.endswith("ConnectionError: database away")


async def test_a_blocking_body_prints_to_its_log_and_on_with_the_run_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import sys

    def body(ctx: ef.TaskContext) -> None:
        print("hello")
        print("to stderr", file=sys.stderr)
        sys.stdout.write("no newline at the end")

    events = await executor(body).run_task(request(), Reports())
    assert lines(chunks(events)) == [
        ("STDOUT", "hello"),
        ("STDERR", "to stderr"),
        ("STDOUT", "no newline at the end"),
    ]
    printed = capsys.readouterr()
    assert printed.out == "[t0::k:1] hello\n[t0::k:1] no newline at the end\n"
    assert printed.err == "[t0::k:1] to stderr\n"
    assert not isinstance(sys.stdout, capture._Stream), "the stream router stays in place"


async def test_an_async_body_prints_as_it_did(capsys: pytest.CaptureFixture[str]) -> None:
    async def body(ctx: ef.TaskContext) -> None:
        print("plain")

    events = await executor(body).run_task(request(), Reports())
    assert chunks(events) == []
    assert capsys.readouterr().out == "plain\n"


async def test_concurrent_attempts_keep_their_own_lines() -> None:
    both = threading.Barrier(2, timeout=10)

    def body(ctx: ef.TaskContext) -> None:
        for n in range(50):
            if n % 10 == 0:
                both.wait()  # both bodies are writing at the same time
            ctx.log.info("%s line %d", ctx.task.name, n)
            print(f"{ctx.task.name} print {n}")

    async def outsider() -> None:
        for n in range(50):
            print(f"outsider {n}")
            logging.getLogger("eventflow.task.t0").info("not in an attempt")
            await asyncio.sleep(0)

    run = executor(body, body)
    first, second, _ = await asyncio.gather(
        run.run_task(request("t0"), Reports()), run.run_task(request("t1"), Reports()), outsider()
    )
    for name, events in (("t0", first), ("t1", second)):
        kept = lines(chunks(events))
        assert len(kept) == 100
        assert all(message.startswith(f"{name} ") for _, message in kept), kept


async def test_a_log_over_the_cap_is_cut_and_says_how_much_was_dropped() -> None:
    def body(ctx: ef.TaskContext) -> None:
        for n in range(10):
            ctx.log.info("%s", f"{n}" * 30)  # 30 bytes each

    events = await executor(body, task_log_max_bytes=100).run_task(request(), Reports())
    [chunk] = chunks(events)
    assert chunk.truncated
    assert [message for _, message in lines([chunk])] == [
        "0" * 30,
        "1" * 30,
        "2" * 30,
        "7 more lines (210 bytes) dropped: an attempt keeps 100 bytes of log (task_log_max_bytes)",
    ]


async def test_a_running_attempt_sends_its_log_every_interval() -> None:
    go_on = asyncio.Event()

    async def body(ctx: ef.TaskContext) -> None:
        ctx.log.info("one")
        await go_on.wait()
        ctx.log.info("two")

    reports = Reports()
    attempt = asyncio.create_task(executor(body, log_interval_s=0.01).run_task(request(), reports))
    await asyncio.wait_for(reports.chunk.wait(), 10)
    [first] = reports.logs()
    assert (first.seq, lines([first])) == (0, [("INFO", "one")])
    go_on.set()
    events = await attempt
    [last] = chunks(events)
    assert (last.seq, lines([last])) == (1, [("INFO", "two")])
    assert events[-1].type == "eventflow.task.succeeded"


async def test_an_attempt_that_logs_nothing_starts_no_sender() -> None:
    senders: list[asyncio.Task[object]] = []

    async def body(ctx: ef.TaskContext) -> None:
        senders.extend(t for t in asyncio.all_tasks() if t.get_name().startswith("log "))

    events = await executor(body, log_interval_s=0.01).run_task(request(), Reports())
    assert senders == []
    assert events[-1].type == "eventflow.task.succeeded"


async def test_a_closed_log_lets_go_of_the_sender_that_refers_to_it() -> None:
    """The owner's callback refers to the log it was given to: once the log is closed, that
    cycle is gone, and the log is freed when let go, not by the cyclic collector."""

    def closed() -> weakref.ref[capture.AttemptLog]:
        def send() -> None:  # as the executor's: it refers to the log
            attempt_log.wanted.set()

        attempt_log = capture.AttemptLog(
            request(), max_bytes=1000, clock=SystemClock(), on_wanted=send
        )
        attempt_log.close()
        return weakref.ref(attempt_log)

    gc.disable()
    try:
        assert closed()() is None
    finally:
        gc.enable()


async def test_the_log_sender_does_not_run_as_the_attempt() -> None:
    """What the sender itself logs (a chunk it could not report) is not the attempt's output."""
    seen: list[str | None] = []

    async def body(ctx: ef.TaskContext) -> None:
        ctx.log.info("one")
        await asyncio.wait_for(sent.wait(), 10)

    sent = asyncio.Event()
    reports = Reports()

    async def report(event: Event) -> None:
        if isinstance(event, TaskLog):
            seen.append(capture.RUN_ID.get())
            sent.set()
        await reports(event)

    await executor(body, log_interval_s=0.01).run_task(request(), report)
    assert seen == [None]


async def test_a_full_chunk_goes_out_at_once() -> None:
    sent = threading.Event()
    loop = asyncio.get_running_loop()

    def body(ctx: ef.TaskContext) -> None:
        for n in range(capture.CHUNK_BYTES // 100 + 1):
            ctx.log.info("%04d%s", n, "x" * 96)
        assert sent.wait(10), "no chunk went out while the body ran"
        ctx.log.info("after")

    reports = Reports()

    async def report(event: Event) -> None:
        await reports(event)
        loop.call_soon(sent.set)

    events = await executor(body).run_task(request(), report)  # no interval: only when full
    logged = reports.logs()
    assert [chunk.seq for chunk in logged] == [0]
    assert sum(len(m) for _, m in lines(logged)) >= capture.CHUNK_BYTES
    [last] = chunks(events)
    assert last.seq == 1
    assert lines([last])[-1] == ("INFO", "after")
    assert [m[:4] for _, m in lines([*logged, last])][:-1] == [
        f"{n:04d}" for n in range(capture.CHUNK_BYTES // 100 + 1)
    ]


async def test_stderr_lines_carry_the_run_id_of_the_attempt_that_logged_them() -> None:
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(self.format(record))

    handler = Keep()
    handler.setFormatter(logging.Formatter("%(name)s%(run)s: %(message)s"))
    handler.addFilter(capture.RunIdFilter())
    logger = logging.getLogger("eventflow.task.t0")
    logger.addHandler(handler)
    try:

        async def body(ctx: ef.TaskContext) -> None:
            ctx.log.info("inside")

        await executor(body).run_task(request(), Reports())
        logger.info("outside")
    finally:
        logger.removeHandler(handler)
    assert seen == ["eventflow.task.t0 [t0::k:1]: inside", "eventflow.task.t0: outside"]


def test_the_engine_decides_nothing_on_a_log() -> None:
    p = ef.Pipeline("p")
    p.task(inputs=[raw], name="t0")(lambda ctx: None)
    engine = Engine(ef.App([p]))
    chunk = TaskLogData(
        **request().model_dump(include={"run_id", "task", "pipeline"}), seq=0, lines=[]
    )
    effects = engine.handle(TaskLog.of(chunk), 0.0)
    assert (effects.events, effects.dispatch, effects.wakes, effects.dirty_partitions) == (
        [],
        [],
        [],
        set(),
    )


async def test_the_testing_context_keeps_what_the_body_logs() -> None:
    p = ef.Pipeline("p")

    @p.task(inputs=[raw], outputs=[out])
    def clean(ctx: ef.TaskContext) -> None:
        ctx.log.info("cleaned %d rows", ctx.inputs[raw].metadata["rows"])
        ctx.log.warning("3 rows without a timestamp")
        ctx.log.debug("not kept")

    ctx = build_context(clean, "2026-11-22", {raw: {"rows": 10}})
    other = build_context(clean, "2026-11-23", {raw: {"rows": 1}})
    clean.fn(ctx)
    assert ctx.messages() == ["cleaned 10 rows", "3 rows without a timestamp"]
    assert ctx.messages("WARNING") == ["3 rows without a timestamp"]
    assert [line.level for line in ctx.lines] == ["INFO", "WARNING"]
    assert other.messages() == []


async def test_an_embedded_runs_log_reaches_subscribers_with_its_run_id() -> None:
    p = ef.Pipeline("p")

    @p.task(inputs=[raw], outputs=[out], retries=ef.Retry(count=1, backoff_s=0.01))
    def flaky(ctx: ef.TaskContext) -> None:
        print(f"attempt {ctx.attempt}")
        if ctx.attempt == 1:
            raise ConnectionError("away")
        ctx.log.info("done")

    async with EmbeddedHarness(ef.App([p])) as h:
        logs = h.runtime.subscribe()
        await h.emit("raw")
        [run] = await h.wait_for_runs()
        assert run.status == "succeeded"
        results = h.task_results("flaky")
        kept = h.task_logs("flaky")
        assert [chunk.run_id for chunk in kept] == [r.run_id for r in results]
        assert [chunk.attempt for chunk in kept] == [1, 2]
        assert lines(kept[:1])[0] == ("STDOUT", "attempt 1")
        assert lines(kept[:1])[1][1].endswith("ConnectionError: away")
        assert lines(kept[1:]) == [("STDOUT", "attempt 2"), ("INFO", "done")]
        received = [logs.get_nowait() for _ in range(logs.qsize())]
        assert [e.data for e in received if isinstance(e, TaskLog)] == kept
        assert {e.correlationid for e in received if isinstance(e, TaskLog)} == {run.run_id}
