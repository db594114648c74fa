"""`docs/openapi.json` is generated from the API; it must never drift from it."""

from __future__ import annotations

from pathlib import Path

import orjson

from eventflow.openapi import document, render

PUBLISHED = Path(__file__).parents[2] / "docs" / "openapi.json"


def test_published_document_matches_the_app() -> None:
    assert PUBLISHED.read_bytes() == render(), "run `make schemas` to regenerate docs/openapi.json"


def test_the_document_describes_every_endpoint_and_the_token() -> None:
    spec = orjson.loads(PUBLISHED.read_bytes())
    paths = spec["paths"]
    for path in ("/api/runs", "/api/runs/{run_id}", "/api/attempts/{run_id}/logs"):
        assert "get" in paths[path]
    for action in ("pause", "resume", "rerun", "cancel"):
        post = paths[f"/api/pipelines/{{name}}/{action}"]["post"]
        assert post["security"] == [{"HTTPBearer": []}]
        assert "409" in post["responses"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert document()["info"]["title"] == "eventflow"
