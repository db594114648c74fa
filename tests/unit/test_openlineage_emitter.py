"""OpenLineage out, end to end on a dev instance: the emitter reads the task events through the
control socket, as inside `eventflow dev`, and writes RunEvents with the file transport."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

import eventflow as ef
from eventflow.embedded.control import ControlServer
from eventflow.errors import ConfigurationError
from eventflow.openlineage.emitter import LineageEmitter, run_uuid, transport
from eventflow.testing import EmbeddedHarness

DAY = "2026-11-20"


def app() -> ef.App:
    raw, clean = ef.Dataset("raw", ef.daily()), ef.Dataset("clean", ef.daily())
    p = ef.Pipeline("ingest")

    @p.task(inputs=[raw], outputs=[clean])
    def tidy(ctx: ef.TaskContext) -> None:
        if ctx.partition == "2026-11-21":
            raise ef.Fail("no rows")
        ctx.emit(clean, metadata={"row_count": 12})

    return ef.App([p])


async def test_task_runs_are_sent_as_start_complete_and_fail(tmp_path: Path) -> None:
    lines = tmp_path / "lineage.jsonl"
    harness = EmbeddedHarness(
        app(), tmp_path / "home", openlineage_url=f"file://{lines}", openlineage_namespace="dev"
    )
    async with harness:
        control = ControlServer(harness.runtime, harness.settings.control_socket)
        async with control, LineageEmitter(harness.app, harness.settings) as emitter:
            await harness.emit("raw", DAY)
            await harness.emit("raw", "2026-11-21")
            await harness.wait_for_runs(2)
            await emitter.until(4)
    events: list[dict[str, Any]] = [orjson.loads(line) for line in lines.read_text().splitlines()]
    by_run: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_run.setdefault(event["run"]["runId"], []).append(event)
    ok, failed = (r for r in harness.task_results("tidy"))
    assert [e["eventType"] for e in by_run[run_uuid(ok.run_id)]] == ["START", "COMPLETE"]
    assert [e["eventType"] for e in by_run[run_uuid(failed.run_id)]] == ["START", "FAIL"]
    start, complete = by_run[run_uuid(ok.run_id)]
    assert (
        start["job"] == complete["job"] == {"namespace": "dev", "name": "ingest.tidy", "facets": {}}
    )
    # The request's input version, seen on the log before the start.
    (raw,) = harness.produced("raw")[:1]
    assert [(i["name"], i["facets"]["version"]["datasetVersion"]) for i in start["inputs"]] == [
        ("raw", str(raw.version))
    ]
    (clean,) = complete["outputs"]
    assert clean["name"] == "clean"
    assert clean["facets"]["version"]["datasetVersion"] == str(harness.produced("clean")[0].version)
    assert clean["outputFacets"]["outputStatistics"]["rowCount"] == 12
    fail = by_run[run_uuid(failed.run_id)][1]
    assert fail["run"]["facets"]["errorMessage"]["message"] == "no rows"
    for event in events:
        _is_run_event(event)


def _is_run_event(event: dict[str, Any]) -> None:
    """The fields the OpenLineage spec requires of a RunEvent, with their formats."""
    assert event["schemaURL"].startswith("https://openlineage.io/spec/")
    assert event["producer"].startswith("https://")
    assert event["eventTime"].endswith("+00:00")
    assert event["eventType"] in {"START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"}
    assert len(event["run"]["runId"]) == 36
    for dataset in event["inputs"] + event["outputs"]:
        assert dataset["namespace"] and dataset["name"]


def test_a_transport_eventflow_cannot_read_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="none of an http"):
        transport(ef.Settings(home=tmp_path, openlineage_url="kafka://x"))


def test_a_missing_client_names_the_pip_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "openlineage.client", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'eventflow\[openlineage\]'"):
        transport(ef.Settings(home=tmp_path, openlineage_url="console"))
