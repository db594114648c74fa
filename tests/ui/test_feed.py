"""The events and dead-letter views on real runs: filters, each event's JSON, older pages, a live
event after an emit, and a dead letter with its reason after a malformed input."""

from __future__ import annotations

import orjson
import pytest
from playwright.sync_api import Page, Route, expect

from ..e2e.test_cli import cli, wait_for
from .conftest import Shop, live, screenshot

pytestmark = pytest.mark.slow

D = "2026-11-20"


def event(page: Page, event_id: str) -> str:
    return f"[id='event-{event_id}']"


def shown_types(page: Page) -> set[str]:
    return set(page.locator("tr.event").evaluate_all("rs => rs.map(r => r.dataset.type)"))


@pytest.fixture(scope="module")
def ran(shop: Shop) -> str:
    """One run of the shop pipeline; the id of its orders' announcement."""
    shop.emit("customers", D, rows=2)
    orders = shop.emit("orders", D, rows=5)
    shop.settled("shop", 1)
    return orders


def test_the_feed_filters_by_type_pipeline_and_dataset_and_opens_each_event(
    page: Page, shop: Shop, ran: str
) -> None:
    page.goto(f"{shop.url}/ui/events")
    assert {"eventflow.task.succeeded", "eventflow.pipeline.run.succeeded"} <= shown_types(page)

    page.select_option("#filter-type", "eventflow.task.succeeded")
    page.click("#event-filters button")
    page.wait_for_url("**/ui/events?type=eventflow.task.succeeded*")
    assert shown_types(page) == {"eventflow.task.succeeded"}
    page.goto(f"{shop.url}/ui/events?type=eventflow.task.succeeded&pipeline=shop")
    assert page.locator("tr.event").count() == 2  # tidy and summarise

    page.goto(f"{shop.url}/ui/events")
    page.select_option("#filter-dataset", "orders")
    page.click("#event-filters button")
    page.wait_for_url("**dataset=orders*")
    assert page.locator(event(page, ran)).count() == 1
    # the report is produced downstream: none of its events names orders
    assert page.locator("tr.event", has_text="report").count() == 0

    page.goto(f"{shop.url}/ui/events?pipeline=held")
    assert page.inner_text("#no-events") == "No event matches these filters yet."

    page.goto(f"{shop.url}/ui/events?pipeline=shop")
    assert "eventflow.pipeline.run.succeeded" in shown_types(page)
    assert page.locator(event(page, ran)).count() == 0  # an announcement names no pipeline

    page.goto(f"{shop.url}/ui/events")
    found = page.locator(event(page, ran))
    body = found.locator("pre")
    assert not body.is_visible()
    found.locator("summary").click()
    expect(body).to_be_visible()
    shown = orjson.loads(body.inner_text())
    assert shown["id"] == ran and shown["type"] == "eventflow.dataset.produced"
    assert shown["data"]["dataset"] == "orders" and shown["data"]["metadata"] == {"rows": 5}


def test_a_new_event_arrives_live_and_keeps_an_open_event_open(
    page: Page, shop: Shop, ran: str
) -> None:
    page.goto(f"{shop.url}/ui/events")
    live(page)  # its first refresh redraws the page: opened before it, an event would close
    page.locator(event(page, ran)).locator("summary").click()
    arrived = shop.emit("customers", "2026-11-21", rows=1)
    page.wait_for_selector(event(page, arrived), state="attached")
    assert page.locator(event(page, ran)).get_attribute("open") is not None
    screenshot(page, "events")


def test_the_older_page_link_goes_back_past_the_newest_hundred(page: Page, shop: Shop) -> None:
    for day in range(1, 29):
        for month in ("01", "02", "03", "04"):
            last = shop.emit("customers", f"2025-{month}-{day:02d}")

    def all_in_history() -> bool:
        found = shop.get("/api/events", dataset="customers", limit=1000)
        return any(e["id"] == last for e in found)

    # Each announcement's step commits the decisions it caused with it, so once the last is in
    # the history nothing more arrives, and the page's live refresh redraws nothing under us.
    wait_for(all_in_history, timeout=60)
    page.goto(f"{shop.url}/ui/events")
    live(page)
    newest = page.locator("tr.event td.mono").first.inner_text()
    oldest_shown = int(page.locator("tr.event").last.locator("td.mono").first.inner_text())
    assert page.locator("tr.event").count() == 100
    page.click("#older")
    page.wait_for_url("**before=*")
    first_older = int(page.locator("tr.event").first.locator("td.mono").first.inner_text())
    assert first_older < oldest_shown < int(newest)
    # an older page stays as it is: it opens no stream
    assert page.locator("body[data-live]").count() == 0


def test_a_malformed_input_appears_as_a_dead_letter_with_its_reason(page: Page, shop: Shop) -> None:
    page.goto(f"{shop.url}/ui/deadletters")
    before = page.locator("tr.deadletter").count()
    live(page)
    refused = cli(shop.home, "emit", "--raw", "-", stdin=b'{"specversion": "1.0", "id": 7}')
    assert refused.returncode == 1, refused.stdout + refused.stderr
    reason = refused.stderr.split("dead-lettered: ", 1)[1].strip()
    expect(page.locator("tr.deadletter")).to_have_count(before + 1)
    newest = page.locator("tr.deadletter").first
    assert newest.locator(".reason").inner_text() == reason
    newest.locator("summary").click()
    expect(newest.locator("pre")).to_contain_text('"specversion": "1.0"')
    screenshot(page, "deadletters")


def test_what_arrives_before_the_page_follows_the_stream_is_shown(page: Page, shop: Shop) -> None:
    """An event the history takes in between a page's rendering and its stream opening is
    not lost: the page reads itself again once the stream follows the history."""
    emitted: list[str] = []

    def late(route: Route) -> None:
        emitted.append(shop.emit("customers", "2026-11-27", rows=1))
        wait_for(stored)
        route.continue_()

    def stored() -> bool:
        found = shop.get("/api/events", type="eventflow.dataset.produced", limit=1000)
        return any(e["id"] == emitted[0] for e in found)

    page.route("**/ui/stream*", late)
    page.goto(f"{shop.url}/ui/events")
    live(page)
    expect(page.locator(event(page, emitted[0]))).to_have_count(1)
