"""The pipelines index, a pipeline's partition x task grid and runs list, pause and resume with
the token, and "why (not)?", on real runs of the shop App in headless Chromium."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from ..browser import act
from .conftest import Shop, live, screenshot

pytestmark = pytest.mark.slow

SOLD, BROKEN, REFUNDED = "2026-11-20", "2026-11-21", "2026-11-22"


def day(shop: Shop, partition: str, **orders: object) -> None:
    """One day's orders and customers: a run of `shop` in that partition."""
    shop.emit("orders", partition, rows=5, **orders)
    shop.emit("customers", partition)


def cell(page: Page, partition: str, task: str) -> str:
    found = page.locator(f'#grid tr[data-partition="{partition}"] td[data-task="{task}"]')
    status = found.get_attribute("data-status")
    assert status is not None
    return status


def test_the_grid_shows_each_tasks_outcome_and_a_new_partition_arrives_live(
    page: Page, shop: Shop
) -> None:
    day(shop, SOLD)
    day(shop, BROKEN, fail=True)
    shop.settled("shop", 2)
    page.goto(f"{shop.url}/ui/pipelines/shop")
    assert page.locator("#grid thead th[data-task]").all_inner_texts() == [
        "tidy",
        "summarise",
        "refund",
    ]
    assert [cell(page, SOLD, t) for t in ("tidy", "summarise", "refund")] == [
        "succeeded",
        "succeeded",
        "skipped",
    ]
    assert [cell(page, BROKEN, t) for t in ("tidy", "summarise", "refund")] == [
        "failed",
        "upstream_failed",
        "upstream_failed",
    ]
    failed = page.locator(f'#grid tr[data-partition="{BROKEN}"] td[data-task="tidy"] a.status')
    assert "unreadable" in (failed.get_attribute("title") or "")
    failed.click()
    page.wait_for_url(f"{shop.url}/ui/runs/**")
    expect(page.locator("#reason")).to_contain_text("orders of 2026-11-21 are unreadable")

    page.goto(f"{shop.url}/ui/pipelines/shop")
    live(page)
    day(shop, REFUNDED, refunded=9)
    refund = page.locator(f'#grid tr[data-partition="{REFUNDED}"] td[data-task="refund"]')
    expect(refund).to_have_attribute("data-status", "succeeded")
    rows = page.locator("#grid tr.grid-row")
    assert rows.first.get_attribute("data-partition") == REFUNDED
    assert cell(page, REFUNDED, "summarise") == "succeeded"
    screenshot(page, "pipeline")

    page.goto(f"{shop.url}/ui/pipelines")
    row = page.locator('#pipelines tr[data-pipeline="shop"]')
    expect(row.locator("td.count")).to_contain_text("3")
    expect(row.locator("td.last .status")).to_have_text("succeeded")
    expect(page.locator('#pipelines tr[data-pipeline="held"] td.last')).to_have_text("never ran")


