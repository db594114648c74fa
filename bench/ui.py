"""The web UI at scale: each page's server time through a real uvicorn server, and its load
time in headless Chromium, over a history of `runs` runs in as many partitions of one pipeline.

The history is made by really running the pipeline embedded (one external event per daily
partition, three tasks each), then the UI is served over that runtime as `eventflow dev --ui`
serves it. A page that answers 404 is reported as missing (its view is not in this build), not
as an error.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx

import eventflow as ef
from eventflow.api import ApiServer
from eventflow.api.auth import COOKIE, read_pass
from eventflow.operations.embedded import EmbeddedOperations

from . import apps
from .scenarios import percentiles

#: What shows that the graph page has drawn its graph (dagre lays it out in the browser).
GRAPH_DRAWN = "main svg"
#: Flags for Chromium on a machine without a display (as the UI tests use).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]


def pages(dataset: str, pipeline: str, task: str, partition: str, run_id: str) -> dict[str, str]:
    """Each view's page, by name, on the history the scenario made."""
    return {
        "graph": "/ui/",
        "datasets": "/ui/datasets",
        "dataset": f"/ui/datasets/{dataset}",
        "pipelines": "/ui/pipelines",
        "pipeline": f"/ui/pipelines/{pipeline}",
        "run": f"/ui/runs/{run_id}",
        "why": f"/ui/pipelines/{pipeline}/tasks/{task}/why?partition={partition}",
        "events": "/ui/events",
        "deadletters": "/ui/deadletters",
    }


async def ui_pages(*, runs: int, loads: int, chromium: str | None) -> dict[str, Any]:
    """Figures per page: `server_ms.PAGE` (request to last byte over loopback HTTP),
    `browser_ms.PAGE` (to the `load` event, and for the graph to its drawing) when `chromium`
    is given; `missing`: the pages that answered 404, comma-separated."""
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as folder:
        settings = ef.Settings(home=Path(folder), api_port=0)
        async with ef.EmbeddedRuntime(apps.ui, settings) as runtime:
            built = time.perf_counter()
            first = date(2020, 1, 1)
            days = [(first + timedelta(days=i)).isoformat() for i in range(runs)]
            source = apps.ui_steps[0].name
            await asyncio.gather(*(runtime.emit(source, day, version=1) for day in days))
            await runtime.wait_idle()
            await runtime.history.flush()
            built = time.perf_counter() - built
            history = runtime.history.history
            newest = (await history.runs(pipeline="daily", limit=1)).items[0]
            paths = pages(source, "daily", apps.UI_TASKS[-1], days[-1], newest.run_id)
            ops = EmbeddedOperations(runtime)
            api = ApiServer(ops, token=secrets.token_urlsafe(32), ui=True)
            async with ops, api:
                figures = await _server_times(api, paths, loads)
                if chromium is not None:
                    present = {k: v for k, v in paths.items() if f"server_ms.{k}" in figures}
                    browser = await _browser_times(api, present, loads, chromium)
                    figures.update({f"browser_ms.{k}": v for k, v in browser.items()})
    return {"runs": runs, "partitions": runs, "history_built_s": round(built, 2), **figures}


async def _server_times(api: ApiServer, paths: dict[str, str], loads: int) -> dict[str, Any]:
    timed: dict[str, Any] = {}
    missing, errors = [], {}
    async with httpx.AsyncClient(
        base_url=api.url, cookies={COOKIE: read_pass(api.token)}
    ) as client:
        for name, path in paths.items():
            first = await client.get(path)  # warm-up, and whether the view exists
            if first.status_code == 404:
                missing.append(name)
                continue
            if first.status_code != 200:
                errors[name] = first.status_code
                continue
            samples = []
            for _ in range(loads):
                started = time.perf_counter()
                answer = await client.get(path)
                samples.append(time.perf_counter() - started)
                answer.raise_for_status()
            timed[f"server_ms.{name}"] = {**percentiles(samples), "bytes": len(answer.content)}
    return {**timed, "missing": ", ".join(missing) or "none", "errors": errors or "none"}


async def _browser_times(
    api: ApiServer, paths: dict[str, str], loads: int, chromium: str
) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    timed: dict[str, Any] = {}
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1400, "height": 900})
            await context.add_cookies(
                [{"name": COOKIE, "value": read_pass(api.token), "url": api.url}]
            )
            page = await context.new_page()
            for name, path in paths.items():
                samples = []
                for n in range(loads + 1):  # the first load warms the browser's cache
                    started = time.perf_counter()
                    await page.goto(api.url + path, wait_until="load")
                    if name == "graph":
                        await page.wait_for_selector(GRAPH_DRAWN, timeout=30_000)
                    if n:
                        samples.append(time.perf_counter() - started)
                timed[name] = percentiles(samples)
            await page.goto("about:blank")  # closes the page's event stream
        finally:
            await browser.close()
    return timed
