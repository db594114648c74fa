"""OpenLineage in over HTTP: RunEvents sent by the `openlineage-python` client's HTTP
transport to `/api/v1/lineage` become dataset versions that trigger tasks; what is no trigger
is recorded with its reason."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    base_subset_dataset,
    error_message_run,
    output_statistics_output_dataset,
)
from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport

import eventflow as ef

from .conftest import EMBEDDED_ONLY, TOKEN, Api

S3 = "s3://lake"
DAY = "2026-11-20"
JOB = Job(namespace="spark", name="ingest_orders")


@pytest.fixture
def api_app() -> ef.App:
    orders, tidy_orders = ef.Dataset("orders", ef.daily()), ef.Dataset("tidy_orders", ef.daily())
    p = ef.Pipeline("shop")

    @p.task(inputs=[orders], outputs=[tidy_orders])
    def tidy(ctx: ef.TaskContext) -> None:
        ctx.emit(tidy_orders)

    mappings = [ef.LineageMapping(S3, "raw/orders", orders, partition="subset")]
    return ef.App([p], lineage=mappings)


def client(api: Api, token: str = TOKEN) -> OpenLineageClient:
    auth = ApiKeyTokenProvider({"apiKey": token})
    return OpenLineageClient(transport=HttpTransport(HttpConfig(url=api.url, auth=auth)))


def output(name: str, day: str | None = None, rows: int | None = None) -> OutputDataset:
    facets: dict[str, object] = {}
    if day is not None:
        condition = base_subset_dataset.PartitionSubsetCondition(
            partitions=[base_subset_dataset.Partition(dimensions={"day": day})]
        )
        facets["subset"] = base_subset_dataset.OutputSubsetOutputDatasetFacet(
            outputCondition=condition
        )
    if rows is not None:
        stats = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet
        facets["outputStatistics"] = stats(rowCount=rows)
    return OutputDataset(S3, name, outputFacets=facets)  # type: ignore[arg-type]  # facets of two kinds


def event(
    state: RunState,
    run_id: str,
    outputs: list[OutputDataset] | None = None,
    *,
    after: int = 0,
    error: str | None = None,
) -> RunEvent:
    facets = {}
    if error is not None:
        facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=error, programmingLanguage="scala"
        )
    when = datetime(2026, 11, 21, 3, 0, tzinfo=UTC) + timedelta(seconds=after)
    return RunEvent(
        eventType=state,
        eventTime=when.isoformat(),
        run=Run(runId=run_id, facets=facets),  # type: ignore[arg-type]  # one facet kind
        job=JOB,
        outputs=outputs or [],
    )


async def send(api: Api, *events: RunEvent) -> None:
    ol = client(api)
    for one in events:
        # The client is synchronous, and the server answers on this loop.
        await asyncio.to_thread(ol.emit, one)


@pytest.mark.parametrize("api", EMBEDDED_ONLY, indirect=True)
async def test_a_completed_run_triggers_once_with_outputs_merged_by_run(api: Api) -> None:
    run = str(uuid.uuid4())
    # Named on START only, as Spark may: the COMPLETE alone announces it.
    await send(
        api,
        event(RunState.START, run, [output("raw/orders", DAY)]),
        event(RunState.RUNNING, run, [output("raw/orders", rows=42)], after=1),
    )
    assert api.harness.produced("orders") == []
    await send(api, event(RunState.COMPLETE, run, after=2))
    await api.harness.wait_for(lambda: api.harness.task_results("tidy"))
    (announced,) = api.harness.produced("orders")
    assert announced.partition == DAY
    assert announced.version == int(datetime(2026, 11, 21, 3, 0, 2, tzinfo=UTC).timestamp() * 1e6)
    assert announced.metadata == {
        "openlineage_run_id": run,
        "openlineage_job": "spark/ingest_orders",
        "row_count": 42,
    }
    (result,) = api.harness.task_results("tidy")
    assert isinstance(result, ef.TaskSucceededData) and result.partition == DAY
    # A COMPLETE delivered again announces nothing more, and says why.
    answer = await api.client.post(
        "/api/v1/lineage", content=orjson.dumps(_json(event(RunState.COMPLETE, run, after=2)))
    )
    assert answer.status_code == 200
    assert answer.json()["announced"] == []
    assert "after the run ended COMPLETE" in answer.json()["recorded"][0]
    assert len(api.harness.produced("orders")) == 1


@pytest.mark.parametrize("api", EMBEDDED_ONLY, indirect=True)
async def test_failed_runs_and_unmapped_outputs_are_recorded_not_triggers(api: Api) -> None:
    failed, done = str(uuid.uuid4()), str(uuid.uuid4())
    await send(
        api,
        event(RunState.START, failed, [output("raw/orders", DAY)]),
        event(RunState.FAIL, failed, error="Table or view not found: orders"),
        event(RunState.ABORT, str(uuid.uuid4())),
        event(RunState.COMPLETE, done, [output("raw/orders", DAY), output("raw/refunds")]),
    )
    await api.harness.wait_for(lambda: len(api.harness.dead_letters()) == 3)
    reasons = [d.reason for d in api.harness.dead_letters()]
    assert f"OpenLineage run {failed} of job spark/ingest_orders ended FAIL" in reasons[0]
    assert "Table or view not found: orders" in reasons[0]
    assert "ended ABORT" in reasons[1]
    assert (
        f"run {done} of job spark/ingest_orders: output s3://lake/raw/refunds maps to no "
        in (reasons[2])
    )
    assert all(d.origin == "openlineage-http" for d in api.harness.dead_letters())
    # The completed run's mapped output went on all the same, once.
    (announced,) = api.harness.produced("orders")
    assert announced.metadata["openlineage_run_id"] == done
    await api.harness.wait_for(lambda: api.harness.task_results("tidy"))
    assert [r.partition for r in api.harness.task_results("tidy")] == [DAY]


@pytest.mark.parametrize("api", EMBEDDED_ONLY, indirect=True)
async def test_malformed_events_are_refused_with_the_reason(api: Api) -> None:
    bad = {
        b"not json": "not JSON",
        b"[]": "not a JSON object",
        b'{"eventType": "COMPLETE", "job": {"namespace": "a", "name": "b"}}': "no run.runId",
        orjson.dumps(
            {**_json(event(RunState.COMPLETE, str(uuid.uuid4()))), "eventType": "DONE"}
        ): "eventType 'DONE' is none of",
        orjson.dumps(
            {**_json(event(RunState.COMPLETE, str(uuid.uuid4()))), "outputs": [{"name": "x"}]}
        ): "an entry of outputs has no namespace and name",
    }
    for body, reason in bad.items():
        answer = await api.client.post("/api/v1/lineage", content=body)
        assert answer.status_code == 400, body
        assert reason in answer.json()["detail"], body
    await api.harness.wait_for(lambda: len(api.harness.dead_letters()) == len(bad))
    assert api.harness.produced("orders") == []


@pytest.mark.parametrize("api", EMBEDDED_ONLY, indirect=True)
async def test_the_endpoint_needs_the_token(api: Api) -> None:
    body = orjson.dumps(_json(event(RunState.COMPLETE, str(uuid.uuid4()))))
    async with httpx.AsyncClient(base_url=api.url) as anonymous:
        assert (await anonymous.post("/api/v1/lineage", content=body)).status_code == 401
    with pytest.raises(Exception, match="403"):
        await asyncio.to_thread(
            client(api, "another-token-0123456789").emit,
            event(RunState.COMPLETE, str(uuid.uuid4()), [output("raw/orders", DAY)]),
        )
    assert api.harness.produced("orders") == []


def _json(run_event: RunEvent) -> dict[str, object]:
    from openlineage.client.serde import Serde

    found: dict[str, object] = orjson.loads(Serde.to_json(run_event))
    return found
