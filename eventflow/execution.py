"""Running one task or check body: context, timeout, heartbeats, its log, and the result event.

Shared by every worker. Async bodies run on the event loop; plain functions run in a thread so a
blocking body never stalls the loop. A thread cannot be killed, so a timed-out blocking body is
reported failed at once and left to finish in the background.

What an attempt logs (and, run in a thread, prints) is captured (`capture`) and reported as
`TaskLog` chunks: through `report` while it runs, every `log_interval_s` or when a chunk fills,
and the rest with the result, so a worker can send the last chunk in its result's transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from . import capture, metrics
from .capture import AttemptLog
from .context import CheckContext, Input, Inputs, Item, TaskContext
from .definitions import App, Task
from .errors import Fail, Skip
from .events import (
    MAX_TEXT,
    CheckCompleted,
    CheckCompletedData,
    CheckRequestedData,
    DatasetVersion,
    Event,
    Payload,
    TaskFailed,
    TaskFailedData,
    TaskHeartbeat,
    TaskLog,
    TaskProgressData,
    TaskRequestedData,
    TaskStarted,
    TaskSucceeded,
    TaskSucceededData,
    version_now,
)
from .runtime.clock import Clock, SystemClock
from .settings import Settings
from .tracing import Span, Trace, Tracer, stamp

log = logging.getLogger("eventflow.worker")
Report = Callable[[Event], Awaitable[None]]


class VersionClock:
    """Output versions: publish time in microseconds, strictly increasing within a process."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._last = 0

    def next(self) -> int:
        self._last = max(self._last + 1, version_now(self._clock.time()))
        return self._last


def one_line(exc: BaseException, limit: int = 1000) -> str:
    """`Type: first line of the message`, cut to `limit` characters (events bound their text)."""
    text = str(exc).strip().splitlines()
    return _cut(f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__, limit)


def _cut(line: str, limit: int = 1000) -> str:
    return line if len(line) <= limit else line[: limit - 1] + "…"


