"""Backfills over HTTP: the dry run, starting one, its progress, cancelling, and the refusals."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx
import pytest

import eventflow as ef

from .conftest import EMBEDDED_ONLY, Api

FIRST = "2026-10-01"


def days(n: int) -> list[str]:
    start = date.fromisoformat(FIRST)
    return [(start + timedelta(days=i)).isoformat() for i in range(n)]


@pytest.fixture
def api_app() -> ef.App:
    clock, daily, report = (
        ef.Dataset("clock.daily", ef.daily()),
        ef.Dataset("daily", ef.daily()),
        ef.Dataset("report", ef.daily()),
    )
    p = ef.Pipeline("assets")
    p.schedule(clock, "0 6 * * *")

    @p.task(inputs=[clock], outputs=[daily])
    def build(ctx: ef.TaskContext) -> None:
        if ctx.partition == days(5)[2]:
            raise ef.Fail("no data that day")
        ctx.emit(daily)

    q = ef.Pipeline("reports")

    @q.task(inputs=[daily], outputs=[report])
    def summarize(ctx: ef.TaskContext) -> None:
        ctx.emit(report)

    return ef.App([p, q])


def body(**fields: Any) -> dict[str, Any]:
    return {"pipeline": "assets", "reason": "history", "operator": "alice", **fields}


async def test_dry_run_then_backfill_with_its_progress(api: Api) -> None:
    dry = await api.client.post(
        "/api/backfills", json=body(start=FIRST, end=days(5)[-1], dry_run=True)
    )
    assert dry.status_code == 200, dry.text
    plan = dry.json()
    assert plan["status"] == "dry_run"
    assert [(p["partition"], p["run"], p["tasks"]) for p in plan["plan"]] == [
        (d, True, ["build"]) for d in days(5)
    ]
    assert plan["plan"][0]["why"].startswith("missing: build on clock.daily@")
    assert not api.engine.pipelines["assets"].backfills, "a dry run starts nothing"

    started = await api.client.post(
        "/api/backfills", json=body(start=FIRST, end=days(5)[-1], max_active=2)
    )
    assert started.status_code == 200, started.text
    bid = started.json()["id"]
    assert started.json()["pipelines"] == ["assets"]
    await api.harness.wait_for(
        lambda: api.engine.pipelines["assets"].backfills[bid].status == "done", timeout=60
    )
    await api.harness.wait_idle()
    shown = (await api.client.get(f"/api/backfills/{bid}")).json()
    assert {k: shown[k] for k in ("status", "planned", "started", "succeeded", "failed")} == {
        "status": "done",
        "planned": 5,
        "started": 5,
        "succeeded": 4,
        "failed": 1,
    }
    assert (shown["start"], shown["end"], shown["mode"]) == (FIRST, days(5)[-1], "missing")
    listed = (await api.client.get("/api/backfills")).json()
    assert [b["id"] for b in listed] == [bid]
    reports = {r.partition for r in api.harness.runs("reports")}
    assert reports >= set(days(5)) - {days(5)[2]}, "downstream ran for the partitions built"

    # The failed partition again: the plan says so, and only it runs.
    again = await api.client.post(
        "/api/backfills", json=body(start=FIRST, end=days(5)[-1], mode="failed", dry_run=True)
    )
    assert [p["partition"] for p in again.json()["plan"] if p["run"]] == [days(5)[2]]


@pytest.mark.parametrize("api", EMBEDDED_ONLY, indirect=True)
async def test_from_a_dataset_and_cancel(api: Api) -> None:
    # Nothing produced `daily` yet: its consumers have nothing to run on.
    dry = await api.client.post(
        "/api/backfills",
        json={"dataset": "daily", "partitions": days(2), "reason": "x", "dry_run": True},
    )
    assert [(p["pipeline"], p["run"]) for p in dry.json()["plan"]] == [
        ("reports", False),
        ("reports", False),
    ]
    started = await api.client.post(
        "/api/backfills", json=body(start=FIRST, end=days(30)[-1], max_active=1)
    )
    bid = started.json()["id"]
    cancelled = await api.client.post(
        f"/api/backfills/{bid}/cancel", json={"reason": "wrong range", "operator": "bob"}
    )
    assert cancelled.status_code == 200, cancelled.text
    at_cancel = api.engine.pipelines["assets"].backfills[bid].started
    await api.harness.wait_for(
        lambda: not api.engine.pipelines["assets"].backfills[bid].active, timeout=30
    )
    shown = (await api.client.get(f"/api/backfills/{bid}")).json()
    assert shown["status"] == "cancelled"
    assert shown["started"] == at_cancel < 30, "none started after the cancel"
    again = await api.client.post(f"/api/backfills/{bid}/cancel", json={"reason": "x"})
    assert again.status_code == 409


@pytest.mark.parametrize("api", EMBEDDED_ONLY, indirect=True)
async def test_refusals(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url) as anonymous:
        refused = await anonymous.post("/api/backfills", json=body(start=FIRST, end=FIRST))
        assert refused.status_code == 401
    for wrong, why in [
        (body(start=days(3)[-1], end=FIRST), "ends"),
        (body(start="2026-10", end=FIRST), "not a daily key"),
        (body(start=FIRST), "both"),
        (body(start=FIRST, end=FIRST, partitions=[FIRST]), "or `partitions`, one of them"),
        (body(pipeline="nope", start=FIRST, end=FIRST), "no pipeline"),
        ({"dataset": "report", "start": FIRST, "end": FIRST, "reason": "x"}, "no pipeline"),
    ]:
        answer = await api.client.post("/api/backfills", json=wrong)
        assert answer.status_code == 400, answer.text
        assert why in answer.json()["detail"]
        assert "pydantic" not in answer.json()["detail"], "a reason, not a validation dump"
    assert (await api.client.get("/api/backfills/nope")).status_code == 404
    assert (
        await api.client.post("/api/backfills/nope/cancel", json={"reason": "x"})
    ).status_code == 404
    assert not api.engine.pipelines["assets"].backfills
