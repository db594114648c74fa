"""Freshness policies in the UI: a late dataset (its max_age, its deadline) and a task past its
deadline shown late in the graph and on the dataset's page, and on time again when the version
arrives, live."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from ..browser import sign_in
from .conftest import Shop, live, screenshot, start_shop

pytestmark = pytest.mark.slow

LATE = Path(__file__).parent / "late.py"


@pytest.fixture(scope="module")
def due(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    yield from start_shop(tmp_path_factory.mktemp("late"), app=LATE)


def yesterday() -> str:
    return (datetime.now(UTC) - timedelta(days=1)).date().isoformat()


def node(page: Page, node_id: str) -> str:
    return f"[data-id='{node_id}']"


def test_a_dataset_past_its_max_age_is_late_until_a_version_arrives(
    context: BrowserContext, due: Shop
) -> None:
    page = sign_in(context, due.url, due.token)
    page.goto(f"{due.url}/ui/datasets/feed")
    expect(page.locator("#policy")).to_contain_text("No more than 4.0 s without a new version")
    live(page)
    # four seconds after the instance started, nothing came: late, shown without a reload
    row = page.locator("#late tr.violation[data-policy='max_age']")
    expect(row).to_have_count(1, timeout=30_000)
    screenshot(page, "dataset-late")
    due.emit("feed")
    expect(page.locator("#on-time")).to_be_visible()
    expect(page.locator("#recovered tr.recovered")).to_have_count(1)


def test_the_pipeline_page_lists_its_tasks_past_their_deadline(
    context: BrowserContext, due: Shop
) -> None:
    """`total`'s run for yesterday was due at the first tick: never run, it is late."""
    page = sign_in(context, due.url, due.token)
    page.goto(f"{due.url}/ui/pipelines/late")
    live(page)
    late = page.locator(
        f"#late-tasks li.violation[data-task='total'][data-partition='{yesterday()}']"
    )
    expect(late).to_be_visible(timeout=30_000)


def test_the_graph_shows_a_late_partition_and_a_task_past_its_deadline(
    context: BrowserContext, due: Shop
) -> None:
    day = yesterday()
    page = sign_in(context, due.url, due.token)
    page.goto(f"{due.url}/ui/?partition={day}")
    live(page)
    sales = page.locator(node(page, "dataset:sales"))
    total = page.locator(node(page, "task:total"))
    expect(sales).to_have_attribute("data-state", "late", timeout=30_000)
    expect(total).to_have_attribute("data-state", "late", timeout=30_000)
    due.emit("sales", day)
    # the partition arrived and its run succeeded: both on time again
    expect(sales).not_to_have_attribute("data-state", "late")
    expect(total).to_have_attribute("data-state", "succeeded")
    page.goto(f"{due.url}/ui/datasets/sales")
    expect(page.locator(f"#recovered tr.recovered[data-partition='{day}']")).to_have_count(1)
