"""Events and dead letters: the live feed, filtered by type, dataset and pipeline, each event's
JSON one click away; dead letters with their reasons."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from ..events import BY_TYPE
from .site import Site

#: Events per page of the feed.
PAGE = 100


def add(router: APIRouter, site: Site) -> None:
    history = site.history

    @router.get("/events")
    async def events(
        request: Request,
        type: Annotated[list[str] | None, Query()] = None,
        pipeline: str = "",
        dataset: str = "",
        before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    ) -> HTMLResponse:
        types = [t for t in type or () if t]
        found = await history.events(
            types=types,
            pipeline=pipeline or None,
            dataset=dataset or None,
            before_seq=before,
            limit=PAGE + 1,  # one more: whether there is an older page
            newest_first=True,
        )
        older = found[PAGE - 1].seq if len(found) > PAGE else None
        found = found[:PAGE]
        return site.page(
            request,
            "events.html",
            title="Events",
            # an older page stays as it is; the newest one follows the stream
            stream=None
            if before is not None
            else {"type": types, "pipeline": pipeline, "dataset": dataset},
            events=[(e, orjson.dumps(e.body, option=orjson.OPT_INDENT_2).decode()) for e in found],
            types=types,
            all_types=sorted(BY_TYPE),
            pipeline=pipeline,
            dataset=dataset,
            pipelines=sorted(site.app.pipelines),
            datasets=sorted(site.app.datasets),
            older=older,
        )

    @router.get("/deadletters")
    async def dead_letters(request: Request) -> HTMLResponse:
        return site.page(
            request,
            "deadletters.html",
            title="Dead letters",
            stream={"type": "eventflow.deadletter"},
            letters=await history.dead_letters(limit=PAGE),
        )
