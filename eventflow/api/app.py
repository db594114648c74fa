"""The HTTP API, built by a factory around one `Operations` (no module state): the same routes
serve a dev instance and a Kafka deployment."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.routing import APIRoute
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ExceptionHandler

from ..core import Explanation
from ..errors import EventError
from ..events import (
    MAX_VERSION,
    Action,
    DatasetProduced,
    DatasetProducedData,
    check_metadata,
    encode,
    pipeline_action,
    version_now,
)
from ..history import AlertDelivery, DeliveryState
from ..history.models import (
    CheckOutcome,
    DeadLetterRecord,
    EventRecord,
    Freshness,
    Lineage,
    LogLine,
    Page,
    PipelineRun,
    RunDetail,
    RunStatus,
    TaskAttempt,
)
from ..operations import Operations, selected
from ..tracing import Trace, stamp
from . import backfills, models
from .auth import guard

T = TypeVar("T")
#: The longest page a list endpoint returns.
PAGE_MAX = 1000
#: The largest event sequence number the stores hold (a signed 64-bit integer).
SEQ_MAX = 2**63 - 1
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": models.Problem}}
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": models.Problem, "description": "No token given."},
    403: {"model": models.Problem, "description": "Another token given."},
}
#: Every route: a request well-formed but outside what eventflow takes (a partition key not of
#: the dataset's scheme, metadata over the limit, a cursor of another query), or a body that is
#: not JSON. A request that does not fit the schema gets FastAPI's 422.
BAD_REQUEST: dict[int | str, dict[str, Any]] = {
    400: {"model": models.Problem, "description": "Refused, with the reason."}
}


def create_app(ops: Operations, token: str, *, ui: bool = False) -> FastAPI:
    """The API of `ops`, with the web UI under `/ui` if `ui`; every mutating endpoint needs
    `token`, reads too unless `settings.api_open_reads`."""
    app = ops.app
    settings = ops.settings
    api = FastAPI(
        title="eventflow",
        summary="Pipelines triggered by data: history, explanations and operator actions.",
        version="1",
    )
    reads = APIRouter(
        prefix="/api",
        dependencies=[Depends(guard(token, required=not settings.api_open_reads, cookie=True))],
        responses={**BAD_REQUEST, **(UNAUTHORIZED if not settings.api_open_reads else {})},
    )
    writes = APIRouter(
        prefix="/api",
        dependencies=[Depends(guard(token))],
        responses={**BAD_REQUEST, **UNAUTHORIZED},
    )

    @reads.get("/health", tags=["service"])
    async def health() -> dict[str, str]:
        return {"status": "ok" if ops.healthy() else "starting"}

    @reads.get("/pipelines", tags=["definitions"])
    async def pipelines() -> list[models.PipelineInfo]:
        """Every pipeline with its tasks, whether it is paused, and its active runs."""
        engine = await ops.engine()
        return [models.pipeline_info(app, p, engine.pipelines[p]) for p in app.pipelines]

    @reads.get("/pipelines/{name}", tags=["definitions"], responses=NOT_FOUND)
    async def pipeline(name: str) -> models.PipelineInfo:
        _pipeline(name)
        return models.pipeline_info(app, name, await ops.pipeline_state(name))

    @reads.get(
        "/pipelines/{name}/tasks/{task}/explain",
        tags=["runs"],
        responses=NOT_FOUND,
    )
    async def explain(name: str, task: str, partition: str = "") -> Explanation:
        """Why the task runs, waits, or would run in `partition`: a checklist read top to
        bottom, from the state the coordinators decide on."""
        _pipeline(name)
        if app.tasks.get(task) is None or app.tasks[task].pipeline != name:
            missing = f"pipeline {name!r} has no task {task!r}"
            raise HTTPException(status.HTTP_404_NOT_FOUND, missing)
        try:
            return await ops.explain(name, task, partition)
        except EventError as e:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, e.reason) from None

    async def act(
        name: str,
        action: Action,
        body: models.ActionRequest,
        *,
        partition: str = "",
        task: str | None = None,
    ) -> models.ActionDone:
        _pipeline(name)
        try:
            event = pipeline_action(
                name,
                action,
                reason=body.reason,
                operator=body.operator,
                partition=partition,
                task=task,
                source=settings.source,
            )
        except EventError as e:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, e.reason) from None
        done = await ops.submit(event)
        if done.dead_letter is not None:
            raise HTTPException(status.HTTP_409_CONFLICT, done.dead_letter)
        return models.ActionDone(id=done.id, status="applied" if done.decided else "published")

    refusals: dict[int | str, dict[str, Any]] = {
        **NOT_FOUND,
        409: {"model": models.Problem, "description": "Refused in this state, with the reason."},
    }

    @writes.post("/pipelines/{name}/pause", tags=["actions"], responses=refusals)
    async def pause(name: str, body: models.ActionRequest) -> models.ActionDone:
        """No new run or attempt starts until resumed; what arrives meanwhile is kept."""
        return await act(name, "pause", body)

    @writes.post("/pipelines/{name}/resume", tags=["actions"], responses=refusals)
    async def resume(name: str, body: models.ActionRequest) -> models.ActionDone:
        """Decide what arrived while paused: one run per partition with newer inputs."""
        return await act(name, "resume", body)

    @writes.post("/pipelines/{name}/rerun", tags=["actions"], responses=refusals)
    async def rerun(name: str, body: models.Rerun) -> models.ActionDone:
        """A new attempt series of a task (or of the run's entry tasks) in a partition, on the
        input versions it last consumed; downstream runs again as if fresh."""
        kind: Action = "rerun_task" if body.task is not None else "rerun_run"
        return await act(name, kind, body, partition=body.partition, task=body.task)

    @writes.post("/pipelines/{name}/cancel", tags=["actions"], responses=refusals)
    async def cancel(name: str, body: models.PartitionAction) -> models.ActionDone:
        """End the partition's active run as failed; its running attempts are stopped."""
        return await act(name, "cancel", body, partition=body.partition)

    def _pipeline(name: str) -> None:
        if name not in app.pipelines:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no pipeline {name!r}")

    @reads.get("/graph", tags=["definitions"])
    async def graph() -> models.Graph:
        return models.graph(app)

    @writes.post(
        "/datasets/{name}/events",
        tags=["actions"],
        status_code=status.HTTP_202_ACCEPTED,
        responses=NOT_FOUND,
    )
    async def publish(name: str, body: models.Publish, request: Request) -> models.Submitted:
        """Announce a version of a dataset, as an outside producer would; a W3C
        `traceparent` header (and `tracestate`) rides on the event into the trace."""
        if name not in app.datasets:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dataset {name!r}")
        try:
            data = DatasetProducedData(
                dataset=name,
                partition=app.datasets[name].partitions.validate(body.partition),
                version=body.version if body.version is not None else version_now(),
                metadata=check_metadata(body.metadata, settings.max_metadata_bytes),
            )
        except (EventError, ValidationError) as e:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(e)) from None
        trace = Trace.from_headers(request.headers)
        done = await ops.submit(stamp(DatasetProduced.of(data, source=settings.source), trace))
        if done.dead_letter is not None:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, done.dead_letter)
        kafka = settings.kafka_bootstrap is not None
        return models.Submitted(id=done.id, status="published" if kafka else "accepted")

    @writes.post(
        "/v1/lineage",
        tags=["actions"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
                "description": "An OpenLineage RunEvent, as the OpenLineage HTTP transport "
                "sends it.",
            }
        },
    )
    async def openlineage(request: Request) -> models.LineageReceived:
        """Take an OpenLineage RunEvent: a COMPLETE run's outputs that the App's lineage
        mappings name are announced as dataset versions; FAIL and ABORT are recorded."""
        received = await ops.lineage.take(await request.body(), "openlineage-http")
        if received.refused is not None:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, received.refused)
        return models.LineageReceived(announced=received.announced, recorded=received.recorded)

    history = ops.history

    @reads.get("/runs", tags=["runs"])
    async def runs(
        pipeline: str | None = None,
        partition: str | None = None,
        run_status: Annotated[RunStatus | None, Query(alias="status")] = None,
        since: Annotated[datetime | None, Query(description="Started at or after.")] = None,
        until: Annotated[datetime | None, Query(description="Started before.")] = None,
        limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 50,
        cursor: Annotated[str | None, Query(description="`next_cursor` of the last page.")] = None,
    ) -> Page[PipelineRun]:
        """Pipeline runs, newest first."""
        try:
            return await history.runs(
                pipeline=pipeline,
                partition=partition,
                status=run_status,
                since=since,
                until=until,
                limit=limit,
                cursor=cursor or None,
            )
        except ValueError as e:  # a cursor this query did not make (`status` is the filter here)
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(e)) from None

    # Run ids hold partition keys, which may hold a `/`: `:path` takes them whole (and the
    # logs route comes before the attempt's, which would take `ID/logs` as an id).
    @reads.get("/runs/{run_id:path}", tags=["runs"], responses=NOT_FOUND)
    async def run(run_id: str) -> RunDetail:
        """A pipeline run with every task attempt, in the order they were requested."""
        return _found(await history.run(run_id), f"no pipeline run {run_id!r}")

    # 404: a run id no route takes (a line break in it, say).
    @reads.get("/attempts/{run_id:path}/logs", tags=["runs"], responses=NOT_FOUND)
    async def logs(run_id: str) -> list[LogLine]:
        """What the attempt logged (or printed), in order."""
        return await history.logs(run_id)

    @reads.get("/attempts/{run_id:path}", tags=["runs"], responses=NOT_FOUND)
    async def attempt(run_id: str) -> TaskAttempt:
        """One task attempt by its run id."""
        return _found(await history.attempt(run_id), f"no task attempt {run_id!r}")

    @reads.get("/pipelines/{name}/tasks/{task}/attempts", tags=["runs"])
    async def task_attempts(
        name: str,
        task: str,
        partition: str | None = None,
        limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 100,
    ) -> list[TaskAttempt]:
        """A task's attempts, newest first."""
        return await history.attempts(name, task, partition=partition, limit=limit)

    @reads.get("/datasets", tags=["datasets"])
    async def datasets() -> list[Freshness]:
        """The newest version of every dataset partition, with its age."""
        return await history.freshness()

    @reads.get("/datasets/{name}", tags=["datasets"], responses={404: {"model": models.Problem}})
    async def dataset(
        name: str,
        partition: str | None = None,
        limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 100,
    ) -> models.DatasetHistory:
        """A dataset's freshness per partition, its versions and checks (newest first), its
        freshness policy and its violations open now."""
        if name not in app.datasets:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dataset {name!r}")
        return models.DatasetHistory(
            name=name,
            freshness=await history.freshness(name),
            versions=await history.versions(name, partition=partition, limit=limit),
            checks=await history.checks(dataset=name, partition=partition, limit=limit),
            policy=next(
                (
                    p
                    for p in models.FreshnessPolicy.of_app(app)
                    if p.kind == "dataset" and p.name == name
                ),
                None,
            ),
            violations=await history.violations(kind="dataset", name=name, partition=partition),
        )

    @reads.get("/freshness", tags=["datasets"])
    async def freshness(
        name: str | None = None,
        partition: str | None = None,
        ended: bool = False,
        limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 100,
    ) -> models.FreshnessReport:
        """Freshness policies and task deadlines, and their violations: those open now (what
        is late, since when), with `ended` the ended ones too; of one dataset or task: `name`."""
        return models.FreshnessReport(
            policies=models.FreshnessPolicy.of_app(app),
            violations=await history.violations(
                name=name, partition=partition, open_only=not ended, limit=limit
            ),
        )

    @reads.get(
        "/datasets/{name}/lineage", tags=["datasets"], responses={404: {"model": models.Problem}}
    )
    async def lineage(
        name: str,
        version: Annotated[int, Query(ge=0, le=MAX_VERSION)],
        partition: str = "",
        depth: Annotated[int, Query(ge=0, le=10)] = 3,
    ) -> Lineage:
        """Which input versions made a version, and which runs consumed it, `depth` steps."""
        found = await history.lineage(name, partition, version, depth=depth)
        return _found(found, f"no version {version} of {name!r} in partition {partition!r}")

    @reads.get("/checks", tags=["datasets"])
    async def checks(
        dataset: str | None = None,
        partition: str | None = None,
        passed: bool | None = None,
        limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 100,
    ) -> list[CheckOutcome]:
        """Check outcomes, newest first."""
        return await history.checks(
            dataset=dataset, partition=partition, passed=passed, limit=limit
        )

    @reads.get("/deadletters", tags=["events"])
    async def dead_letters(
        since: datetime | None = None, limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 100
    ) -> list[DeadLetterRecord]:
        """Input refused as malformed or invalid, with the reason, newest first."""
        return await history.dead_letters(since=since, limit=limit)

    @reads.get("/alerts", tags=["alerts"])
    async def alerts() -> list[models.AlertRule]:
        """The App's alert rules: which events each sends, where and how (header values and
        secrets are not shown)."""
        return [models.AlertRule.of(rule) for rule in app.alerts.values()]

    @reads.get("/alerts/deliveries", tags=["alerts"])
    async def alert_deliveries(
        rule: str | None = None,
        state: DeliveryState | None = None,
        type: Annotated[str | None, Query(description="Only events of this type.")] = None,
        event_id: str | None = None,
        pipeline: str | None = None,
        since: Annotated[datetime | None, Query(description="Recorded at or after.")] = None,
        limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 100,
    ) -> list[AlertDelivery]:
        """Alert deliveries, newest first: each event sent (or being sent) to a rule's
        webhook, its attempts, the last answer or error, and whether it was delivered, is
        being retried or was given up."""
        return await history.deliveries(
            rule=rule,
            state=state,
            event_type=type,
            event_id=event_id,
            pipeline=pipeline,
            since=since,
            limit=limit,
        )

    @reads.get("/events", tags=["events"])
    async def events(
        type: Annotated[list[str] | None, Query(description="Event types to keep.")] = None,
        pipeline: str | None = None,
        dataset: str | None = None,
        after: Annotated[
            int | None, Query(ge=0, le=SEQ_MAX, description="`seq` of the last event seen.")
        ] = None,
        since: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 100,
    ) -> list[EventRecord]:
        """Events as the history holds them, oldest first after `after`."""
        return await history.events(
            types=type or (),
            pipeline=pipeline,
            dataset=dataset,
            after_seq=after,
            since=since,
            limit=limit,
        )

    @reads.get("/events/stream", tags=["events"], response_class=EventSourceResponse)
    async def stream(
        type: Annotated[list[str] | None, Query(description="Event types to keep.")] = None,
        pipeline: Annotated[str | None, Query()] = None,
        dataset: Annotated[str | None, Query()] = None,
    ) -> AsyncIterator[ServerSentEvent]:
        """Every event as it happens (server-sent events, one CloudEvent as JSON each). The
        stream opens with the comment `live`: what happens from then on is in it."""
        feed = ops.live()
        try:
            yield ServerSentEvent(comment="live")
            async for event in feed:
                if not selected(event, types=type, pipeline=pipeline, dataset=dataset):
                    continue
                raw = encode(event).decode()
                yield ServerSentEvent(raw_data=raw, event=event.type, id=event.id)
        finally:
            feed.close()

    backfills.router(ops, writes, reads)
    api.include_router(reads)
    api.include_router(writes)
    routes = [route for router in (reads, writes) for route in router.routes]
    api.add_exception_handler(status.HTTP_405_METHOD_NOT_ALLOWED, _allow_every_method(routes))
    if ui:
        from ..ui import mount

        mount(api, ops, token)
    return api


def _allow_every_method(routes: list[BaseRoute]) -> ExceptionHandler:
    """A 405 whose `Allow` lists the methods of every route at the path: reads and writes are
    separate routes (their guards differ), and Starlette names only the first one's."""

    async def refuse(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        methods: set[str] = set()
        for route in routes:
            if isinstance(route, APIRoute) and route.matches(request.scope)[0] != Match.NONE:
                methods |= route.methods or set()
        headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(methods))}
        refused = StarletteHTTPException(exc.status_code, exc.detail, headers)
        return await http_exception_handler(request, refused)

    return refuse


def _found(found: T | None, missing: str) -> T:
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, missing)
    return found
