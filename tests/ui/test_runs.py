"""The run page on real runs of the shop App in headless Chromium: the timeline, logs, inputs,
the skipped branch and the failure reason; re-running a task with the token, the new attempt
arriving live; cancelling the held pipeline's running run; a 404 for an unknown run."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from ..browser import act
from ..e2e.test_cli import wait_for
from .conftest import Shop, live, screenshot

pytestmark = pytest.mark.slow

SOLD, BROKEN = "2026-11-20", "2026-11-21"


def run_of(shop: Shop, pipeline: str, partition: str, status: str | None = None) -> dict[str, Any]:
    """The newest run of `pipeline` in `partition` (with `status`), once there is one."""
    found: list[dict[str, Any]] = []

    def there() -> bool:
        params = {"pipeline": pipeline, "partition": partition}
        found[:] = shop.get("/api/runs", **params)["items"]
        return bool(found) and (status is None or found[0]["status"] == status)

    wait_for(there, timeout=60)
    return found[0]


def test_the_run_page_shows_the_timeline_logs_inputs_and_the_skipped_branch(
    page: Page, shop: Shop
) -> None:
    shop.emit("orders", SOLD, rows=5)
    shop.emit("customers", SOLD)
    run = run_of(shop, "shop", SOLD, "succeeded")
    page.goto(f"{shop.url}/ui/runs/{run['run_id']}")
    expect(page.locator("#run-status")).to_have_text("succeeded")
    rows = page.locator("#gantt .gantt-row")
    expect(rows).to_have_count(2)
    assert rows.evaluate_all("rs => rs.map(r => [r.dataset.task, r.dataset.status])") == [
        ["tidy", "succeeded"],
        ["summarise", "succeeded"],
    ]
    # bars are placed in time: summarise starts after tidy ended. Both are read at once, once
    # laid out: the live refresh may redraw the page between two reads.
    bars = "[...document.querySelectorAll('#gantt .bar')].map(b => b.getBoundingClientRect())"
    page.wait_for_function(f"{bars}.filter(b => b.width > 0).length === 2")
    tidy, summarise = page.evaluate(f"{bars}.map(b => ({{x: b.x, width: b.width}}))")
    assert summarise["x"] >= tidy["x"] + tidy["width"] - 1
    assert page.locator("#gantt .tick").count() >= 2

    attempt = page.locator('section.attempt[data-task="tidy"]')
    inputs = attempt.locator(".inputs a")
    assert inputs.all_inner_texts() == ["orders", "customers"]
    href = inputs.first.get_attribute("href") or ""
    assert href.startswith(f"/ui/datasets/orders?partition={SOLD}&version=")
    expect(attempt.locator(".outputs a")).to_have_text("orders.clean")
    log = attempt.locator("details.log")
    expect(log.locator("pre")).not_to_be_visible()
    log.locator("summary").click()
    expect(log.locator("pre")).to_be_visible()
    expect(log.locator(".line")).to_contain_text(f"INFO tidying 5 rows of {SOLD}")
    expect(page.locator('#never-ran li[data-task="refund"]')).to_have_attribute(
        "data-status", "skipped"
    )
    expect(page.locator("#cancel")).to_have_count(0)
    screenshot(page, "run")


def test_the_run_page_says_why_a_run_failed(page: Page, shop: Shop) -> None:
    shop.emit("orders", BROKEN, rows=5, fail=True)
    shop.emit("customers", BROKEN)
    run = run_of(shop, "shop", BROKEN, "failed")
    page.goto(f"{shop.url}/ui/runs/{run['run_id']}")
    expect(page.locator("#run-status")).to_have_text("failed")
    expect(page.locator("#reason")).to_contain_text(
        f"task 'tidy' failed: RuntimeError: orders of {BROKEN}"
    )
    expect(page.locator('#gantt .gantt-row[data-task="tidy"]')).to_have_attribute(
        "data-status", "failed"
    )
    expect(page.locator('section.attempt[data-task="tidy"] .attempt-error')).to_contain_text(
        "unreadable"
    )
    expect(page.locator('#never-ran li[data-task="summarise"]')).to_have_attribute(
        "data-status", "upstream_failed"
    )
    page.locator('section.attempt[data-task="tidy"] a.why').click()
    expect(page.locator("#why-partition")).to_have_value(BROKEN)


def test_a_rerun_of_a_task_needs_the_token_and_its_attempt_arrives_live(
    page: Page, shop: Shop
) -> None:
    run = run_of(shop, "shop", SOLD, "succeeded")
    page.goto(f"{shop.url}/ui/runs/{run['run_id']}")
    live(page)
    page.locator('section.attempt[data-task="summarise"] button.rerun-task').click()
    act(page, "not-the-token-at-all", "report looked short")
    expect(page.locator("#notice.refused")).to_contain_text("Refused (403)")
    act(page, shop.token, "report looked short")
    expect(page.locator("#notice.done")).to_contain_text("applied")
    later = page.locator("#later tr.run").first
    expect(later).to_be_visible()
    expect(later).to_contain_text("rerun by web UI: report looked short")
    later.locator("a").click()
    attempt = page.locator('section.attempt[data-task="summarise"]')
    expect(attempt).to_have_count(1)
    expect(attempt.locator(".inputs a")).to_have_text("orders.clean")
    expect(page.locator('#gantt .gantt-row[data-task="tidy"]')).to_have_count(0)


def test_cancel_stops_the_held_pipelines_running_run(page: Page, shop: Shop) -> None:
    release = shop.tmp / "release-cancelled"
    shop.emit("gate", SOLD, release=str(release))
    try:
        run = run_of(shop, "held", SOLD, "running")
        wait_for(
            lambda: shop.get("/api/pipelines/held/tasks/hold/attempts")[0]["status"] == "running"
        )
        page.goto(f"{shop.url}/ui/runs/{run['run_id']}")
        expect(page.locator('#gantt .gantt-row[data-task="hold"]')).to_have_attribute(
            "data-status", "running"
        )
        expect(page.locator("#rerun-run")).to_have_count(0)
        live(page)
        page.click("#cancel")
        act(page, shop.token, "wrong gate")
        expect(page.locator("#run-status")).to_have_text("failed")
        expect(page.locator("#reason")).to_contain_text("cancelled by web UI: wrong gate")
        expect(page.locator("#cancel")).to_have_count(0)
        assert run_of(shop, "held", SOLD)["status"] == "failed"
    finally:
        release.touch()  # the blocking body runs on in its thread until it sees this


def test_an_unknown_run_is_a_404_page(page: Page, shop: Shop) -> None:
    answer = page.goto(f"{shop.url}/ui/runs/shop:1999-01-01:1")
    assert answer is not None and answer.status == 404
    expect(page.locator("#missing")).to_have_text("No pipeline run 'shop:1999-01-01:1'.")
