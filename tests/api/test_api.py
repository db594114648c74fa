"""The API's definitions, actions and live feed over HTTP, with the token where it is needed."""

from __future__ import annotations

import asyncio
import socket

import httpx
import orjson
import pytest

from eventflow.events import TaskSucceeded
from eventflow.tracing import Trace

from .conftest import EMBEDDED_ONLY, TOKEN, Api


def announced(api: Api) -> list[tuple[str, str]]:
    """Dataset partitions the runtime has seen, but for the schedule's clock."""
    return [key for key in api.engine.datasets if key[0] != "tick"]


@pytest.mark.parametrize("api", EMBEDDED_ONLY, indirect=True)
async def test_reads_and_writes_need_the_token(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url) as anonymous:
        for method, path in [("GET", "/api/pipelines"), ("POST", "/api/datasets/raw/events")]:
            refused = await anonymous.request(method, path, json={"partition": "2026-01-01"})
            assert refused.status_code == 401, refused.text
            assert refused.headers["www-authenticate"] == "Bearer"
            wrong = await anonymous.request(
                method, path, json={}, headers={"Authorization": "Bearer not-the-token"}
            )
            assert wrong.status_code == 403, wrong.text
    assert announced(api) == [], "a refused request published nothing"


@pytest.mark.parametrize("api", EMBEDDED_ONLY, indirect=True)
async def test_the_server_listens_on_loopback_only(api: Api) -> None:
    assert api.server.host == "127.0.0.1"
    assert api.url.startswith("http://127.0.0.1:")


@pytest.mark.parametrize("api", EMBEDDED_ONLY, indirect=True)
async def test_answers_are_sent_without_waiting_for_the_clients_ack(api: Api) -> None:
    """TCP_NODELAY on every connection the server accepts: without it each answer on a
    kept-alive connection (a browser's, the CLI's) waited ~40 ms for a delayed ACK."""
    await api.client.get("/api/health")
    server = api.server._server
    assert server is not None
    [connection] = server.server_state.connections
    sock = connection.transport.get_extra_info("socket")
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


@pytest.mark.parametrize("api", EMBEDDED_ONLY, indirect=True)
async def test_pipelines_and_the_graph(api: Api) -> None:
    pipelines = (await api.client.get("/api/pipelines")).json()
    assert [p["name"] for p in pipelines] == ["ingest", "publish"]
    ingest = (await api.client.get("/api/pipelines/ingest")).json()
    assert ingest["tasks"][0] | {"timeout_s": None} == {
        "name": "tidy",
        "pipeline": "ingest",
        "inputs": ["raw"],
        "outputs": ["clean"],
        "trigger": "all",
        "pool": None,
        "retries": 1,
        "timeout_s": None,
    }
    assert ingest["checks"] == ["not_empty"]
    assert (await api.client.get("/api/pipelines/nope")).status_code == 404
    graph = (await api.client.get("/api/graph")).json()
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert nodes["dataset:tick"]["schedule"] == "0 6 * * *"
    assert nodes["dataset:raw"]["partitions"] == "daily"
    assert nodes["task:summarize"]["pipeline"] == "publish"
    edges = {(e["source"], e["target"]) for e in graph["edges"]}
    assert {
        ("dataset:raw", "task:tidy"),
        ("task:tidy", "dataset:clean"),
        ("dataset:clean", "check:not_empty"),
        ("dataset:clean", "task:summarize"),
        ("dataset:tick", "task:summarize"),
    } <= edges


async def test_publishing_a_dataset_version_triggers_its_consumers(api: Api) -> None:
    done = await api.client.post(
        "/api/datasets/raw/events", json={"partition": "2026-1-5", "metadata": {"rows": 3}}
    )
    assert done.status_code == 202, done.text
    assert done.json()["status"] in ("accepted", "published")
    await api.harness.wait_for_runs(1, pipeline="ingest", timeout=60)
    state = api.engine.pipelines["ingest"].partitions["2026-01-05"]
    assert state.inputs["raw"].metadata == {"rows": 3}
    assert state.runs["tidy"].status == "succeeded"


