"""The web UI of a Kafka deployment: a coordinator and a worker as processes on a real broker,
`eventflow server` serving the UI from a history store it projects from the topics, and the
events page in headless Chromium following the store as the projector takes events in."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, expect

from ..browser import act, browser, chromium, context, live, playwright, screenshot, sign_in
from ..e2e.test_cli import free_port
from ..kafka_broker import Broker
from .cluster import Cluster, wait_for
from .test_kafka_operator_cli import OPERATED

__all__ = ["browser", "chromium", "context", "playwright"]

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

D = "2026-11-20"
TOKEN = "kafka-ui-token-0123456789"


@pytest.fixture(autouse=True)
def no_leaked_tasks() -> None:
    """No asyncio loop of this test's own: Playwright's sync API runs one (as in tests/ui)."""


@dataclass
class Server:
    url: str
    log: Path

    def emit(self, dataset: str, partition: str, **metadata: Any) -> str:
        """Announces a version through the API; its event id."""
        done = httpx.post(
            f"{self.url}/api/datasets/{dataset}/events",
            json={"partition": partition, "metadata": metadata},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        assert done.status_code == 202, done.text
        event_id: str = done.json()["id"]
        return event_id

    def runs(self, pipeline: str) -> list[dict[str, Any]]:
        found = httpx.get(
            f"{self.url}/api/runs",
            params={"pipeline": pipeline},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        found.raise_for_status()
        items: list[dict[str, Any]] = found.json()["items"]
        return items

    def answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/ui/login", timeout=5).status_code == 200
        except httpx.TransportError:
            return False


@pytest.fixture
def server(kafka: Broker, tmp_path: Path) -> Iterator[Server]:
    """A coordinator, a worker and `eventflow server` of the operated App, history in tmp."""
    # Topics are made on a loop of their own: Playwright's may already run in this thread.
    with ThreadPoolExecutor(1) as thread:
        cluster = thread.submit(Cluster, kafka.bootstrap, OPERATED, tmp_path).result()
    port = free_port()
    cluster.env.update(EVENTFLOW_HOME=str(tmp_path / "home"), EVENTFLOW_API_TOKEN=TOKEN)
    coordinator, worker = cluster.start("coordinator"), cluster.start("worker")
    found = Server(f"http://127.0.0.1:{port}", tmp_path / "server.log")
    with open(found.log, "ab") as log:
        args = ["server", "--app", str(OPERATED), "--port", str(port)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "eventflow", *args], env=cluster.env, stdout=log, stderr=log
        )
    try:
        cluster.ready(coordinator, worker)
        wait_for(lambda: found.answers() or proc.poll() is not None, 60, "the server")
        assert proc.poll() is None, found.log.read_text()
        yield found
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        cluster.stop()
    assert proc.returncode == 0, found.log.read_text()


def finished(server: Server, count: int) -> None:
    def done() -> bool:
        found = server.runs("ops")
        return len(found) == count and all(r["status"] != "running" for r in found)

    wait_for(done, 90, f"{count} finished runs of ops", explain=lambda: server.log.read_text())


def test_the_events_page_of_eventflow_server_loads_and_follows_the_topics(
    server: Server, context: BrowserContext
) -> None:
    first = server.emit("raw", D, rows=3)
    finished(server, 1)
    page = sign_in(context, server.url, TOKEN)
    page.goto(f"{server.url}/ui/events")
    rows = page.locator("tr.event")
    assert page.locator(f"#event-{first}").count() == 1
    for kind in ("eventflow.task.requested", "eventflow.task.succeeded"):
        assert page.locator(f"tr.event[data-type='{kind}']").count() == 1  # tidy
    assert page.locator("tr.event[data-type='eventflow.pipeline.run.succeeded']").count() == 1
    shown = rows.count()

    live(page)
    second = server.emit("raw", D, rows=4)
    # the projector's commit reaches the page through the stream, with no reload
    page.wait_for_selector(f"#event-{second}", state="attached")
    expect(page.locator("tr.event[data-type='eventflow.pipeline.run.succeeded']")).to_have_count(2)
    assert rows.count() > shown
    screenshot(page, "events-kafka")


def test_the_pipeline_why_and_run_pages_and_an_action_on_kafka(
    server: Server, context: BrowserContext
) -> None:
    """The pages that read the coordinators' state (pause, explain) through the replica of
    `eventflow server`, and an action the coordinator answers."""
    server.emit("raw", D, rows=3)
    finished(server, 1)
    page = sign_in(context, server.url, TOKEN)
    page.goto(f"{server.url}/ui/pipelines/ops")
    tidy = page.locator(f"#grid tr[data-partition='{D}'] td[data-task='tidy']")
    expect(tidy).to_have_attribute("data-status", "succeeded")
    live(page)
    page.click("#pause")
    act(page, TOKEN, "broker upgrade")
    expect(page.locator("#notice.done")).to_contain_text("applied")
    expect(page.locator("#paused")).to_contain_text("broker upgrade")

    page.goto(f"{server.url}/ui/pipelines/ops/tasks/join/why?partition={D}")
    expect(page.locator('#checklist li[data-check="paused"]')).to_have_attribute("data-ok", "false")

    [run] = server.runs("ops")
    page.goto(f"{server.url}/ui/runs/{run['run_id']}")
    expect(page.locator(".gantt-row")).to_have_count(1)


def test_a_backfill_from_the_pipeline_page_on_kafka(
    server: Server, context: BrowserContext
) -> None:
    """The dry run (every partition read in through the replica of `eventflow server`), then the
    backfill the coordinator decides, its skips shown on the pipeline's page as they arrive."""
    server.emit("raw", D, rows=3)
    finished(server, 1)
    page = sign_in(context, server.url, TOKEN)
    page.goto(f"{server.url}/ui/pipelines/ops")
    live(page)
    page.fill("#bf-from", D)
    page.fill("#bf-to", "2026-11-21")
    page.click("#bf-dry-run")
    act(page, TOKEN, "catch up")
    verdicts = page.locator("#dry-run-plan tr.verdict")
    expect(verdicts).to_have_count(2)
    assert verdicts.evaluate_all("rs => rs.map(r => [r.dataset.partition, r.dataset.run])") == [
        [D, "false"],
        ["2026-11-21", "false"],
    ]
    page.click("#bf-start")
    act(page, TOKEN, "catch up")
    bid = page.locator("#started-backfill").inner_text()
    card = page.locator(f'section.backfill[data-backfill="{bid}"]')
    expect(card).to_have_attribute("data-status", "done", timeout=30_000)
    expect(card.locator(".bf-progress")).to_have_attribute("data-skipped", "2")
    card.locator("details.bf-skips summary").click()
    expect(card.locator('.bf-skips li[data-partition="2026-11-21"] .why')).to_have_text(
        "input 'raw' was never produced for '2026-11-21'"
    )
