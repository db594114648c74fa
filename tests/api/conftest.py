"""The API over HTTP against a real server, in front of a real runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

import eventflow as ef
from eventflow.api import ApiServer
from eventflow.embedded import EmbeddedRuntime
from eventflow.operations.embedded import EmbeddedOperations

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
    client: httpx.AsyncClient
    runtime: EmbeddedRuntime
    server: ApiServer

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    settings = ef.Settings(home=tmp_path / "home", api_port=0, api_token=SecretStr(TOKEN))
    runtime = EmbeddedRuntime(app(), settings)
    ops = EmbeddedOperations(runtime)
    server = ApiServer(ops, token=TOKEN)
    async with runtime, ops, server:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:
            yield Api(client, runtime, server)
