"""The API's OpenAPI document, written to `docs/openapi.json`:
`python -m eventflow.api.openapi docs/openapi.json`.

The document depends on the routes and models alone, so it is made from an App without
pipelines and a runtime that is never started: `_Unserved` answers nothing and is only there
for `create_app` to read its settings from.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from ..core import Engine, Explanation
from ..definitions import App
from ..errors import NotRunning
from ..events import Event
from ..history import HistoryStore
from ..operations import Operations
from ..operations.base import Feed, Submitted
from ..settings import Settings
from .app import create_app


class _Unserved(Operations):
    """Routes to describe, never to serve."""

    def __init__(self) -> None:
        settings = Settings(api_open_reads=False)
        super().__init__(App([]), settings, HistoryStore.of(settings))

    async def _open(self) -> None:
        raise NotRunning("the OpenAPI document's operations serve nothing")

    async def _close(self) -> None:
        pass

    async def submit(self, event: Event) -> Submitted:
        raise NotRunning("the OpenAPI document's operations serve nothing")

    def live(self) -> Feed:
        raise NotRunning("the OpenAPI document's operations serve nothing")

    async def explain(self, pipeline: str, task: str, partition: str) -> Explanation:
        raise NotRunning("the OpenAPI document's operations serve nothing")

    async def engine(self) -> Engine:
        raise NotRunning("the OpenAPI document's operations serve nothing")


def document() -> dict[str, Any]:
    """The OpenAPI document of `create_app`."""
    spec: dict[str, Any] = create_app(_Unserved(), token="x" * 16).openapi()
    return spec


def render() -> bytes:
    """The document as `docs/openapi.json` holds it: sorted keys, two-space indent."""
    return orjson.dumps(document(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


if __name__ == "__main__":
    Path(sys.argv[1] if len(sys.argv) > 1 else "docs/openapi.json").write_bytes(render())