@pytest.mark.parametrize("api", EMBEDDED_ONLY, indirect=True)
async def test_a_traceparent_header_rides_on_the_published_event_and_what_follows(
    api: Api,
) -> None:
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    done = await api.client.post(
        "/api/datasets/raw/events",
        json={"partition": "2026-1-6"},
        headers={"traceparent": parent, "tracestate": "vendor=1"},
    )
    assert done.status_code == 202, done.text
    await api.harness.wait_for_runs(1, pipeline="ingest", timeout=60)
    [published] = [e for e in api.harness.events if e.id == done.json()["id"]]
    assert Trace.of(published) == Trace(parent, "vendor=1")
    [succeeded] = [e for e in api.harness.events if isinstance(e, TaskSucceeded)]
    assert Trace.of(succeeded) == Trace(parent, "vendor=1")


@pytest.mark.parametrize("api", EMBEDDED_ONLY, indirect=True)
@pytest.mark.parametrize(
    ("dataset", "body", "status", "says"),
    [
        ("nope", {"partition": "2026-01-01"}, 404, "no dataset 'nope'"),
        ("raw", {"partition": "yesterday"}, 400, "partition"),
        ("raw", {"partition": "2026-01-01", "version": 0}, 422, "greater than or equal to 1"),
        ("raw", {"partition": "2026-01-01", "version": "5"}, 422, "valid integer"),
        ("raw", {"partition": "2026-01-01", "version": True}, 422, "valid integer"),
        ("raw", {"partition": "x" * 201}, 422, "at most 200 characters"),
        ("raw", {"partition": "2026-01-01", "metadata": {"x": "y" * 70_000}}, 400, "metadata"),
    ],
)
async def test_bad_publications_are_refused_with_the_reason(
    api: Api, dataset: str, body: dict[str, object], status: int, says: str
) -> None:
    refused = await api.client.post(f"/api/datasets/{dataset}/events", json=body)
    assert refused.status_code == status, refused.text
    assert says in refused.text
    assert announced(api) == []


async def test_the_live_stream_sends_each_event_as_it_happens(api: Api) -> None:
    seen: list[dict[str, object]] = []
    subscribed = asyncio.Event()

    async def read() -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        params = {"pipeline": "ingest", "type": "eventflow.pipeline.run.succeeded"}
        async with (
            httpx.AsyncClient(base_url=api.url, headers=headers, timeout=30) as client,
            client.stream("GET", "/api/events/stream", params=params) as stream,
        ):
            assert stream.headers["content-type"].startswith("text/event-stream")
            async for line in stream.aiter_lines():
                if line == ": live":
                    subscribed.set()
                elif line.startswith("data: "):
                    seen.append(orjson.loads(line.removeprefix("data: ")))
                    return

    reader = asyncio.create_task(read())
    await asyncio.wait_for(subscribed.wait(), 10)
    await api.client.post("/api/datasets/raw/events", json={"partition": "2026-01-02"})
    await asyncio.wait_for(reader, 30)
    [run] = seen
    assert run["type"] == "eventflow.pipeline.run.succeeded"
    assert run["data"]["pipeline"] == "ingest"  # type: ignore[index]


@pytest.mark.parametrize("api", EMBEDDED_ONLY, indirect=True)
async def test_a_method_not_allowed_names_every_method_of_the_path(api: Api) -> None:
    # Reads and writes of /api/backfills are separate routes (their guards differ).
    refused = await api.client.request("OPTIONS", "/api/backfills")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET, POST"
    assert (await api.client.delete("/api/pipelines")).headers["allow"] == "GET"


@pytest.mark.parametrize("api", EMBEDDED_ONLY, indirect=True)
async def test_a_version_beyond_the_largest_is_refused_not_a_server_error(api: Api) -> None:
    answer = await api.client.get("/api/datasets/raw/lineage", params={"version": 2**63})
    assert answer.status_code == 422, answer.text
    answer = await api.client.get("/api/events", params={"after": 2**63})
    assert answer.status_code == 422, answer.text
