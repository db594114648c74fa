"""The web UI on a real `eventflow dev --ui` process, driven by Playwright in headless Chromium
(the browser fixtures of `tests/browser.py`)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from playwright.sync_api import BrowserContext, Page

from ..browser import browser, chromium, context, live, playwright, screenshot, sign_in
from ..e2e.test_cli import env, wait_for

__all__ = ["browser", "chromium", "context", "live", "playwright", "screenshot"]

SHOP = Path(__file__).parent / "shop.py"
TOKEN = "ui-test-token-0123456789"


@pytest.fixture(autouse=True)
def no_leaked_tasks() -> None:
    """These tests run no asyncio loop of their own (Playwright's sync API runs one, which the
    suite's per-test check would collide with); the server is another process."""


@dataclass
class Shop:
    """A running `eventflow dev --ui` of the shop App."""

    url: str
    token: str
    home: Path
    tmp: Path
    proc: subprocess.Popen[str]

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(
            f"{self.url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )

    def get(self, path: str, **params: Any) -> Any:
        found = httpx.get(
            f"{self.url}{path}",
            params=params,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        found.raise_for_status()
        return found.json()

    def emit(self, dataset: str, partition: str = "", **metadata: Any) -> str:
        """Announces a version through the API; its event id."""
        done = self.post(
            f"/api/datasets/{dataset}/events", {"partition": partition, "metadata": metadata}
        )
        assert done.status_code == 202, done.text
        event_id: str = done.json()["id"]
        return event_id

    def settled(self, pipeline: str, count: int) -> list[dict[str, Any]]:
        """Waits until `pipeline` has `count` runs, none running; newest first."""

        def done() -> bool:
            found = self.get("/api/runs", pipeline=pipeline)["items"]
            return len(found) >= count and all(r["status"] != "running" for r in found)

        wait_for(done, timeout=60)
        runs: list[dict[str, Any]] = self.get("/api/runs", pipeline=pipeline)["items"]
        return runs


def start_shop(tmp: Path, *, open_reads: bool = False, app: Path = SHOP) -> Iterator[Shop]:
    """`eventflow dev --ui` of `app` (the shop App unless told), stopped on exit."""
    home = tmp / "home"
    environment = {**env(home), "EVENTFLOW_API_TOKEN": TOKEN}
    if open_reads:
        environment["EVENTFLOW_API_OPEN_READS"] = "true"
    proc = subprocess.Popen(
        [sys.executable, "-m", "eventflow", "dev", str(app), "--ui"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: _api(home) is not None or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, proc.communicate()
        url = str((_api(home) or {})["url"])
        yield Shop(url=url, token=TOKEN, home=home, tmp=tmp, proc=proc)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err


def _api(home: Path) -> dict[str, Any] | None:
    """What `api.json` says once it is whole (it may be seen while being written)."""
    try:
        found: dict[str, Any] = orjson.loads((home / "api.json").read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None
    return found


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """A dev instance of the shop App whose reads need the token."""
    yield from start_shop(tmp_path_factory.mktemp("shop"))


@pytest.fixture
def page(context: BrowserContext, shop: Shop) -> Page:
    """A page signed in to `shop` (the sign-in form, with the token)."""
    return sign_in(context, shop.url, shop.token)