def test_runs_filter_by_status_and_partition_and_page_by_cursor(page: Page, shop: Shop) -> None:
    before = len(shop.get("/api/runs", pipeline="shop")["items"])  # the module's earlier tests'
    for n in range(1, 31):
        day(shop, f"2026-10-{n:02d}")
    day(shop, "2026-09-30", fail=True)
    runs = shop.settled("shop", before + 31)
    total = len(runs)

    page.goto(f"{shop.url}/ui/pipelines/shop")
    first = page.locator("#runs tr.run").evaluate_all("rows => rows.map(r => r.dataset.run)")
    assert len(first) == 25
    page.click("#runs-older")
    expect(page.locator("#runs-newest")).to_be_visible()
    rest = page.locator("#runs tr.run").evaluate_all("rows => rows.map(r => r.dataset.run)")
    assert first + rest == [r["run_id"] for r in runs] and len(first + rest) == total
    expect(page.locator("#runs-older")).to_have_count(0)

    page.select_option("#filter-status", "failed")
    page.click("#run-filters button")
    expect(page.locator("#filter-status")).to_have_value("failed")
    statuses = page.locator("#runs tr.run").evaluate_all("rows => rows.map(r => r.dataset.status)")
    assert statuses and set(statuses) == {"failed"}
    assert len(statuses) == sum(r["status"] == "failed" for r in runs)

    page.goto(f"{shop.url}/ui/pipelines/shop")
    live(page)  # its first refresh redraws the page, the form with it: typed after it
    page.fill("#filter-partition", "2026-10-07")
    page.click("#run-filters button")
    expect(page.locator("#runs tr.run")).to_have_count(1)
    assert page.locator("#runs tr.run td").nth(1).inner_text() == "2026-10-07"

    # the grid pages too: newest activity first, the older partitions a page further
    page.goto(f"{shop.url}/ui/pipelines/shop")
    newest = page.locator("#grid tr.grid-row").evaluate_all(
        "rows => rows.map(r => r.dataset.partition)"
    )
    assert newest[0] == "2026-09-30" and len(newest) == 30
    page.click("#grid-older")
    older = page.locator("#grid tr.grid-row").evaluate_all(
        "rows => rows.map(r => r.dataset.partition)"
    )
    assert older and not set(older) & set(newest)


def test_pause_is_refused_with_a_wrong_token_then_done_with_the_right_one_then_resume(
    page: Page, shop: Shop
) -> None:
    page.goto(f"{shop.url}/ui/pipelines/shop")
    page.click("#pause")
    act(page, "not-the-token-at-all", "warehouse move")
    expect(page.locator("#notice.refused")).to_contain_text("Refused (403)")
    expect(page.locator("#token-refused")).to_be_visible()
    act(page, shop.token, "warehouse move")
    expect(page.locator("#notice.done")).to_contain_text("applied")
    expect(page.locator("#paused")).to_contain_text("Paused by web UI")
    expect(page.locator("#paused")).to_contain_text("warehouse move")
    assert shop.get("/api/pipelines/shop")["paused"]["reason"] == "warehouse move"

    page.click("#resume")
    expect(page.locator("#token-input")).to_have_value("")  # asked again: the page keeps none
    act(page, shop.token, "warehouse is back")
    expect(page.locator("#pause")).to_be_visible()
    assert shop.get("/api/pipelines/shop")["paused"] is None


def test_why_says_what_a_waiting_task_waits_for_and_follows_its_inputs_live(
    page: Page, shop: Shop
) -> None:
    waiting = "2026-11-25"
    shop.emit("orders", waiting, rows=3)
    page.goto(f"{shop.url}/ui/pipelines/shop/tasks/tidy/why?partition={waiting}")
    expect(page.locator("#why-status")).to_have_text("waiting")
    expect(page.locator("#verdict")).to_have_text("waiting for customers")
    missing = page.locator('#checklist li[data-ok="false"]').first
    expect(missing.locator(".title")).to_have_text("input customers: nothing new")
    expect(missing.locator(".mark")).to_have_text("✗")
    assert page.locator("#checklist li .mark").first.inner_text() == "✓"
    screenshot(page, "why")

    live(page)
    shop.emit("customers", waiting)
    # tidy ran on both inputs: it now waits for newer ones
    expect(page.locator("#verdict")).to_have_text("waiting for a newer orders, a newer customers")
    expect(page.locator('#checklist li[data-check="attempt"] .title')).to_have_text(
        "last attempt succeeded"
    )

    page.goto(f"{shop.url}/ui/pipelines/shop/tasks/tidy/why")  # the partition it last ran in
    expect(page.locator("#why-partition")).to_have_value(waiting)
    live(page)
    page.fill("#why-partition", "not-a-day")
    page.click("#why-form button")
    expect(page.locator("#refused")).to_contain_text("not a daily key")
    page.goto(f"{shop.url}/ui/pipelines/shop/tasks/nothing/why")
    expect(page.locator("#missing")).to_have_text("Pipeline 'shop' has no task 'nothing'.")
