"""Backfills: the index, a backfill's page (progress per pipeline, the partitions it skipped and
why, its runs, cancel), and what a pipeline's page shows of its own (with the form that starts
one). Progress is read from the engine, as the API's `/api/backfills` reads it; the runs a
backfill finished come from the history, whose run reasons name the backfill."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ..api.backfills import backfills
from ..api.models import Backfill, BackfillPart
from ..core import Engine
from ..core.backfill import partitioning_of
from ..definitions import App
from ..errors import EventError
from ..events import PipelineAction, PipelineRunFailed, PipelineRunStarted, PipelineRunSucceeded
from ..partitions import StaticPartitioning
from .site import Site

#: Finished runs per page of a backfill's page.
RUNS_PAGE = 25
#: The events that change a backfill's progress: its start and cancel, runs starting and
#: ending (a partition skipped is decided in the step of one of these).
CHANGES = [
    e.event_type
    for e in (PipelineAction, PipelineRunStarted, PipelineRunSucceeded, PipelineRunFailed)
]


@dataclass(frozen=True)
class Bar:
    """A progress bar's segments, as percentages of the partitions planned: succeeded, failed,
    skipped, in progress (started, not ended), and not taken yet."""

    succeeded: float
    failed: float
    skipped: float
    running: float
    left: float


def bar(b: Backfill | BackfillPart) -> Bar:
    planned = max(b.planned, 1)
    running = max(b.started - b.succeeded - b.failed, 0)

    def pct(n: int) -> float:
        return round(100 * n / planned, 3)

    done = b.succeeded + b.failed + b.skipped + running
    return Bar(
        succeeded=pct(b.succeeded),
        failed=pct(b.failed),
        skipped=pct(b.skipped),
        running=pct(running),
        left=pct(max(b.planned - done, 0)),
    )


@dataclass(frozen=True)
class Shown:
    """A backfill as the pages show it: its progress, and the runs in progress per pipeline
    (pipeline -> [(partition, pipeline run id)], "" while waiting for a run slot)."""

    backfill: Backfill
    running: dict[str, list[tuple[str, str]]]

    def part(self, pipeline: str) -> BackfillPart | None:
        return next((p for p in self.backfill.pipelines if p.pipeline == pipeline), None)


def backfills_of(engine: Engine, pipeline: str | None = None) -> list[Shown]:
    """Every backfill the pipelines keep (of `pipeline` only, if given), newest first."""
    found = []
    for b in backfills(engine):
        names = [p.pipeline for p in b.pipelines]
        if pipeline is not None and pipeline not in names:
            continue
        running = {
            name: sorted(engine.pipelines[name].backfills[b.id].active.items()) for name in names
        }
        found.append(Shown(b, running))
    return found


@dataclass(frozen=True)
class Form:
    """What the pipeline page's form to start a backfill needs: whether the pipeline has
    partitions to backfill, and a key of its partitioning to show as an example."""

    possible: bool
    kind: str = ""
    example: str = ""


def form(app: App, pipeline: str) -> Form:
    try:
        scheme = partitioning_of(app, pipeline, None)
    except EventError:
        return Form(False)
    if isinstance(scheme, StaticPartitioning):
        return Form(True, scheme.kind, scheme.keys[0])
    return Form(True, scheme.kind, scheme.key_for(datetime.now(UTC)))


def add(router: APIRouter, site: Site) -> None:
    history = site.history

    @router.get("/backfills")
    async def index(request: Request) -> HTMLResponse:
        return site.page(
            request,
            "backfills.html",
            title="Backfills",
            stream={"type": CHANGES},
            backfills=backfills_of(await site.ops.engine()),
            bar=bar,
        )

    @router.get("/backfills/{bid}")
    async def one(request: Request, bid: str, cursor: str = "") -> HTMLResponse:
        found = next(
            (s for s in backfills_of(await site.ops.engine()) if s.backfill.id == bid), None
        )
        if found is None:
            return site.missing(
                request, f"No backfill {bid!r}.", back=("/ui/backfills", "Backfills")
            )
        refused = None
        try:
            runs = await history.runs(backfill=bid, limit=RUNS_PAGE, cursor=cursor or None)
        except ValueError as e:  # a cursor this page did not make
            refused = str(e)
            runs = await history.runs(backfill=bid, limit=RUNS_PAGE)
        return site.page(
            request,
            "backfill.html",
            title=f"Backfill {bid}",
            stream={"type": CHANGES},
            shown=found,
            b=found.backfill,
            bar=bar,
            runs=runs,
            cursor=cursor,
            refused=refused,
        )
