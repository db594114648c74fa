"""The history over HTTP, from a real cascade, on both runtimes and both history stores."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

import eventflow as ef

from ..history.cascade import D1, D2, cascade
from .conftest import EVERYWHERE, Api


@pytest.fixture
def api_app() -> ef.App:
    return cascade()


async def until(api: Api, path: str, done: Callable[[Any], bool], **params: Any) -> Any:
    """GET `path` until `done(json)` (the history is projected a moment after deciding)."""
    deadline = time.monotonic() + 60
    while True:
        found = (await api.client.get(path, params=params)).json()
        if done(found):
            return found
        assert time.monotonic() < deadline, f"{path} {params}: {found}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("api", EVERYWHERE, indirect=True)
async def test_runs_attempts_logs_lineage_and_dead_letters(api: Api) -> None:
    for day in (D1, D2):
        await api.harness.emit("src", day, 1)
    await api.harness.wait_for_runs(2, timeout=60)
    await api.harness.publish_raw(b"not json at all")
    runs = await until(
        api,
        "/api/runs",
        lambda page: page["total"] == 2 and all(r["status"] == "succeeded" for r in page["items"]),
    )
    assert {r["partition"] for r in runs["items"]} == {D1, D2}

    # Filters and pages.
    assert (await api.client.get("/api/runs", params={"status": "failed"})).json()["total"] == 0
    [d1] = (await api.client.get("/api/runs", params={"partition": D1})).json()["items"]
    first = (await api.client.get("/api/runs", params={"limit": 1})).json()
    assert len(first["items"]) == 1 and first["total"] == 2 and first["next_cursor"]
    second = (
        await api.client.get("/api/runs", params={"limit": 1, "cursor": first["next_cursor"]})
    ).json()
    assert {first["items"][0]["run_id"], second["items"][0]["run_id"]} == {
        r["run_id"] for r in runs["items"]
    }
    assert (await api.client.get("/api/runs", params={"status": "nope"})).status_code == 422

    # One run, its attempts, and what a failed attempt logged.
    detail = await until(api, f"/api/runs/{d1['run_id']}", lambda d: len(d["attempts"]) == 4)
    assert [(a["task"], a["attempt"], a["status"]) for a in detail["attempts"]] == [
        ("first", 1, "failed"),
        ("first", 2, "succeeded"),
        ("second", 1, "succeeded"),
        ("third", 1, "succeeded"),
    ]
    failed = detail["attempts"][0]
    assert "flaky" in failed["error"] and failed["worker"]
    lines = await until(api, f"/api/attempts/{failed['run_id']}/logs", lambda found: found)
    assert any("RuntimeError: flaky" in line["message"] for line in lines)
    assert (await api.client.get("/api/runs/chain:nope:1")).status_code == 404

    # Freshness and lineage, down the chain.
    datasets = (await api.client.get("/api/datasets")).json()
    assert {(d["dataset"], d["partition"]) for d in datasets} >= {
        (name, day) for name in ("src", "mid", "end") for day in (D1, D2)
    }
    end = next(d for d in datasets if (d["dataset"], d["partition"]) == ("end", D1))
    lineage = (
        await api.client.get(
            "/api/datasets/end/lineage", params={"partition": D1, "version": end["version"]}
        )
    ).json()
    assert lineage["producer"]["task"] == "second"
    [mid] = lineage["upstream"]
    assert mid["dataset"] == "mid" and mid["producer"]["task"] == "first"
    [src] = mid["upstream"]
    assert (src["dataset"], src["version"]) == ("src", 1)
    down = (
        await api.client.get(
            "/api/datasets/src/lineage", params={"partition": D1, "version": 1, "depth": 2}
        )
    ).json()
    assert [c["attempt"]["task"] for c in down["downstream"]] == ["first", "first"]
    missing = await api.client.get(
        "/api/datasets/end/lineage", params={"partition": D1, "version": 12345}
    )
    assert missing.status_code == 404

    # The dead letter, with its reason; the event feed, filtered.
    letters = await until(api, "/api/deadletters", lambda found: found)
    assert "not json" in letters[0]["excerpt"] and letters[0]["reason"]
    produced = (
        await api.client.get(
            "/api/events", params={"type": "eventflow.dataset.produced", "dataset": "end"}
        )
    ).json()
    assert len(produced) == 2 and all(e["type"] == "eventflow.dataset.produced" for e in produced)
