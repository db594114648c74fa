"""The HTTP API, built by a factory around one `Operations` (no module state): the same routes
serve a dev instance and a Kafka deployment."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, status
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import ValidationError

from ..errors import EventError
from ..events import (
    DatasetProduced,
    DatasetProducedData,
    Event,
    check_metadata,
    encode,
    version_now,
)
from ..operations import Operations
from . import models
from .auth import guard


def create_app(ops: Operations, token: str) -> FastAPI:
    """The API of `ops`; every mutating endpoint needs `token`, reads too unless
    `settings.api_open_reads`."""
    app = ops.app
    settings = ops.settings
    api = FastAPI(
        title="eventflow",
        summary="Pipelines triggered by data: history, explanations and operator actions.",
        version="1",
    )
    reads = APIRouter(
        prefix="/api", dependencies=[Depends(guard(token, required=not settings.api_open_reads))]
    )
    writes = APIRouter(prefix="/api", dependencies=[Depends(guard(token))])

    @reads.get("/health", tags=["service"])
    async def health() -> dict[str, str]:
        return {"status": "ok" if ops.healthy() else "starting"}

    @reads.get("/pipelines", tags=["definitions"])
    async def pipelines() -> list[models.PipelineInfo]:
        return [models.pipeline_info(app, name) for name in app.pipelines]

    @reads.get("/pipelines/{name}", tags=["definitions"])
    async def pipeline(name: str) -> models.PipelineInfo:
        if name not in app.pipelines:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no pipeline {name!r}")
        return models.pipeline_info(app, name)

    @reads.get("/graph", tags=["definitions"])
    async def graph() -> models.Graph:
        return models.graph(app)

    @writes.post(
        "/datasets/{name}/events",
        tags=["actions"],
        status_code=status.HTTP_202_ACCEPTED,
        responses={404: {"model": models.Problem}, 422: {"model": models.Problem}},
    )
    async def publish(name: str, body: models.Publish) -> models.Submitted:
        """Announce a version of a dataset, as an outside producer would."""
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
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from None
        done = await ops.submit(DatasetProduced.of(data, source=settings.source))
        if done.dead_letter is not None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, done.dead_letter)
        kafka = settings.kafka_bootstrap is not None
        return models.Submitted(id=done.id, status="published" if kafka else "accepted")

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
                if type and event.type not in type:
                    continue
                if pipeline and getattr(event.data, "pipeline", None) != pipeline:
                    continue
                if dataset and _dataset_of(event) != dataset:
                    continue
                raw = encode(event).decode()
                yield ServerSentEvent(raw_data=raw, event=event.type, id=event.id)
        finally:
            feed.close()

    api.include_router(reads)
    api.include_router(writes)
    return api


def _dataset_of(event: Event) -> str | None:
    data = event.data
    found = getattr(data, "dataset", None)
    if found is None and hasattr(data, "target"):
        found = getattr(data.target, "dataset", None)
    return found if isinstance(found, str) else None
