"""OpenLineage without I/O: the App's mappings validated at build, partitions read from a
facet, a path or a function, outputs merged by run, and eventflow's own RunEvents."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from openlineage.client.serde import Serde

import eventflow as ef
from eventflow.events import (
    DatasetVersion,
    TaskFailed,
    TaskFailedData,
    TaskProgressData,
    TaskStarted,
    TaskSucceeded,
    TaskSucceededData,
)
from eventflow.openlineage.emitter import run_event, run_uuid
from eventflow.openlineage.intake import Intake

DAY = "2026-11-20"
ORDERS = ef.Dataset("orders", ef.daily())
PLAIN = ef.Dataset("plain")


def app(*mappings: ef.LineageMapping) -> ef.App:
    p = ef.Pipeline("shop")

    @p.task(inputs=[ORDERS, PLAIN], outputs=[ef.Dataset("report", ef.daily())])
    def report(ctx: ef.TaskContext) -> None:
        pass

    return ef.App([p], lineage=mappings)


@pytest.mark.parametrize(
    ("mappings", "error"),
    [
        ([ef.LineageMapping("s3", "x", "nowhere")], "the App has no dataset 'nowhere'"),
        ([ef.LineageMapping("s3", "x", ORDERS)], "dataset 'orders' is partitioned"),
        ([ef.LineageMapping("s3", "x", PLAIN, partition="subset")], "is not partitioned"),
        ([ef.LineageMapping("", "x", PLAIN)], "must be non-empty strings"),
        (
            [ef.LineageMapping("s3", "x", PLAIN), ef.LineageMapping("s3", "x", PLAIN)],
            "is given twice",
        ),
        ([("s3", "x", PLAIN)], "lineage= takes ef.LineageMapping, not tuple"),
    ],
)
def test_mappings_are_validated_when_the_app_is_built(mappings: list[Any], error: str) -> None:
    with pytest.raises(ef.DefinitionError, match=error):
        app(*mappings)


def ol(kind: str, run: str, outputs: list[dict[str, Any]] | None = None, second: int = 0) -> bytes:
    return orjson.dumps(
        {
            "eventType": kind,
            "eventTime": f"2026-11-21T03:00:{second:02d}Z",
            "run": {"runId": run},
            "job": {"namespace": "spark", "name": "ingest"},
            "outputs": outputs or [],
            "producer": "test",
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        }
    )


def out(name: str, **facets: Any) -> dict[str, Any]:
    return {"namespace": "s3", "name": name, "facets": {}, "outputFacets": facets}


def test_partitions_come_from_a_path_or_a_function() -> None:
    def from_name(output: Mapping[str, Any], event: Mapping[str, Any]) -> str:
        return str(output["name"]).rsplit("/", 1)[1]

    intake = Intake(
        app(
            ef.LineageMapping("s3", "orders", ORDERS, partition="outputFacets.partition.key"),
            ef.LineageMapping("s3", "orders/2026-11-21", ORDERS, partition=from_name),
        )
    )
    run = str(uuid.uuid4())
    taken = intake.take(
        ol("COMPLETE", run, [out("orders", partition={"key": DAY}), out("orders/2026-11-21")])
    )
    assert [(a.dataset, a.partition) for a in taken.announce] == [
        ("orders", DAY),
        ("orders", "2026-11-21"),
    ]
    assert taken.record == []


def test_a_partition_the_event_lacks_or_the_scheme_refuses_is_recorded() -> None:
    intake = Intake(app(ef.LineageMapping("s3", "orders", ORDERS, partition="subset")))
    bad_day = {
        "outputCondition": {
            "type": "partition",
            "partitions": [{"identifier": "2026-13-45", "dimensions": {}}],
        }
    }
    for facets, reason in (
        ({}, "no subset facet with a partition condition"),
        ({"subset": bad_day}, "2026-13-45"),
    ):
        taken = intake.take(ol("COMPLETE", str(uuid.uuid4()), [out("orders", **facets)]))
        assert taken.announce == []
        (recorded,) = taken.record
        assert reason in recorded


def test_outputs_merge_by_run_and_a_run_ends_once() -> None:
    intake = Intake(app(ef.LineageMapping("s3", "plain", PLAIN)))
    one, two = str(uuid.uuid4()), str(uuid.uuid4())
    assert intake.take(ol("START", one, [out("plain")])).announce == []
    assert intake.take(ol("START", two)).announce == []
    # Another run's end does not take the first run's outputs.
    assert intake.take(ol("COMPLETE", two, second=1)).announce == []
    (version,) = intake.take(ol("COMPLETE", one, second=2)).announce
    assert version.version == int(datetime(2026, 11, 21, 3, 0, 2, tzinfo=UTC).timestamp() * 1e6)
    again = intake.take(ol("COMPLETE", one, [out("plain")], second=3))
    assert again.announce == [] and "after the run ended COMPLETE" in again.record[0]
    # Forgetting the oldest runs keeps memory bounded.
    small = Intake(app(ef.LineageMapping("s3", "plain", PLAIN)), max_runs=1)
    small.take(ol("START", one, [out("plain")]))
    small.take(ol("START", two))
    assert small.take(ol("COMPLETE", one)).announce == []


def test_other_events_and_times_without_a_zone_are_handled() -> None:
    intake = Intake(app(ef.LineageMapping("s3", "plain", PLAIN)))
    assert intake.take(ol("OTHER", str(uuid.uuid4()), [out("plain")])).refused is None
    naive = orjson.loads(ol("COMPLETE", str(uuid.uuid4())))
    naive["eventTime"] = "2026-11-21T03:00:00"
    assert "has no time zone" in str(intake.take(orjson.dumps(naive)).refused)


RUN_ID = "report:2026-11-20:abc:1"
WHEN = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)


def test_eventflow_runs_become_run_events_with_one_run_id() -> None:
    the_app = app()
    ref: dict[str, Any] = {"run_id": RUN_ID, "task": "report", "pipeline": "shop", "partition": DAY}
    started = TaskStarted.of(TaskProgressData(**ref, worker="w"), source="t", time=WHEN)
    inputs = [DatasetVersion(dataset="orders", partition=DAY, version=7)]
    start = run_event(the_app, started, "prod", inputs)
    assert start is not None
    done = TaskSucceeded.of(
        TaskSucceededData(
            **ref,
            worker="w",
            outputs=[
                DatasetVersion(dataset="report", partition=DAY, version=9, metadata={"rows": 3})
            ],
            duration_ms=5,
        ),
        source="t",
        time=WHEN,
    )
    complete = run_event(the_app, done, "prod")
    assert complete is not None
    failed = TaskFailed.of(
        TaskFailedData(**ref, worker="w", error="boom", kind="error"), source="t", time=WHEN
    )
    cancelled = TaskFailed.of(
        TaskFailedData(**ref, worker="w", error="stop", kind="cancelled"), source="t", time=WHEN
    )
    bodies = [orjson.loads(Serde.to_json(e)) for e in (start, complete)]
    fail, abort = (run_event(the_app, e, "prod") for e in (failed, cancelled))
    assert fail is not None and abort is not None
    bodies += [orjson.loads(Serde.to_json(e)) for e in (fail, abort)]
    assert [b["eventType"] for b in bodies] == ["START", "COMPLETE", "FAIL", "ABORT"]
    assert {b["run"]["runId"] for b in bodies} == {run_uuid(RUN_ID)}
    assert {(b["job"]["namespace"], b["job"]["name"]) for b in bodies} == {("prod", "shop.report")}
    assert bodies[0]["inputs"] == [
        {
            "namespace": "prod",
            "name": "orders",
            "facets": {"version": _facet(bodies[0]["inputs"][0]["facets"]["version"], "7")},
            "inputFacets": {},
        }
    ]
    # Without the request, the task's declared inputs.
    assert [i["name"] for i in bodies[1]["inputs"]] == ["orders", "plain"]
    (output,) = bodies[1]["outputs"]
    assert output["name"] == "report"
    assert output["outputFacets"]["outputStatistics"]["rowCount"] == 3
    assert bodies[2]["run"]["facets"]["errorMessage"]["message"] == "boom"
    assert run_uuid(RUN_ID) != run_uuid(RUN_ID.replace(":1", ":2"))


def _facet(found: dict[str, Any], version: str) -> dict[str, Any]:
    assert found["datasetVersion"] == version
    return found


def test_odd_shapes_are_refused_or_recorded_never_raised() -> None:
    intake = Intake(app(ef.LineageMapping("s3", "plain", PLAIN)))

    def edited(**fields: Any) -> bytes:
        body = orjson.loads(ol("COMPLETE", str(uuid.uuid4()), [out("plain")]))
        body.update(fields)
        return orjson.dumps(body)

    facets_list = [{"namespace": "s3", "name": "plain", "outputFacets": []}]
    for raw, reason in (
        (edited(outputs=facets_list), "outputFacets of outputs entry 'plain' is not an object"),
        (edited(run={"runId": "r", "facets": []}), "run.facets is not an object"),
    ):
        assert reason in str(intake.take(raw).refused)
    # Before 1970 the version would not be positive: recorded, not announced.
    taken = intake.take(edited(eventTime="1960-01-01T00:00:00Z"))
    assert taken.announce == [] and "not a dataset version: version" in taken.record[0]
