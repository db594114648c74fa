"""Operators' actions and explanations over HTTP, on both runtimes: each action is decided by
the core and shows in the history; a refusal comes back with its reason."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

import eventflow as ef

from .conftest import EMBEDDED_ONLY, Api
from .test_history_api import until

D = "2026-11-20"
#: "release": lets `slow` bodies finish (a test sets it once their run is cancelled); one
#: per test, as an asyncio.Event belongs to the loop that first waits on it.
gates: dict[str, asyncio.Event] = {}


@pytest.fixture
def api_app() -> ef.App:
    gates["release"] = asyncio.Event()
    a, b, c, s = (ef.Dataset(n, ef.daily()) for n in ("a", "b", "c", "s"))
    p = ef.Pipeline("p")

    @p.task(inputs=[a], outputs=[b])
    def first(ctx: ef.TaskContext) -> None:
        ctx.emit(b)

    @p.task(inputs=[b, c])
    def join(ctx: ef.TaskContext) -> None:
        pass

    @p.task(inputs=[s])
    async def slow(ctx: ef.TaskContext) -> None:
        await gates["release"].wait()

    return ef.App([p])


async def post(api: Api, path: str, **body: Any) -> httpx.Response:
    return await api.client.post(path, json={"reason": "testing", "operator": "ada", **body})


async def attempts(api: Api, task: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (
        await api.client.get(f"/api/pipelines/p/tasks/{task}/attempts", params={"partition": D})
    ).json()
    return found


async def test_pause_keeps_inputs_and_resume_runs_them_once(api: Api) -> None:
    paused = await post(api, "/api/pipelines/p/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] == "applied"
    info = (await api.client.get("/api/pipelines/p")).json()
    assert info["paused"]["operator"] == "ada" and info["paused"]["reason"] == "testing"
    again = await post(api, "/api/pipelines/p/pause")
    assert again.status_code == 409 and "paused" in again.json()["detail"]

    for version in (1, 2):
        await api.harness.emit("a", D, version)
    explained = await until(
        api,
        "/api/pipelines/p/tasks/first/explain",
        lambda e: any(i["detail"].startswith("latest version 2;") for i in e["items"]),
        partition=D,
    )
    [pause] = [item for item in explained["items"] if item["check"] == "paused"]
    assert not pause["ok"] and "ada" in pause["detail"]
    assert explained["status"] == "waiting"
    assert await attempts(api, "first") == []

    assert (await post(api, "/api/pipelines/p/resume")).json()["status"] == "applied"
    await api.harness.wait_for_runs(1, pipeline="p", timeout=60)
    runs = await until(api, "/api/runs", lambda page: page["total"] == 1, pipeline="p")
    [run] = runs["items"]
    done = await until(api, f"/api/runs/{run['run_id']}", lambda d: d["run"]["status"] != "running")
    [attempt] = [a for a in done["attempts"] if a["task"] == "first"]
    assert [(i["dataset"], i["version"]) for i in attempt["inputs"]] == [("a", 2)]


async def test_rerun_a_task_on_its_inputs_and_refusals(api: Api) -> None:
    never = await post(api, "/api/pipelines/p/rerun", partition=D, task="first")
    assert never.status_code == 409 and "never ran" in never.json()["detail"], never.text
    assert (await post(api, "/api/pipelines/nope/rerun", partition=D)).status_code == 404
    unknown = await post(api, "/api/pipelines/p/rerun", partition=D, task="nope")
    assert unknown.status_code == 409, unknown.text

    await api.harness.emit("a", D, 1)
    await api.harness.wait_for_runs(1, pipeline="p", timeout=60)
    rerun = await post(api, "/api/pipelines/p/rerun", partition=D, task="first")
    assert rerun.status_code == 200, rerun.text
    await api.harness.wait_for_runs(2, pipeline="p", timeout=60)
    found = await until(
        api, "/api/pipelines/p/tasks/first/attempts", lambda f: len(f) == 2, partition=D
    )
    assert len({a["run_id"] for a in found}) == 2, "a rerun has a run id of its own"
    assert {tuple((i["dataset"], i["version"]) for i in a["inputs"]) for a in found} == {
        (("a", 1),)
    }, "both on the same input version"
    # The rerun produced a new version of b: downstream sees it as fresh (and waits for c).
    explained = (
        await api.client.get("/api/pipelines/p/tasks/join/explain", params={"partition": D})
    ).json()
    assert explained["status"] == "waiting"
    [trigger] = [i for i in explained["items"] if i["check"] == "trigger"]
    assert not trigger["ok"]
    [c] = [i for i in explained["items"] if i["title"].startswith("input c:")]
    assert not c["ok"]


async def test_cancel_fails_the_run_with_the_operators_reason(api: Api) -> None:
    await api.harness.emit("s", D, 1)
    await until(api, "/api/pipelines/p/tasks/slow/attempts", lambda f: f, partition=D)
    cancelled = await post(api, "/api/pipelines/p/cancel", partition=D)
    assert cancelled.status_code == 200, cancelled.text
    [run] = await api.harness.wait_for_runs(1, pipeline="p", timeout=60)
    assert run.status == "failed" and "cancelled by ada: testing" in run.reason
    gates["release"].set()
    nothing = await post(api, "/api/pipelines/p/cancel", partition=D)
    assert nothing.status_code == 409, nothing.text


@pytest.mark.parametrize("api", EMBEDDED_ONLY, indirect=True)
async def test_actions_need_the_token_and_a_reason(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url) as anonymous:
        refused = await anonymous.post("/api/pipelines/p/pause", json={"reason": "x"})
        assert refused.status_code == 401
    assert (await api.client.post("/api/pipelines/p/pause", json={})).status_code == 422
    assert (await api.client.post("/api/pipelines/p/pause", json={"reason": ""})).status_code == 422
    info = (await api.client.get("/api/pipelines/p")).json()
    assert info["paused"] is None
