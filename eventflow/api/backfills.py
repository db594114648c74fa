"""Backfills over HTTP: start one (or see its dry run), list them with their progress, cancel.

A backfill lives in the state of each pipeline it starts runs of (one, or every consumer of a
dataset); the endpoints read it from the engine the operations port keeps up to date and act
with `PipelineAction`s like the other operator endpoints.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, HTTPException, status
from pydantic import ValidationError

from ..core import Engine
from ..core.backfill import Backfills, BackfillState, dry_run, resolve, roots_of
from ..definitions import App
from ..errors import EventError
from ..events import (
    BackfillPlan,
    PipelineActionData,
    pipeline_action,
)
from ..operations import Operations
from .models import (
    ActionRequest,
    Backfill,
    BackfillPart,
    BackfillRequest,
    BackfillStarted,
    PlannedRun,
    Skip,
)


def backfills(engine: Engine) -> list[Backfill]:
    """Every backfill the pipelines hold, newest first."""
    by_id: dict[str, list[BackfillState]] = {}
    for pst in engine.pipelines.values():
        for bf in pst.backfills.values():
            by_id.setdefault(bf.id, []).append(bf)
    found = [_backfill(parts) for parts in by_id.values()]
    return sorted(found, key=lambda b: b.created_at, reverse=True)


def _at(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None


def _backfill(parts: list[BackfillState]) -> Backfill:
    first = parts[0]
    statuses = {bf.status for bf in parts}
    state: Literal["running", "done", "cancelled"] = (
        "running"
        if "running" in statuses or any(bf.active for bf in parts)
        else "cancelled"
        if "cancelled" in statuses
        else "done"
    )
    return Backfill(
        id=first.id,
        dataset=first.dataset,
        start=first.start if first.keys is None else first.keys[0],
        end=first.end if first.keys is None else first.keys[-1],
        mode=first.mode,
        max_active=first.max_active,
        reverse=first.reverse,
        operator=first.operator,
        reason=first.reason,
        created_at=datetime.fromtimestamp(first.created_at, UTC),
        status=state,
        planned=sum(bf.total for bf in parts),
        started=sum(bf.started for bf in parts),
        succeeded=sum(bf.succeeded for bf in parts),
        failed=sum(bf.failed for bf in parts),
        skipped=sum(bf.skipped for bf in parts),
        pipelines=[
            BackfillPart(
                pipeline=bf.pipeline,
                status=bf.status,
                planned=bf.total,
                started=bf.started,
                succeeded=bf.succeeded,
                failed=bf.failed,
                skipped=bf.skipped,
                active=list(bf.active),
                skips=[Skip(partition=p, why=w) for p, w in bf.skips],
                finished_at=_at(bf.finished_at),
            )
            for bf in sorted(parts, key=lambda b: b.pipeline)
        ],
    )


def pipelines_of(app: App, body: BackfillRequest) -> list[str]:
    """The pipelines a request starts runs of; `EventError` for one naming nothing known."""
    if body.pipeline is not None:
        if body.pipeline not in app.pipelines:
            raise EventError(f"no pipeline {body.pipeline!r}")
        return [body.pipeline]
    if body.dataset is None:
        raise EventError("give a pipeline, or a dataset to backfill from")
    if body.dataset not in app.datasets:
        raise EventError(f"unknown dataset {body.dataset!r}")
    found = [p for p in app.pipelines if roots_of(app, p, body.dataset)]
    if not found:
        raise EventError(f"no pipeline consumes {body.dataset!r}")
    return found


def router(ops: Operations, writes: APIRouter, reads: APIRouter) -> None:
    """The backfill endpoints, on the API's routers for reads and for writes (token)."""
    app = ops.app
    settings = ops.settings

    def bad(e: EventError) -> HTTPException:
        return HTTPException(status.HTTP_400_BAD_REQUEST, e.reason)

    @writes.post("/backfills", tags=["backfills"])
    async def start(body: BackfillRequest) -> BackfillStarted:
        """Start a backfill (or, `dry_run`, judge every partition as it would, with the same
        verdict, and start nothing). Each partition runs through the normal run decisions:
        pools, `max_active_runs`, checks and branching apply; downstream pipelines follow
        once per partition."""
        bid = f"bf-{secrets.token_hex(4)}"
        try:
            names = pipelines_of(app, body)
            plan = BackfillPlan(
                dataset=body.dataset,
                start=body.start,
                end=body.end,
                partitions=body.partitions,
                mode=body.mode,
                max_active=body.max_active,
                reverse=body.reverse,
            )
            for name in names:  # refused here rather than by a coordinator, where it can be
                resolve(app, name, plan)
            events = [
                pipeline_action(
                    name,
                    "backfill",
                    reason=body.reason,
                    operator=body.operator,
                    backfill=bid,
                    plan=plan,
                    source=settings.source,
                )
                for name in names
            ]
        except EventError as e:
            raise bad(e) from None
        except ValidationError as e:  # the plan's own rules, said without pydantic's noise
            why = "; ".join(str(err["msg"]).removeprefix("Value error, ") for err in e.errors())
            raise HTTPException(status.HTTP_400_BAD_REQUEST, why) from None
        except ValueError as e:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(e)) from None
        if body.dry_run:
            planned: list[PlannedRun] = []
            for event in events:
                try:
                    planned += await _dry_run(ops, event.data)
                except EventError as e:
                    raise bad(e) from None
            return BackfillStarted(id=bid, status="dry_run", pipelines=names, plan=planned)
        decided = True
        for event in events:
            done = await ops.submit(event)
            if done.dead_letter is not None:
                raise HTTPException(status.HTTP_409_CONFLICT, done.dead_letter)
            decided = decided and done.decided
        return BackfillStarted(
            id=bid, status="applied" if decided else "published", pipelines=names
        )

    @reads.get("/backfills", tags=["backfills"])
    async def listed() -> list[Backfill]:
        """Every backfill the pipelines keep (the running ones and the last finished), newest
        first, with its progress."""
        return backfills(await ops.engine())

    @reads.get("/backfills/{bid}", tags=["backfills"], responses={404: {}})
    async def one(bid: str) -> Backfill:
        for found in backfills(await ops.engine()):
            if found.id == bid:
                return found
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no backfill {bid!r}")

    @writes.post("/backfills/{bid}/cancel", tags=["backfills"], responses={404: {}, 409: {}})
    async def cancel(bid: str, body: ActionRequest) -> BackfillStarted:
        """The backfill starts no new run; the runs in progress finish."""
        engine = await ops.engine()
        names = [n for n, p in engine.pipelines.items() if bid in p.backfills]
        if not names:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no backfill {bid!r}")
        running = [n for n in names if engine.pipelines[n].backfills[bid].status == "running"]
        if not running:
            raise HTTPException(status.HTTP_409_CONFLICT, f"backfill {bid!r} is not running")
        decided = True
        for name in running:
            event = pipeline_action(
                name,
                "cancel_backfill",
                reason=body.reason,
                operator=body.operator,
                backfill=bid,
                source=settings.source,
            )
            done = await ops.submit(event)
            if done.dead_letter is not None:
                raise HTTPException(status.HTTP_409_CONFLICT, done.dead_letter)
            decided = decided and done.decided
        return BackfillStarted(
            id=bid, status="applied" if decided else "published", pipelines=running
        )


async def _dry_run(ops: Operations, data: PipelineActionData) -> list[PlannedRun]:
    engine = await ops.backfill_engine(data.pipeline)
    pst = engine.pipelines[data.pipeline]
    planner: Backfills = engine.actions.backfills
    bf = planner.new(pst, data, datetime.now(UTC).timestamp())
    return [
        PlannedRun(
            pipeline=data.pipeline,
            partition=p.partition,
            run=p.run,
            why=p.why,
            tasks=[name for name, _, _ in p.tasks],
        )
        for p in dry_run(planner, pst, bf)
    ]
