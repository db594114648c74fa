"""A pipeline run: its status and the reason it failed, its task attempts on a timeline drawn on
the server (CSS bars on a time axis, no chart library), each attempt's log, inputs and outputs,
the branches it skipped, and the operator's re-run and cancel."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ..history.models import PipelineRun, TaskAttempt
from .site import Site, duration

#: Later runs of the partition the run page lists.
LATER = 10
#: Axis steps, in seconds: the first giving at most `TICKS` ticks is used.
STEPS = (
    *(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
    *(1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800),
    *(3600, 7200, 10800, 21600, 43200, 86400),
)
TICKS = 8


@dataclass(frozen=True)
class Bar:
    """One attempt's row on the timeline, as percentages of the run's span: waiting from its
    request to its start, then running to its end (or to now)."""

    attempt: TaskAttempt
    wait_left: float
    wait_width: float
    run_left: float
    run_width: float
    took: str


@dataclass(frozen=True)
class Tick:
    left: float
    label: str


def timeline(
    run: PipelineRun, attempts: list[TaskAttempt], now: datetime
) -> tuple[list[Bar], list[Tick]]:
    """Bars for the attempts, and the time axis, over the run's span (to now while it runs)."""
    times = [run.started_at]
    for a in attempts:
        times += [t for t in (a.requested_at, a.started_at, a.ended_at) if t is not None]
    start = min(times)
    end = max([*times, run.finished_at or now])
    if run.finished_at is None or any(a.ended_at is None for a in attempts):
        end = max(end, now)
    span = max((end - start).total_seconds(), 0.001)

    def pos(at: datetime) -> float:
        return round(100 * (at - start).total_seconds() / span, 3)

    bars = []
    for a in attempts:
        asked = a.requested_at or a.started_at or start
        began = a.started_at or (now if a.status == "requested" else asked)
        ended = a.ended_at or (now if a.status in ("running", "requested") else began)
        took = (ended - began).total_seconds() if a.started_at is not None else None
        bars.append(
            Bar(
                attempt=a,
                wait_left=pos(asked),
                wait_width=round(max(pos(began) - pos(asked), 0.0), 3),
                run_left=pos(began),
                run_width=round(max(pos(ended) - pos(began), 0.4), 3),
                took=duration(took),
            )
        )
    step = next((s for s in STEPS if span / s <= TICKS), span / TICKS)
    ticks = []
    n = 0
    while n * step <= span:
        at = start + timedelta(seconds=n * step)
        ticks.append(Tick(left=pos(at), label=f"+{duration(n * step)}"))
        n += 1
    return bars, ticks


def add(router: APIRouter, site: Site) -> None:
    app, history = site.app, site.history

    @router.get("/runs/{run_id:path}")  # a static partition key may hold a /
    async def run(request: Request, run_id: str) -> HTMLResponse:
        detail = await history.run(run_id)
        if detail is None:
            return site.missing(request, f"No pipeline run {run_id!r}.")
        found, attempts = detail.run, detail.attempts
        bars, ticks = timeline(found, attempts, datetime.now(UTC))
        logs = {a.run_id: await history.logs(a.run_id) for a in attempts}
        ran = {a.task for a in attempts}
        outcomes = {o.get("task"): o for o in found.tasks}
        pipeline = app.pipelines.get(found.pipeline)
        tasks = [t.name for t in pipeline.tasks] if pipeline is not None else list(outcomes)
        # a task's last attempt in this run: the one an operator re-runs
        last = {a.task: a.run_id for a in attempts}
        since = await history.runs(
            pipeline=found.pipeline,
            partition=found.partition,
            since=found.started_at,
            limit=LATER + 1,
        )
        later = [r for r in since.items if r.run_id != found.run_id][:LATER]
        return site.page(
            request,
            "run.html",
            title=f"Run {run_id}",
            stream={"pipeline": found.pipeline, "partition": found.partition},
            run=found,
            attempts=attempts,
            bars=bars,
            ticks=ticks,
            logs=logs,
            last=last,
            never_ran=[(t, outcomes.get(t, {}).get("status", "")) for t in tasks if t not in ran],
            outcomes=outcomes,
            later=later,
        )
