"""The datasets index and a dataset's page on real runs of the shop App: versions with their
producer run and metadata, lineage followed up and down by clicking, check history, freshness
with its reason, a live update after an emit, and the page of an unknown dataset."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Page

from eventflow.api.auth import read_pass

from .conftest import Shop, live, screenshot

pytestmark = pytest.mark.slow

DAY = "2026-11-21"


@pytest.fixture(scope="module")
def ran(shop: Shop) -> Shop:
    """One day of orders tidied (its check passed) and summarised into a report."""
    shop.emit("orders", DAY, rows=5)
    shop.emit("customers", DAY)
    shop.settled("shop", 1)
    return shop


def version_of(shop: Shop, dataset: str) -> int:
    found: int = shop.get(f"/api/datasets/{dataset}", partition=DAY)["versions"][0]["version"]
    return found


def test_the_index_shows_each_dataset_with_its_state(page: Page, ran: Shop) -> None:
    page.goto(f"{ran.url}/ui/datasets")
    rows = page.locator("#datasets tr.dataset")
    states = {
        str(rows.nth(i).get_attribute("data-name")): rows.nth(i).get_attribute("data-state")
        for i in range(rows.count())
    }
    assert states["orders"] == "fresh" and states["report"] == "fresh"
    assert states["refunds"] == "never" and states["gate"] == "never"
    assert sorted(states) == sorted(
        d["id"][8:] for d in ran.get("/api/graph")["nodes"] if d["kind"] == "dataset"
    )
    orders = page.locator('#datasets tr[data-name="orders"]')
    assert str(version_of(ran, "orders")) in orders.inner_text()
    assert "orders exported by the shop" in orders.inner_text()
    page.click('#datasets tr[data-name="report"] a >> nth=0')
    page.wait_for_url(f"{ran.url}/ui/datasets/report")


def test_versions_checks_and_lineage_followed_up_and_down(page: Page, ran: Shop) -> None:
    clean = version_of(ran, "orders.clean")
    page.goto(f"{ran.url}/ui/datasets/orders.clean")
    assert page.get_attribute(f'#freshness tr[data-partition="{DAY}"]', "data-state") == "fresh"
    row = page.locator(f'#versions tr[data-version="{clean}"]')
    assert '"rows":5' in row.inner_text()
    run_id = ran.get("/api/runs", pipeline="shop")["items"][0]["run_id"]
    assert row.locator("a.run").get_attribute("href") == f"/ui/runs/{quote(run_id, safe='')}"
    assert "tidy #1" in row.locator("a.run").inner_text()
    [check] = page.locator("#check-history tr.check").all()
    assert check.get_attribute("data-passed") == "true" and "5 rows" in check.inner_text()

    up = page.locator("#lineage-up")
    assert "made by tidy #1" in up.inner_text()
    assert sorted(up.locator("a.version").evaluate_all("as => as.map(a => a.dataset.dataset)")) == [
        "customers",
        "orders",
        "orders.clean",
    ]
    down = page.locator("#lineage-down")
    assert "consumed by summarise #1" in down.inner_text()
    report = version_of(ran, "report")
    down.locator('a.version[data-dataset="report"]').click()  # down: what it was made into
    page.wait_for_url(f"{ran.url}/ui/datasets/report?partition={DAY}&version={report}")
    assert page.locator("#versions tr.chosen").get_attribute("data-version") == str(report)
    assert page.locator("#no-consumers").is_visible()
    page.locator('#lineage-up a.version[data-dataset="orders.clean"]').click()  # and back up
    page.wait_for_url(f"{ran.url}/ui/datasets/orders.clean?partition={DAY}&version={clean}")
    page.locator('#lineage-up a.version[data-dataset="orders"]').click()
    page.wait_for_url(f"{ran.url}/ui/datasets/orders?partition={DAY}&version=*")
    assert "announced from outside" in page.locator("#lineage-up").inner_text()
    assert "consumed by tidy #1" in page.locator("#lineage-down").inner_text()


def test_the_page_updates_live_and_says_why_a_dataset_is_stale(page: Page, ran: Shop) -> None:
    page.goto(f"{ran.url}/ui/datasets/orders.clean?partition={DAY}")
    live(page)
    ran.emit("orders", DAY, rows=0)  # a restatement: tidy runs again on it alone
    page.wait_for_selector('#check-history tr.check[data-passed="false"]')
    page.wait_for_selector(f'#freshness tr[data-partition="{DAY}"][data-state="failing"]')
    assert page.locator("#versions tr.version").count() == 2
    reason = page.locator(f'#freshness tr[data-partition="{DAY}"] .reason').inner_text()
    assert reason.startswith("check has_rows failed on orders.clean@") and "0 rows" in reason
    screenshot(page, "dataset")

    page.goto(f"{ran.url}/ui/datasets/report")
    stale = page.locator(f'#freshness tr[data-partition="{DAY}"]')
    assert stale.get_attribute("data-state") == "stale"
    assert "input orders.clean has a newer version" in stale.locator(".reason").inner_text()


def test_an_unknown_dataset_or_version_is_said_so(page: Page, ran: Shop) -> None:
    answer = httpx.get(
        f"{ran.url}/ui/datasets/nowhere",
        cookies={"eventflow_token": read_pass(ran.token)},
        timeout=30,
    )
    assert answer.status_code == 404
    page.goto(f"{ran.url}/ui/datasets/nowhere")
    assert page.inner_text("#missing") == "No dataset 'nowhere' in this App."
    page.goto(f"{ran.url}/ui/datasets/orders?partition={DAY}&version=1")
    assert page.inner_text("#no-version") == f"No version 1 of orders in {DAY}."
