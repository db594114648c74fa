"""Pipelines: the index (paused or not, partitions active and waiting, last run), a pipeline's
partition x task grid of outcomes, its runs with filters and pages, pause and resume, its
backfills and the form starting one; and "why (not)?" for a task in a partition, the operations
plane's checklist read top to bottom."""

from __future__ import annotations

import urllib.parse

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ..api.models import pipeline_info
from ..errors import EventError
from ..events import PipelineAction, PipelineRunFailed, PipelineRunStarted, PipelineRunSucceeded
from ..history.models import RunStatus
from .backfills import backfills_of, bar, form
from .site import Site

#: Partitions per page of the grid, and runs per page of the runs list.
GRID_PAGE = 30
RUNS_PAGE = 25
STATUSES: tuple[RunStatus, ...] = ("running", "succeeded", "failed")


def add(router: APIRouter, site: Site) -> None:
    app, history = site.app, site.history

    @router.get("/pipelines")
    async def pipelines(request: Request) -> HTMLResponse:
        engine = await site.ops.engine()
        summaries = {s.pipeline: s for s in await history.pipeline_summaries()}
        return site.page(
            request,
            "pipelines.html",
            title="Pipelines",
            stream={"type": CHANGES_INDEX},
            pipelines=[
                (pipeline_info(app, name, engine.pipelines[name]), summaries.get(name))
                for name in app.pipelines
            ],
        )

    @router.get("/pipelines/{name}")
    async def pipeline(
        request: Request,
        name: str,
        partition: str = "",
        status: str = "",
        cursor: str = "",
        rows: str = "",
    ) -> HTMLResponse:
        if name not in app.pipelines:
            return site.missing(request, f"No pipeline {name!r}.")
        info = pipeline_info(app, name, await site.ops.pipeline_state(name))
        refused = None
        wanted = next((s for s in STATUSES if s == status), None)
        try:
            runs = await history.runs(
                pipeline=name,
                partition=partition or None,
                status=wanted,
                limit=RUNS_PAGE,
                cursor=cursor or None,
            )
            grid = await history.grid(name, limit=GRID_PAGE, cursor=rows or None)
        except ValueError as e:  # a cursor this page did not make
            refused = str(e)
            runs = await history.runs(pipeline=name, limit=RUNS_PAGE)
            grid = await history.grid(name, limit=GRID_PAGE)
        shown = {"partition": partition, "status": wanted or "", "cursor": cursor, "rows": rows}

        def here(**changed: str) -> str:
            """This page with some of its parameters changed."""
            query = urllib.parse.urlencode({k: v for k, v in (shown | changed).items() if v})
            return f"/ui/pipelines/{urllib.parse.quote(name, safe='')}" + (
                f"?{query}" if query else ""
            )

        return site.page(
            request,
            "pipeline.html",
            title=f"Pipeline {name}",
            stream={"pipeline": name},
            info=info,
            grid=grid,
            runs=runs,
            late=[
                v for v in await history.violations(kind="task", limit=1000) if v.pipeline == name
            ],
            partition=partition,
            status=wanted or "",
            statuses=STATUSES,
            cursor=cursor,
            rows=rows,
            here=here,
            refused=refused,
            backfills=backfills_of(await site.ops.engine(), name),
            backfill_form=form(app, name),
            bar=bar,
        )

    @router.get("/pipelines/{name}/tasks/{task}/why")
    async def why(
        request: Request, name: str, task: str, partition: str | None = None
    ) -> HTMLResponse:
        found = app.tasks.get(task)
        if name not in app.pipelines or found is None or found.pipeline != name:
            return site.missing(request, f"Pipeline {name!r} has no task {task!r}.")
        partitioned = any(app.datasets[d].partitions.partitioned for d in found.inputs)
        if partition is None:
            # the partition the task last worked on, if any: what an operator asks about first
            last = await history.attempts(name, task, limit=1)
            partition = last[0].partition if last else ("" if not partitioned else None)
        explanation, refused = None, None
        if partition is not None:
            try:
                explanation = await site.ops.explain(name, task, partition)
            except EventError as e:
                refused = e.reason
        return site.page(
            request,
            "why.html",
            title=f"Why {task}?",
            # what changes the checklist: the pipeline's routed inputs, attempts, runs and
            # actions (a pause names no partition), in any partition (slots are shared)
            stream={"pipeline": name},
            pipeline=name,
            task=task,
            partition=partition or "",
            partitioned=partitioned,
            explanation=explanation,
            refused=refused,
        )


#: The events that change what the pipelines index shows.
CHANGES_INDEX = [
    e.event_type
    for e in (PipelineAction, PipelineRunStarted, PipelineRunSucceeded, PipelineRunFailed)
]
