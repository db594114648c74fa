"""Backfills in the web UI, on a dev instance of a daily schedule's pipeline in headless
Chromium: progress arriving live up to done, with the runs and the skipped partitions; the
dry run's verdicts; starting one and cancelling one with the token; a wrong token and a range
the API refuses."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from ..browser import act
from ..e2e.test_cli import wait_for
from .conftest import Shop, live, screenshot, start_shop

pytestmark = pytest.mark.slow

DAYS = Path(__file__).parent / "days.py"


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """A dev instance of a copy of `days.py`, whose gate files lie beside the copy."""
    folder = tmp_path_factory.mktemp("days")
    shutil.copy(DAYS, folder / "days.py")
    yield from start_shop(folder, app=folder / "days.py")


@pytest.fixture
def hold(days: Shop) -> Iterator[Path]:
    """While this file exists, `load` bodies wait; removed at the end whatever happened."""
    found = days.tmp / "hold"
    found.touch()
    try:
        yield found
    finally:
        found.unlink(missing_ok=True)


def start(shop: Shop, first: str, last: str, **options: Any) -> str:
    """A backfill of `days` started through the API; its id."""
    body = {"pipeline": "days", "start": first, "end": last, "reason": "restated", **options}
    done = shop.post("/api/backfills", {"operator": "tester", **body})
    assert done.status_code == 200, done.text
    bid: str = done.json()["id"]
    return bid


def progress(page: Page, where: str) -> dict[str, str]:
    found = page.locator(f"{where} .bf-progress").first
    counts = ("planned", "started", "succeeded", "failed", "skipped")
    return {k: found.get_attribute(f"data-{k}") or "" for k in counts}


def test_progress_arrives_live_up_to_done_with_the_runs_and_the_skipped_partitions(
    page: Page, days: Shop, hold: Path
) -> None:
    page.goto(f"{days.url}/ui/pipelines/days")
    expect(page.locator("#no-backfills")).to_be_visible()
    live(page)
    bid = start(days, "2026-10-01", "2026-10-06", max_active=2)
    card = page.locator(f'section.backfill[data-backfill="{bid}"]')
    expect(card).to_have_attribute("data-status", "running", timeout=1_000)  # pushed, not polled
    bar = card.locator(".bf-progress")
    expect(bar).to_have_attribute("data-started", "2")  # max_active, while the bodies hold
    assert progress(page, f'section.backfill[data-backfill="{bid}"]')["planned"] == "6"
    expect(card.locator(".bf-running a")).to_have_count(2)
    expect(card).to_contain_text("restated")
    expect(card.locator(".bf-mode")).to_have_text("missing")
    hold.unlink()
    expect(card).to_have_attribute("data-status", "done")
    expect(bar).to_have_attribute("data-succeeded", "6")
    assert page.locator("main").get_attribute("data-refreshes") not in (None, "0")

    # a second backfill over those days and two more: the six are skipped, with why
    again = start(days, "2026-09-29", "2026-10-06")
    page.goto(f"{days.url}/ui/backfills/{again}")
    expect(page.locator("#backfill-status")).to_have_text("done")
    assert progress(page, "#backfill-progress") == {
        "planned": "8",
        "started": "2",
        "succeeded": "2",
        "failed": "0",
        "skipped": "6",
    }
    skips = page.locator("details.bf-skips")
    skips.locator("summary").click()
    expect(skips.locator("li")).to_have_count(6)
    expect(skips.locator('li[data-partition="2026-10-01"] .why')).to_have_text(
        "succeeded on the same input versions"
    )
    runs = page.locator("#runs tr.run")
    expect(runs).to_have_count(2)
    assert sorted(runs.evaluate_all("rs => rs.map(r => r.dataset.partition)")) == [
        "2026-09-29",
        "2026-09-30",
    ]
    screenshot(page, "backfill")
    runs.first.locator("a").click()
    expect(page.locator("#reason")).to_contain_text(f"backfill {again} by tester: restated")

    page.goto(f"{days.url}/ui/backfills")
    rows = page.locator("#backfills tr.backfill")
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.backfill)") == [again, bid]
    expect(rows.first.locator(".status")).to_have_text("done")
    page.goto(f"{days.url}/ui/backfills/bf-none")
    expect(page.locator("#missing")).to_have_text("No backfill 'bf-none'.")


def test_the_dry_run_shows_each_verdict_and_starts_nothing_then_start_runs_it(
    page: Page, days: Shop
) -> None:
    start(days, "2026-08-02", "2026-08-02")
    wait_done(days)
    before = len(days.get("/api/backfills"))
    page.goto(f"{days.url}/ui/pipelines/days")
    live(page)
    page.fill("#bf-from", "2026-08-01")
    page.fill("#bf-to", "2026-08-03")
    page.check("#bf-reverse")
    page.click("#bf-dry-run")
    act(page, days.token, "catch up August")
    verdicts = page.locator("#dry-run-plan tr.verdict")
    expect(verdicts).to_have_count(3)
    assert verdicts.evaluate_all("rs => rs.map(r => [r.dataset.partition, r.dataset.run])") == [
        ["2026-08-03", "true"],  # newest first
        ["2026-08-02", "false"],
        ["2026-08-01", "true"],
    ]
    expect(verdicts.nth(1).locator(".why")).to_have_text("succeeded on the same input versions")
    expect(verdicts.nth(0).locator(".why")).to_contain_text("missing: load on clock.daily@")
    expect(page.locator("#notice")).to_have_text(
        "Dry run: 2 runs would start, 1 partition skipped."
    )
    assert len(days.get("/api/backfills")) == before
    screenshot(page, "backfill-dry-run")
    # a live refresh redraws the page: the verdicts and what was typed stay
    other = start(days, "2026-05-01", "2026-05-01")
    expect(page.locator(f'section.backfill[data-backfill="{other}"]')).to_be_visible()
    expect(verdicts).to_have_count(3)
    expect(page.locator("#bf-from")).to_have_value("2026-08-01")
    expect(page.locator("#bf-reverse")).to_be_checked()

    page.click("#bf-start")
    act(page, days.token, "catch up August")
    expect(page.locator("#notice.done")).to_contain_text("of days: applied")
    expect(page.locator("#dry-run")).to_be_hidden()
    bid = page.locator("#started-backfill").inner_text()
    card = page.locator(f'section.backfill[data-backfill="{bid}"]')
    expect(card).to_have_attribute("data-status", "done")
    expect(card.locator(".bf-progress")).to_have_attribute("data-succeeded", "2")
    found = days.get(f"/api/backfills/{bid}")
    assert (found["reverse"], found["reason"], found["operator"]) == (
        True,
        "catch up August",
        "web UI",
    )
    page.click("#started-backfill")
    expect(page.locator("#backfill-status")).to_have_text("done")


def test_cancel_stops_taking_partitions_and_the_running_one_finishes(
    page: Page, days: Shop, hold: Path
) -> None:
    bid = start(days, "2026-07-01", "2026-07-05", max_active=1)
    page.goto(f"{days.url}/ui/backfills/{bid}")
    expect(page.locator(".bf-part .bf-running a")).to_have_count(1)
    live(page)
    page.click("#cancel-backfill")
    act(page, days.token, "wrong days")
    expect(page.locator("#notice.done")).to_contain_text("applied")
    part = page.locator('.bf-part[data-pipeline="days"]')
    expect(part).to_have_attribute("data-status", "cancelled")
    expect(page.locator("#cancel-backfill")).to_have_count(0)
    # the run in progress finishes, and is the only one
    hold.unlink()
    expect(page.locator("#backfill-status")).to_have_text("cancelled")
    assert progress(page, "#backfill-progress") == {
        "planned": "5",
        "started": "1",
        "succeeded": "1",
        "failed": "0",
        "skipped": "0",
    }
    expect(page.locator("#runs tr.run")).to_have_count(1)


def test_a_wrong_token_is_asked_again_and_a_refused_range_says_why(page: Page, days: Shop) -> None:
    before = len(days.get("/api/backfills"))
    page.goto(f"{days.url}/ui/pipelines/days")
    live(page)  # the page re-reads itself once live: typing before that may go to a field replaced
    page.fill("#bf-from", "2026-06-10")
    page.fill("#bf-to", "2026-06-01")
    page.click("#bf-start")
    act(page, "not-the-token-at-all", "June")
    expect(page.locator("#notice.refused")).to_contain_text("Refused (403)")
    expect(page.locator("#token-refused")).to_be_visible()
    act(page, days.token, "June")
    expect(page.locator("#notice.refused")).to_contain_text(
        "refused (400): the range ends ('2026-06-01') before it starts ('2026-06-10')"
    )
    page.fill("#bf-to", "")
    page.click("#bf-dry-run")
    act(page, days.token, "June")
    expect(page.locator("#notice.refused")).to_contain_text("a range needs both")
    assert len(days.get("/api/backfills")) == before


def wait_done(shop: Shop) -> None:
    """Until no backfill runs."""
    wait_for(lambda: all(b["status"] != "running" for b in shop.get("/api/backfills")), 30)
