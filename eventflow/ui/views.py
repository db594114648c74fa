"""The pages, one module per view."""

from __future__ import annotations

from fastapi import APIRouter

from . import datasets, feed, graph, pipelines, runs
from .site import Site


def add(router: APIRouter, site: Site) -> None:
    for view in (graph, datasets, pipelines, runs, feed):
        view.add(router, site)
