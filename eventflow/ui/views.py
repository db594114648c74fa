"""The pages, one module per view."""

from __future__ import annotations

from fastapi import APIRouter

from . import backfills, datasets, feed, graph, pipelines, runs
from .site import Site


def add(router: APIRouter, site: Site) -> None:
    for view in (graph, datasets, pipelines, backfills, runs, feed):
        view.add(router, site)
