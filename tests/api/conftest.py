"""The API over HTTP against a real server, in front of a real runtime."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

import eventflow as ef
from eventflow.api import ApiServer
from eventflow.core import Engine
from eventflow.operations import Operations
from eventflow.operations.embedded import EmbeddedOperations
from eventflow.operations.kafka import KafkaOperations
from eventflow.testing import EmbeddedHarness, Harness, KafkaHarness

from ..kafka_broker import Broker

TOKEN = "api-token-for-tests-0123456789"


def app() -> ef.App:
    raw, clean, report = (ef.Dataset(n, ef.daily()) for n in ("raw", "clean", "report"))
    tick = ef.Dataset("tick")
    ingest = ef.Pipeline("ingest", description="raw to clean")
    publish = ef.Pipeline("publish", max_active_runs=2)
    publish.schedule(tick, "0 6 * * *")

    @ingest.task(inputs=[raw], outputs=[clean], retries=1)
    def tidy(ctx: ef.TaskContext) -> None:
        ctx.emit(clean)

    @ingest.check(clean)
    def not_empty(ctx: ef.CheckContext) -> bool:
        return True

    @publish.task(inputs=[clean, tick], outputs=[report], trigger="any")
    def summarize(ctx: ef.TaskContext) -> None:
        ctx.emit(report)

    return ef.App([ingest, publish])


@dataclass
class Api:
    """A client of the API of a runtime started for the test, with the token."""

    client: httpx.AsyncClient
    harness: Harness
    server: ApiServer

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def engine(self) -> Engine:
        """The engine that decides (the coordinator's, on Kafka)."""
        if isinstance(self.harness, EmbeddedHarness):
            return self.harness.runtime.engine
        assert isinstance(self.harness, KafkaHarness)
        return self.harness.coordinator.engine


@pytest.fixture
def api_app() -> ef.App:
    """The App the API serves; a test module may override it."""
    return app()


KAFKA = pytest.mark.kafka


@pytest.fixture(
    params=[
        pytest.param(("embedded", "sqlite"), id="embedded"),
        pytest.param(("kafka", "sqlite"), id="kafka", marks=KAFKA),
    ]
)
async def api(
    request: pytest.FixtureRequest, tmp_path: Path, api_app: ef.App
) -> AsyncIterator[Api]:
    """The API of a runtime (embedded or Kafka) with its history in SQLite or PostgreSQL, as
    `request.param` says."""
    runtime, store = request.param
    settings: dict[str, Any] = {"api_port": 0, "api_token": SecretStr(TOKEN)}
    if store == "postgresql":
        settings["history_url"] = request.getfixturevalue("postgres_url")
    harness: Harness
    ops: Operations
    if runtime == "kafka":
        broker: Broker = request.getfixturevalue("kafka")
        # The history file too goes to the test's folder, not to ./.eventflow.
        harness = KafkaHarness(api_app, broker.bootstrap, home=tmp_path / "home", **settings)
        ops = KafkaOperations(harness.app, harness.settings)
    else:
        harness = EmbeddedHarness(api_app, tmp_path / "home", **settings)
        ops = EmbeddedOperations(harness.runtime)
    server = ApiServer(ops, token=TOKEN, ui=True)
    async with harness, ops, server:
        await asyncio.wait_for(ops.ready.wait(), 60)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:
            yield Api(client, harness, server)


#: For what the API checks before any runtime is involved (tokens, bounds, definitions).
EMBEDDED_ONLY = [pytest.param(("embedded", "sqlite"), id="embedded")]

#: Every runtime on every history store, for the tests of history queries.
EVERYWHERE = [
    pytest.param(("embedded", "sqlite"), id="embedded-sqlite"),
    pytest.param(("embedded", "postgresql"), id="embedded-postgresql"),
    pytest.param(("kafka", "sqlite"), id="kafka-sqlite", marks=KAFKA),
    pytest.param(("kafka", "postgresql"), id="kafka-postgresql", marks=KAFKA),
]
