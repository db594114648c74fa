"""Partition keys are free text (static partitions): a key with `/`, `%`, a space, `#` or `?`
is a run id's part, and every route that takes a run id takes it whole."""

from __future__ import annotations

import urllib.parse

import pytest

import eventflow as ef
from eventflow.api.auth import read_pass

from .conftest import EMBEDDED_ONLY, TOKEN, Api
from .test_history_api import until

KEYS = ("eu/west", "100%", "a b#c?d", "<b>x</b>")


@pytest.fixture
def api_app() -> ef.App:
    regions, report = (
        ef.Dataset("regions", ef.static(*KEYS)),
        ef.Dataset("report", ef.static(*KEYS)),
    )
    p = ef.Pipeline("odd")

    @p.task(inputs=[regions], outputs=[report])
    def tally(ctx: ef.TaskContext) -> None:
        ctx.log.info("tallying %s", ctx.partition)
        ctx.emit(report)

    return ef.App([p])


@pytest.mark.parametrize("api", EMBEDDED_ONLY, indirect=True)
@pytest.mark.parametrize("key", KEYS)
async def test_a_run_of_any_partition_key_is_found_by_its_id(api: Api, key: str) -> None:
    done = await api.client.post("/api/datasets/regions/events", json={"partition": key})
    assert done.status_code == 202, done.text
    runs = await until(
        api,
        "/api/runs",
        lambda found: found["total"] == 1 and found["items"][0]["status"] != "running",
        partition=key,
    )
    [run] = runs["items"]
    quoted = urllib.parse.quote(run["run_id"], safe="")
    found = await api.client.get(f"/api/runs/{quoted}")
    assert found.status_code == 200 and found.json()["run"]["partition"] == key
    [attempt] = found.json()["attempts"]
    attempt_id = urllib.parse.quote(attempt["run_id"], safe="")
    assert (await api.client.get(f"/api/attempts/{attempt_id}")).json()["partition"] == key
    [line] = await until(api, f"/api/attempts/{attempt_id}/logs", bool)
    assert line["message"] == f"tallying {key}"
    api.client.cookies.set("eventflow_token", read_pass(TOKEN))
    page = await api.client.get(f"/ui/runs/{quoted}")
    assert page.status_code == 200 and "tallying" in page.text
