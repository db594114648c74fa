"""Datasets: the index (each dataset's state, newest version, age, partitions) and a dataset's
page: freshness per partition with the reason in words, versions with their producer run and
metadata, lineage of a chosen version up and down, and check history."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from ..events import MAX_VERSION
from ..history.models import FreshnessViolation, VersionRef
from .graph import COLOURING
from .site import Site
from .states import dataset_state, states_of

#: Rows per table of a dataset's page.
PAGE = 100


def add(router: APIRouter, site: Site) -> None:
    app, history = site.app, site.history

    @router.get("/datasets")
    async def datasets(request: Request) -> HTMLResponse:
        latest = {v.dataset: v for v in await history.latest_versions()}
        states = await states_of(history, {name: latest.get(name) for name in app.datasets})
        rows = [
            (app.datasets[name], states[name][0], latest.get(name), app.schedules.get(name))
            for name in sorted(app.datasets)
        ]
        return site.page(
            request, "datasets.html", title="Datasets", stream={"type": COLOURING}, rows=rows
        )

    @router.get("/datasets/{name}")
    async def dataset(
        request: Request,
        name: str,
        partition: str = "",
        version: Annotated[int | None, Query(ge=1, le=MAX_VERSION)] = None,
    ) -> HTMLResponse:
        if name not in app.datasets:
            return site.missing(
                request, f"No dataset {name!r} in this App.", back=("/ui/datasets", "every dataset")
            )
        newest = sorted(await history.freshness(name), key=lambda f: f.time, reverse=True)
        shown = newest[:PAGE]
        made = await history.provenance(shown)
        open_late = await history.violations(kind="dataset", name=name, limit=PAGE)
        late: dict[str, list[FreshnessViolation]] = {}
        for v in open_late:
            late.setdefault(v.partition, []).append(v)
        freshness = [
            (f, dataset_state(name, f, m, late=late.get(f.partition, []) + late.get("", [])))
            for f, m in zip(shown, made, strict=True)
        ]
        versions = await history.versions(name, partition=partition or None, limit=PAGE)
        producers = {
            a.run_id: a
            for a in await history.attempts_by_id([v.producer for v in versions if v.producer])
        }
        # The version asked for, from any page of versions; else the newest shown.
        chosen: VersionRef | None = versions[0] if versions and version is None else None
        if version is not None:
            chosen = VersionRef(dataset=name, partition=partition, version=version)
        lineage = (
            await history.lineage(name, chosen.partition, chosen.version, depth=3)
            if chosen is not None
            else None
        )
        if lineage is None:
            chosen = None
        partitions = await history.partitions(dataset=name, limit=200)
        if partition and partition not in partitions:
            partitions.insert(0, partition)
        return site.page(
            request,
            "dataset.html",
            title=name,
            stream={"type": COLOURING},
            dataset=app.datasets[name],
            schedule=app.schedules.get(name),
            producer=app.producer.get(name),
            consumers=app.consumers.get(name, []),
            checks_of=app.checks_of.get(name, []),
            freshness=freshness,
            partitions_total=len(newest),
            versions=[(v, producers.get(v.producer or ""), _json(v.metadata)) for v in versions],
            partition=partition,
            partitions=partitions,
            asked=version,
            chosen=chosen,
            lineage=lineage,
            checks=await history.checks(dataset=name, partition=partition or None, limit=PAGE),
            policy=app.datasets[name].freshness,
            late=open_late,
            ended=[
                v
                for v in await history.violations(
                    kind="dataset", name=name, open_only=False, limit=20
                )
                if v.recovered_at is not None
            ],
        )


def _json(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
