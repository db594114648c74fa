"""Datasets: the index (each dataset's state, newest version, age, partitions) and a dataset's
page: freshness per partition with the reason in words, versions with their producer run and
metadata, lineage of a chosen version up and down, and check history."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ..history.models import DatasetVersionRecord
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
        request: Request, name: str, partition: str = "", version: int | None = None
    ) -> HTMLResponse:
        if name not in app.datasets:
            return site.page(
                request,
                "missing.html",
                title="Not found",
                status_code=404,
                what=f"No dataset {name!r} in this App.",
                back=("/ui/datasets", "every dataset"),
            )
        newest = sorted(await history.freshness(name), key=lambda f: f.time, reverse=True)
        shown = newest[:PAGE]
        made = await history.provenance(shown)
        freshness = [(f, dataset_state(name, f, m)) for f, m in zip(shown, made, strict=True)]
        versions = await history.versions(name, partition=partition or None, limit=PAGE)
        producers = {
            a.run_id: a
            for a in await history.attempts_by_id([v.producer for v in versions if v.producer])
        }
        chosen: DatasetVersionRecord | None = versions[0] if versions else None
        if version is not None:
            chosen = next(
                (v for v in versions if v.version == version and v.partition == partition), None
            )
        lineage = (
            await history.lineage(name, chosen.partition, chosen.version, depth=3)
            if chosen is not None
            else None
        )
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
        )


def _json(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
