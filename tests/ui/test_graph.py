"""The data graph on real runs of the shop App: every node coloured by its state (a failed check,
a stale report, datasets never produced), a live re-colouring after an emit without a new
layout, click-through to datasets and tasks; and a 120-node App drawn with every label."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page

from .conftest import Shop, live, screenshot, start_shop

pytestmark = pytest.mark.slow

DAY = "2026-11-20"
#: What the graph shows after `ran`: the clean set failed its check, so the report made from the
#: clean set before is behind it; nothing ever produced the refunds.
EXPECTED = {
    "dataset:orders": "fresh",
    "dataset:customers": "fresh",
    "dataset:orders.clean": "failing",
    "dataset:report": "stale",
    "dataset:refunds": "never",
    "dataset:gate": "never",
    "task:tidy": "succeeded",
    "task:summarise": "succeeded",
    "task:hold": "never",
    "check:has_rows": "failed",
}


def states(page: Page) -> dict[str, str]:
    """Each node's state as drawn, by node id."""
    found: dict[str, str] = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#graph .node')]
              .map((n) => [n.dataset.id, n.dataset.state]))"""
    )
    return found


def open_graph(page: Page, shop: Shop, query: str = "") -> None:
    page.goto(f"{shop.url}/ui/{query}")
    page.wait_for_selector("#graph[data-ready]")


@pytest.fixture(scope="module")
def ran(shop: Shop) -> Shop:
    """A day whose orders were tidied and summarised, then tidied again into a clean set that
    failed its check: the report is left behind its input."""
    shop.emit("orders", DAY, rows=5)
    shop.emit("customers", DAY)
    shop.settled("shop", 1)
    shop.emit("orders", DAY, rows=0)  # a restatement: tidy runs again on it alone

    def failed_check() -> bool:
        return any(not c["passed"] for c in shop.get("/api/checks", dataset="orders.clean"))

    from ..e2e.test_cli import wait_for

    wait_for(failed_check, timeout=60)
    shop.settled("shop", 2)
    return shop


def test_every_node_is_coloured_by_its_state_and_recoloured_live(page: Page, ran: Shop) -> None:
    open_graph(page, ran)
    graph = ran.get("/api/graph")
    shown = states(page)
    assert sorted(shown) == sorted(n["id"] for n in graph["nodes"])
    # the hourly schedule may have ticked since the instance started; if so, all of it shows it
    hourly = [shown.pop(n) for n in ("dataset:clock.hourly", "task:digest_hour", "dataset:digest")]
    assert hourly in (["never", "never", "never"], ["fresh", "succeeded", "fresh"])
    assert {n: s for n, s in shown.items() if n in EXPECTED} == EXPECTED
    report = page.locator('#graph [data-id="dataset:report"] title')
    assert "input orders.clean has a newer version" in (report.text_content() or "")
    clock = page.locator('#graph [data-id="dataset:clock.hourly"] .sub')
    assert clock.text_content() == "clock · 0 * * * *"
    assert page.locator("#legend li").count() >= 8
    screenshot(page, "graph")

    live(page)
    ran.emit("orders", DAY, rows=7)
    page.wait_for_function(
        """() => document.querySelector('#graph [data-id="dataset:report"]')
              ?.dataset.state === 'fresh'"""
    )
    after = states(page)
    assert (after["dataset:orders.clean"], after["check:has_rows"]) == ("fresh", "passed")
    assert page.evaluate("document.body.dataset.layouts") == "1"  # re-coloured, not re-laid out


def test_a_partition_is_chosen_and_nodes_click_through(page: Page, ran: Shop) -> None:
    open_graph(page, ran)
    page.click('#graph [data-id="dataset:report"]')
    page.wait_for_url(f"{ran.url}/ui/datasets/report")
    open_graph(page, ran)
    page.click('#graph [data-id="task:tidy"]')
    page.wait_for_url(f"{ran.url}/ui/pipelines/shop")

    open_graph(page, ran)
    page.select_option("#graph-partition", DAY)
    page.wait_for_url(f"{ran.url}/ui/?partition={DAY}")
    page.wait_for_selector("#graph[data-ready]")
    in_day = states(page)
    assert in_day["dataset:orders"] == "fresh" and in_day["dataset:gate"] == "never"
    page.click('#graph [data-id="task:tidy"]')
    page.wait_for_url(f"{ran.url}/ui/pipelines/shop/tasks/tidy/why?partition={DAY}")

    open_graph(page, ran, "?partition=2026-01-01")
    elsewhere = states(page)
    assert elsewhere["dataset:orders"] == "never" and elsewhere["task:tidy"] == "never"


def test_zoom_buttons_and_the_wheel_scale_the_drawing(page: Page, ran: Shop) -> None:
    open_graph(page, ran)
    area = page.locator("#graph")
    before = float(area.get_attribute("data-scale") or 0)
    page.click("#zoom-in")
    assert float(area.get_attribute("data-scale") or 0) == pytest.approx(before * 1.25, rel=1e-2)
    page.click("#zoom-out")
    page.click("#zoom-out")
    assert float(area.get_attribute("data-scale") or 0) < before
    area.hover()
    page.mouse.wheel(0, -100)
    page.wait_for_function(
        f"Number(document.getElementById('graph').dataset.scale) > {before / 1.25 + 1e-6}"
    )


def big_app(tmp: Path) -> Path:
    """20 chains of two tasks with a check each, across four pipelines: 120 nodes."""
    lines = [
        "import eventflow as ef",
        "",
        "pipelines = [ef.Pipeline(f'lane_{p}') for p in range(4)]",
    ]
    lines += [
        "for i in range(20):",
        "    src = ef.Dataset(f'warehouse.orders_source_{i:03d}', ef.daily())",
        "    mid = ef.Dataset(f'warehouse.orders_enriched_{i:03d}', ef.daily())",
        "    nxt = ef.Dataset(f'warehouse.orders_enriched_{(i + 1) % 20:03d}', ef.daily())",
        "    out = ef.Dataset(f'marts.revenue_by_region_{i:03d}', ef.daily())",
        "    p = pipelines[i % 4]",
        "    p.task(name=f'enrich_{i:03d}', inputs=[src], outputs=[mid])(lambda ctx: None)",
        "    p.task(name=f'build_mart_{i:03d}', inputs=[mid, nxt], outputs=[out])(print)",
        "    p.check(mid, name=f'has_rows_{i:03d}')(lambda ctx: (True, 'ok'))",
        "app = ef.App(pipelines)",
    ]
    path = tmp / "big.py"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    tmp = tmp_path_factory.mktemp("big")
    yield from start_shop(tmp, app=big_app(tmp))


def test_a_120_node_app_is_drawn_with_every_label_readable(
    context: BrowserContext, big: Shop
) -> None:
    page = context.new_page()
    page.goto(f"{big.url}/ui/login#token={big.token}")
    page.wait_for_selector("#graph[data-ready]")
    graph = big.get("/api/graph")
    assert len(graph["nodes"]) == 120
    drawn: list[dict[str, Any]] = page.evaluate(
        """() => [...document.querySelectorAll('#graph .node')].map((n) => {
              const r = n.querySelector('rect').getBBox();
              const t = n.querySelector('.name').getBBox();
              const s = n.querySelector('.sub').getBBox();
              return {id: n.dataset.id, name: n.querySelector('.name').textContent,
                      rect: [r.x, r.y, r.width, r.height],
                      inside: [t, s].every((b) => b.x >= r.x && b.y >= r.y
                        && b.x + b.width <= r.x + r.width && b.y + b.height <= r.y + r.height)};
           })"""
    )
    assert sorted(d["name"] for d in drawn) == sorted(n["name"] for n in graph["nodes"])
    assert all(d["inside"] for d in drawn), [d["id"] for d in drawn if not d["inside"]]
    boxes = [d["rect"] for d in drawn]
    overlapping = [
        (a, b)
        for i, a in enumerate(boxes)
        for b in boxes[i + 1 :]
        if a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]
    ]
    assert overlapping == []
    # readable as first shown: labels at no less than three quarters of their size
    assert float(page.locator("#graph").get_attribute("data-scale") or 0) >= 0.75
    page.click("#zoom-fit")
    fitted = page.evaluate(
        """() => { const a = document.getElementById('graph'), s = a.querySelector('svg');
                   return [s.getBoundingClientRect().width <= a.clientWidth + 1,
                           s.getBoundingClientRect().height <= a.clientHeight + 1]; }"""
    )
    assert fitted == [True, True]
    screenshot(page, "graph-120")
