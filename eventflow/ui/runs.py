"""(to be written)"""

from __future__ import annotations

from fastapi import APIRouter

from .site import Site


def add(router: APIRouter, site: Site) -> None:
    pass
