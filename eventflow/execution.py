"""Running one task or check body: context, timeout, heartbeats, and the result event.

Shared by every worker. Async bodies run on the event loop; plain functions run in a thread so a
blocking body never stalls the loop. A thread cannot be killed, so a timed-out blocking body is
reported failed at once and left to finish in the background.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import metrics
from .context import CheckContext, Input, Inputs, TaskContext
from .definitions import App
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
    TaskProgressData,
    TaskRequestedData,
    TaskStarted,
    TaskSucceeded,
    TaskSucceededData,
    version_now,
)
from .runtime.clock import Clock, SystemClock
from .settings import Settings

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
    ) -> Executor:
        """As `settings` say; `heartbeats` only where a worker can be lost alone (Kafka)."""
        return cls(
            app,
            worker=worker,
            max_metadata_bytes=settings.max_metadata_bytes,
            heartbeat_interval_s=settings.heartbeat_interval_ms / 1000 if heartbeats else None,
            source=settings.source,
            clock=clock,
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
    ) -> None:
        self.app = app
        self.clock: Clock = clock or SystemClock()
        self.worker = worker
        self.max_metadata_bytes = max_metadata_bytes
        self.heartbeat_interval_s = heartbeat_interval_s
        self.source = source
        self.versions = VersionClock(self.clock)

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

    async def run(self, request: TaskRequestedData | CheckRequestedData, report: Report) -> Event:
        """Run a task (reporting its start and heartbeats) or a check; the result event."""
        if isinstance(request, CheckRequestedData):
            return await self.run_check(request)
        return await self.run_task(request, report)

    async def run_task(self, req: TaskRequestedData, report: Report) -> Event:
        """Run the body; report `started` (and heartbeats) through `report`; return the result."""
        result = await self._attempt(req, report)
        if isinstance(result.data, TaskSucceededData):
            metrics.TASK_RUNS.labels("skipped" if result.data.skipped else "succeeded").inc()
        else:
            metrics.TASK_RUNS.labels("failed").inc()
        return result

    async def _attempt(self, req: TaskRequestedData, report: Report) -> Event:
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
            return self._event(TaskFailed, failed, corr)
        await report(self._event(TaskStarted, TaskProgressData(**base), corr))
        ctx = TaskContext(
            task=task.info(timeout_s=req.timeout_s),
            partition=req.partition,
            run_id=req.run_id,
            attempt=req.attempt,
            inputs=Inputs(Input.of(ref) for ref in req.inputs),
            log=logging.getLogger(f"eventflow.task.{task.name}"),
            max_metadata_bytes=self.max_metadata_bytes,
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
                async with self.clock.timeout(req.timeout_s):
                    if inspect.iscoroutinefunction(chk.fn):
                        result = await chk.fn(ctx)
                    else:
                        result = await asyncio.to_thread(chk.fn, ctx)
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


def _check_result(result: object) -> tuple[bool, str]:
    if isinstance(result, tuple) and len(result) == 2:
        return bool(result[0]), str(result[1])
    if isinstance(result, bool):
        return result, ""
    raise TypeError(f"a check returns a bool or (bool, message), not {type(result).__name__}")


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