class Executor:
    """Runs task and check bodies for one worker and turns what they did into result events."""

    @classmethod
    def of(
        cls,
        app: App,
        settings: Settings,
        *,
        worker: str,
        heartbeats: bool,
        clock: Clock | None = None,
        tracer: Tracer | None = None,
    ) -> Executor:
        """As `settings` say; `heartbeats` only where a worker can be lost alone (Kafka). Logs
        go out every heartbeat interval in both modes. `tracer` records a `task` span per
        attempt."""
        interval_s = settings.heartbeat_interval_ms / 1000
        return cls(
            app,
            worker=worker,
            max_metadata_bytes=settings.max_metadata_bytes,
            heartbeat_interval_s=interval_s if heartbeats else None,
            source=settings.source,
            clock=clock,
            task_log_max_bytes=settings.task_log_max_bytes,
            log_interval_s=interval_s,
            tracer=tracer,
        )

    def __init__(
        self,
        app: App,
        *,
        worker: str,
        max_metadata_bytes: int,
        heartbeat_interval_s: float | None = None,
        source: str = "eventflow",
        clock: Clock | None = None,
        task_log_max_bytes: int = 64 * 1024,
        log_interval_s: float | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        """`log_interval_s`: how long a logged line may wait before it is reported while the
        attempt runs (None: only when a chunk fills, and at the end)."""
        self.app = app
        self.clock: Clock = clock or SystemClock()
        self.worker = worker
        self.max_metadata_bytes = max_metadata_bytes
        self.heartbeat_interval_s = heartbeat_interval_s
        self.source = source
        self.versions = VersionClock(self.clock)
        self.task_log_max_bytes = task_log_max_bytes
        self.log_interval_s = log_interval_s
        self.tracer = tracer
        capture.install()

    def _progress(self, req: TaskRequestedData) -> dict[str, Any]:
        return {
            "run_id": req.run_id,
            "task": req.task,
            "pipeline": req.pipeline,
            "partition": req.partition,
            "attempt": req.attempt,
            "worker": self.worker,
        }

    def _event(self, kind: type[Event], data: Payload, correlation: str | None) -> Event:
        return kind.of(data, source=self.source, correlationid=correlation)

    async def run(
        self,
        request: TaskRequestedData | CheckRequestedData,
        report: Report,
        trace: Trace | None = None,
    ) -> list[Event]:
        """Run a task (reporting its start, heartbeats and log chunks as they come) or a check;
        what is left to report at the end: the attempt's last log chunks, then its result.
        Every event carries `trace` (the request's context) on, or the attempt's span's."""
        if isinstance(request, CheckRequestedData):
            return [stamp(await self.run_check(request), trace)]
        return await self.run_task(request, report, trace)

    async def run_task(
        self, req: TaskRequestedData, report: Report, trace: Trace | None = None
    ) -> list[Event]:
        """Run the body; report `started`, heartbeats and log chunks through `report`; return
        the last log chunks and the result event, in that order."""
        if self.tracer is None:
            events = await self._traced(req, report, trace)
        else:
            with self.tracer.span(
                "task",
                trace,
                pipeline=req.pipeline,
                task=req.task,
                partition=req.partition,
                run_id=req.run_id,
                attempt=req.attempt,
                pipeline_run_id=req.pipeline_run_id,
                worker=self.worker,
            ) as span:
                events = await self._traced(req, report, span.trace)
                _outcome(span, events[-1])
        result = events[-1]
        if isinstance(result.data, TaskSucceededData):
            metrics.TASK_RUNS.labels("skipped" if result.data.skipped else "succeeded").inc()
        else:
            metrics.TASK_RUNS.labels("failed").inc()
        return events

    async def _traced(
        self, req: TaskRequestedData, report: Report, trace: Trace | None
    ) -> list[Event]:
        if trace is None:
            return await self._attempt(req, report, None)

        async def carrying(event: Event) -> None:
            await report(trace.stamp(event))

        return [trace.stamp(e) for e in await self._attempt(req, carrying, trace)]

    async def _attempt(
        self, req: TaskRequestedData, report: Report, trace: Trace | None
    ) -> list[Event]:
        base = self._progress(req)
        corr = req.pipeline_run_id
        task = self.app.tasks.get(req.task)
        if task is None:
            failed = TaskFailedData(
                **base,
                error=f"this worker does not know task {req.task!r}",
                kind="definition",
                retriable=False,
            )
            return [self._event(TaskFailed, failed, corr)]
        await report(self._event(TaskStarted, TaskProgressData(**base), corr))
        flusher: asyncio.Task[None] | None = None
        # The sender is not the attempt: what it logs is not the attempt's log.
        outside = contextvars.copy_context()

        def flush() -> None:  # from the first chunk wanted out on: most attempts log nothing
            nonlocal flusher
            if flusher is None:
                flusher = asyncio.create_task(
                    self._flush(lines, report, corr), name=f"log {req.run_id}", context=outside
                )

        lines = AttemptLog(
            req,
            max_bytes=self.task_log_max_bytes,
            clock=self.clock,
            interval_s=self.log_interval_s,
            prints=not task.is_async,
            on_wanted=flush,
        )
        try:
            with capture.attempt(req.run_id, lines, ref=req, trace=trace):
                result = await self._body(task, req, report, lines)
        except BaseException:
            if flusher is not None:
                flusher.cancel()  # cancelled: what has not gone out yet is lost with the attempt
            raise
        finally:
            lines.close()
            if flusher is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await flusher
        return [*self._chunks(lines, corr), result]

    async def _flush(self, lines: AttemptLog, report: Report, corr: str) -> None:
        """Report chunks while the attempt runs, each time `lines` wants one out; what is
        left when it ends goes with the result."""
        while not lines.closed:
            await lines.wanted.wait()
            lines.wanted.clear()
            if lines.closed:
                return  # what is left goes with the result
            chunk = lines.take()
            if chunk is None:
                continue
            try:
                await report(self._event(TaskLog, chunk, corr))
            except Exception:
                # The lines are lost, the attempt is not: a log never fails a task.
                log.warning("log chunk of %s not reported", chunk.run_id, exc_info=True)
            lines.schedule()  # for the lines that came meanwhile

    def _chunks(self, lines: AttemptLog, corr: str) -> list[Event]:
        chunks = []
        while (chunk := lines.take()) is not None:
            chunks.append(self._event(TaskLog, chunk, corr))
        return chunks

    async def _body(
        self, task: Task, req: TaskRequestedData, report: Report, lines: AttemptLog
    ) -> Event:
        base = self._progress(req)
        corr = req.pipeline_run_id
        ctx = TaskContext(
            task=task.info(timeout_s=req.timeout_s),
            partition=req.partition,
            run_id=req.run_id,
            attempt=req.attempt,
            inputs=Inputs(Input.of(ref) for ref in req.inputs),
            log=logging.getLogger(f"eventflow.task.{task.name}"),
            max_metadata_bytes=self.max_metadata_bytes,
            items=tuple(Item(i.key, i.status, i.version) for i in req.items or ()),
        )
        beat = self._heartbeat(req, report) if self.heartbeat_interval_s else None
        started = time.perf_counter()
        ended: Exception | None = None
        try:
            async with self.clock.timeout(req.timeout_s):
                if task.is_async:
                    await task.fn(ctx)  # type: ignore[misc]
                else:
                    await asyncio.to_thread(task.fn, ctx)
        except TimeoutError:
            failed = TaskFailedData(
                **base,
                error=f"ran longer than {req.timeout_s:g}s",
                kind="timeout",
                duration_ms=_ms(started),
            )
            return self._event(TaskFailed, failed, corr)
        except Exception as exc:
            ended = exc
        finally:
            if beat is not None:
                beat.cancel()
        if ctx.definition_error is not None:
            # Checked first: a body may have caught the error `emit` raised.
            failed = TaskFailedData(
                **base,
                error=ctx.definition_error,
                kind="definition",
                retriable=False,
                duration_ms=_ms(started),
            )
            return self._event(TaskFailed, failed, corr)
        if isinstance(ended, Skip):
            done = TaskSucceededData(
                **base,
                outputs=[],
                skipped=(ended.reason or "skipped")[:MAX_TEXT],
                duration_ms=_ms(started),
            )
            return self._event(TaskSucceeded, done, corr)
        if isinstance(ended, Fail):
            failed = TaskFailedData(
                **base,
                error=_cut(" ".join(ended.reason.split()) or "failed"),
                kind="error",
                retriable=False,
                duration_ms=_ms(started),
            )
            return self._event(TaskFailed, failed, corr)
        if ended is not None:
            log.warning("task run %s failed", req.run_id, exc_info=ended)
            lines.add("ERROR", "".join(traceback.format_exception(ended)).rstrip())
            failed = TaskFailedData(
                **base, error=one_line(ended), kind="error", duration_ms=_ms(started)
            )
            return self._event(TaskFailed, failed, corr)
        outputs = [
            DatasetVersion(
                dataset=name,
                partition=req.partition,
                version=self.versions.next(),
                metadata=meta,
            )
            for name, meta in ctx.outputs().items()
        ]
        outputs += [
            DatasetVersion(dataset=name, partition=key, version=self.versions.next(), metadata=meta)
            for name, keys in ctx.fanned.items()
            for key, meta in sorted(keys.items())
        ]
        done = TaskSucceededData(**base, outputs=outputs, duration_ms=_ms(started))
        return self._event(TaskSucceeded, done, corr)

    def _heartbeat(self, req: TaskRequestedData, report: Report) -> asyncio.Task[None]:
        async def beat() -> None:
            assert self.heartbeat_interval_s
            while True:
                await self.clock.sleep(self.heartbeat_interval_s)
                data = TaskProgressData(**self._progress(req))
                await report(self._event(TaskHeartbeat, data, req.pipeline_run_id))

        return asyncio.create_task(beat(), name=f"heartbeat {req.run_id}")

    async def run_check(self, req: CheckRequestedData) -> Event:
        chk = self.app.checks.get(req.check)
        target = req.target
        if chk is None:
            passed, blocking, message = (
                False,
                True,
                f"this worker does not know check {req.check!r}",
            )
        else:
            blocking = chk.blocking
            ctx = CheckContext(
                check=chk.name,
                dataset=target.dataset,
                partition=target.partition,
                version=target.version,
                metadata=dict(target.metadata),
                log=logging.getLogger(f"eventflow.check.{chk.name}"),
            )
            try:
                # Not kept as a task log (a check belongs to no pipeline); its stderr lines
                # still carry its run id.
                with capture.attempt(req.run_id):
                    async with self.clock.timeout(req.timeout_s):
                        result = await _run_check_body(chk.fn, ctx)
                passed, message = _check_result(result)
                message = message[:MAX_TEXT]
            except Fail as fail:
                passed, message = False, _cut(" ".join(fail.reason.split()))
            except TimeoutError:
                passed, message = False, f"ran longer than {req.timeout_s:g}s"
            except Exception as exc:
                passed, message = False, one_line(exc)
        data = CheckCompletedData(
            run_id=req.run_id,
            check=req.check,
            target=target,
            passed=passed,
            blocking=blocking,
            message=message,
            worker=self.worker,
        )
        return self._event(CheckCompleted, data, None)


async def _run_check_body(fn: Callable[[CheckContext], Any], ctx: CheckContext) -> object:
    if inspect.iscoroutinefunction(fn):
        return await fn(ctx)
    return await asyncio.to_thread(fn, ctx)


def _check_result(result: object) -> tuple[bool, str]:
    if isinstance(result, tuple) and len(result) == 2:
        return bool(result[0]), str(result[1])
    if isinstance(result, bool):
        return result, ""
    raise TypeError(f"a check returns a bool or (bool, message), not {type(result).__name__}")


def _outcome(span: Span, result: Event) -> None:
    """The span's `outcome` attribute, and status ERROR for a failed attempt."""
    data = result.data
    if isinstance(data, TaskFailedData):
        span.set(outcome=data.kind if data.kind != "error" else "failed")
        span.fail(data.error)
    elif isinstance(data, TaskSucceededData):
        span.set(outcome="skipped" if data.skipped else "succeeded")


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
