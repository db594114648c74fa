"""Freshness over HTTP: the policies, what is late now and since when, on both runtimes and
both history stores; the age limit runs in real seconds, the test waits for the history."""

from __future__ import annotations

import pytest

import eventflow as ef

from .conftest import EVERYWHERE, Api
from .test_history_api import until


@pytest.fixture
def api_app() -> ef.App:
    feed = ef.Dataset("feed", freshness=ef.Freshness(max_age=1))
    orders = ef.Dataset("orders", ef.daily())
    p = ef.Pipeline("watch")

    @p.task(inputs=[feed])
    def read(ctx: ef.TaskContext) -> None:
        pass

    @p.task(inputs=[orders], deadline="0 7 * * *")
    def report(ctx: ef.TaskContext) -> None:
        pass

    return ef.App([p])


@pytest.mark.parametrize("api", EVERYWHERE, indirect=True)
async def test_policies_and_violations_open_then_ended(api: Api) -> None:
    await api.harness.emit("feed", "", 1)
    # Judging starts with the runtime: a slow start may be late once before version 1 came.
    report = await until(
        api, "/api/freshness", lambda r: any(v["newest_version"] == 1 for v in r["violations"])
    )
    assert [(p["kind"], p["name"], p["deadline"], p["max_age_s"]) for p in report["policies"]] == [
        ("dataset", "feed", None, 1.0),
        ("task", "report", "0 7 * * *", None),
    ]
    [late] = report["violations"]  # one open at a time: a version ends the one before
    assert (late["name"], late["policy"], late["newest_version"]) == ("feed", "max_age", 1)
    assert late["violated_at"] and late["recovered_at"] is None
    dataset = (await api.client.get("/api/datasets/feed")).json()
    assert dataset["policy"]["max_age_s"] == 1.0
    assert [v["policy"] for v in dataset["violations"]] == ["max_age"]

    await api.harness.emit("feed", "", 2)
    every = await until(
        api,
        "/api/freshness",
        lambda r: any(v["recovered_version"] == 2 for v in r["violations"]),
        ended=True,
    )
    first = next(v for v in every["violations"] if v["recovered_version"] == 2)
    assert first["expected_by"] == late["expected_by"]
    still = (await api.client.get("/api/freshness")).json()["violations"]
    assert all(v["expected_by"] != late["expected_by"] for v in still), "it ended"
