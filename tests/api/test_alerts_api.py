"""Alerts over HTTP: the rules (no secret shown) and the deliveries with their filters, as the
alerts service recorded them against a real receiver; and `eventflow alerts` reading them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest
from click.testing import CliRunner

import eventflow as ef
from eventflow.alerts.service import AlertService
from eventflow.cli import cli
from eventflow.embedded.control import ControlServer
from eventflow.testing import EmbeddedHarness

from ..receiver import Receiver
from .conftest import EMBEDDED_ONLY, TOKEN, Api
from .test_history_api import until


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver(always={"/gone": 410}) as started:
        yield started


#: The secret a Slack-style webhook keeps in its path.
SLACK = "services/T0001/B0002/s3cr3tS3cr3tS3cr3t"


@pytest.fixture
def api_app(receiver: Receiver) -> ef.App:
    p = ef.Pipeline("nightly")

    @p.task(inputs=[ef.Dataset("src")])
    def load(ctx: ef.TaskContext) -> None:
        raise ef.Fail("no rows")

    rules = [
        ef.Alert(
            "oncall",
            on=["run.failed"],
            webhook=receiver.url("/gone"),
            headers={"Authorization": "Bearer ${ALERTS_API_TOKEN}"},
        ),
        ef.Alert("chat", on=["task.failed"], webhook=receiver.url(), format="slack"),
        # Never sent here: it shows how a literal webhook's secret is kept out of sight.
        ef.Alert(
            "team",
            on=["freshness.violated"],
            webhook=f"https://bob:pw{SLACK[-6:]}@hooks.example/{SLACK}?k=v#top",
        ),
    ]
    return ef.App([p], alerts=rules)


@pytest.mark.parametrize("api", EMBEDDED_ONLY, indirect=True)
async def test_rules_and_deliveries(
    api: Api, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERTS_API_TOKEN", "not-to-be-shown")
    harness = api.harness
    assert isinstance(harness, EmbeddedHarness)
    control = ControlServer(harness.runtime, harness.settings.control_socket)
    async with control, AlertService(harness.app, harness.settings):
        rules = (await api.client.get("/api/alerts")).json()
        assert [(r["name"], r["on"], r["format"], r["headers"]) for r in rules] == [
            ("oncall", ["run.failed"], "json", ["Authorization"]),
            ("chat", ["task.failed"], "slack", []),
            ("team", ["freshness.violated"], "json", []),
        ]
        assert "not-to-be-shown" not in orjson.dumps(rules).decode()
        assert rules[2]["webhook"] == "https://bob:***@hooks.example/***?***"
        assert SLACK not in orjson.dumps(rules).decode()
        await harness.emit("src", "", 1)
        found = await until(
            api,
            "/api/alerts/deliveries",
            lambda ds: len(ds) == 2 and all(d["state"] in ("delivered", "given_up") for d in ds),
        )
    states = {d["rule"]: (d["state"], d["attempts"], d["status_code"]) for d in found}
    assert states == {"oncall": ("given_up", 1, 410), "chat": ("delivered", 1, 200)}
    gone = (await api.client.get("/api/alerts/deliveries", params={"state": "given_up"})).json()
    assert [(d["rule"], d["error"]) for d in gone] == [("oncall", "refused: HTTP 410")]
    by_type = {"type": "eventflow.task.failed", "pipeline": "nightly"}
    assert [
        d["rule"] for d in (await api.client.get("/api/alerts/deliveries", params=by_type)).json()
    ] == ["chat"]
    assert (await api.client.get("/api/alerts/deliveries", params={"rule": "none"})).json() == []
    assert (
        await api.client.get("/api/alerts/deliveries", params={"state": "lost"})
    ).status_code == 422

    env = {"EVENTFLOW_API_URL": api.url, "EVENTFLOW_API_TOKEN": TOKEN}
    runner = CliRunner()
    text = await asyncio.to_thread(runner.invoke, cli, ["alerts"], env=env)
    assert text.exit_code == 0, text.output
    lines = text.output.splitlines()
    assert lines[0].split() == ["rule", "on", "format", "webhook", "filters"]
    assert any(line.split()[:3] == ["oncall", "run.failed", "json"] for line in lines)
    assert any("given_up" in line and "refused: HTTP 410" in line for line in lines)
    as_json = await asyncio.to_thread(
        runner.invoke, cli, ["alerts", "--json", "--state", "delivered"], env=env
    )
    assert as_json.exit_code == 0, as_json.output
    said = orjson.loads(as_json.output)
    assert [d["rule"] for d in said["deliveries"]] == ["chat"]
    assert [r["name"] for r in said["rules"]] == ["oncall", "chat", "team"]
    assert SLACK not in text.output
