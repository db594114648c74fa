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


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    settings: dict[str, Any] = {"api_port": 0, "api_token": SecretStr(TOKEN)}
    harness: Harness
    ops: Operations
    if request.param == "kafka":
        broker: Broker = request.getfixturevalue("kafka")
        harness = KafkaHarness(app(), broker.bootstrap, **settings)
        ops = KafkaOperations(harness.app, harness.settings)
    else:
        harness = EmbeddedHarness(app(), tmp_path / "home", **settings)
        ops = EmbeddedOperations(harness.runtime)
    server = ApiServer(ops, token=TOKEN)
    async with harness, ops, server:
        await asyncio.wait_for(ops.ready.wait(), 60)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:
            yield Api(client, harness, server)
