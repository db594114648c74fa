"""The API's OpenAPI document, written to `docs/openapi.json`:
`python -m eventflow.openapi docs/openapi.json`.

The document depends on the routes and models alone: it is made from the API of an App without
pipelines on an embedded runtime that is built but never started (nothing is opened or served).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from .api import create_app
from .definitions import App
from .embedded import EmbeddedRuntime
from .operations.embedded import EmbeddedOperations
from .settings import Settings


def document() -> dict[str, Any]:
    """The OpenAPI document of `create_app`."""
    with tempfile.TemporaryDirectory() as home:
        runtime = EmbeddedRuntime(App([]), Settings(home=Path(home)))
        spec: dict[str, Any] = create_app(EmbeddedOperations(runtime), token="x" * 16).openapi()
    return spec


def render() -> bytes:
    """The document as `docs/openapi.json` holds it: sorted keys, two-space indent."""
    return orjson.dumps(document(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


if __name__ == "__main__":
    Path(sys.argv[1] if len(sys.argv) > 1 else "docs/openapi.json").write_bytes(render())
