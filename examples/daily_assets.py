"""Daily-partitioned assets, Dagster style: orders -> revenue -> a dashboard, backfilled 30 days.

    python examples/daily_assets.py          # self-contained: backfills the last 30 days
    python examples/daily_assets.py --keep   # ... and keeps its files for a look
    eventflow dev examples/daily_assets.py   # as a service (files under ./warehouse); then
    eventflow backfill daily_assets --from 2026-10-01 --to 2026-10-30 --dry-run

Each asset is a dataset partitioned by day. A daily schedule is the clock: at 01:00 UTC it
produces `clock.daily` for the day, which `extract_orders` turns into the day's orders (a CSV
file, checked by a blocking check before anything uses it); `daily_revenue` sums them per
country, with a freshness policy: each day's revenue is due by 06:00 UTC of the next day. The
`reporting` pipeline, downstream, keeps a dashboard row per day.

Run as a script, it starts on an empty warehouse in a temporary folder and backfills the 30 days
before today: a schedule's clock is time, not data, so the backfill supplies each past day's
tick, four days at a time; `reporting` follows through the router, once per day. It prints the
backfill's progress as runs end, then the outcome.
"""

from __future__ import annotations

import asyncio
import csv
import json
import random
import shutil
import sys
import tempfile
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import eventflow as ef
from eventflow.api.backfills import backfills
from eventflow.api.models import Backfill

clock = ef.Dataset("clock.daily", ef.daily(), "a tick per day, from the schedule")
orders = ef.Dataset("orders", ef.daily(), "the day's orders, one row each")
revenue = ef.Dataset(
    "revenue",
    ef.daily(),
    "the day's revenue per country",
    freshness=ef.Freshness(deadline="0 6 * * *"),
)
dashboard = ef.Dataset("dashboard", ef.daily(), "a row per day for the sales dashboard")

assets = ef.Pipeline("daily_assets", description="orders and revenue, a partition per day")
assets.schedule(clock, "0 1 * * *")
reporting = ef.Pipeline("reporting", description="the dashboard, downstream of revenue")

COUNTRIES = ("de", "fr", "nl", "pl", "se")


class Warehouse:
    """Where the assets' files go: `./warehouse` as a service, a temporary folder as a script.
    Only paths travel in the events; the data stays in the files."""

    root = Path("warehouse")

    @classmethod
    def file(cls, asset: ef.Dataset, day: str, suffix: str = "csv") -> Path:
        path = cls.root / asset.name / f"{day}.{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


@assets.task(inputs=[clock], outputs=[orders], retries=ef.Retry(2, backoff_s=0.5))
def extract_orders(ctx: ef.TaskContext) -> None:
    """What a source system exported for the day (made up here, the same for each day)."""
    rng = random.Random(ctx.partition)
    path = Warehouse.file(orders, ctx.partition)
    rows = [
        {
            "order_id": f"{ctx.partition}-{i}",
            "country": rng.choice(COUNTRIES),
            "amount": round(rng.lognormvariate(3.5, 0.6), 2),
        }
        for i in range(rng.randrange(150, 400))
    ]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    ctx.emit(orders, path=str(path), rows=len(rows))


@assets.check(orders, blocking=True)
def orders_are_valid(ctx: ef.CheckContext) -> tuple[bool, str]:
    """Nothing downstream reads a day with a duplicate order or an amount that is not positive."""
    with open(ctx.metadata["path"], newline="") as f:
        rows = list(csv.DictReader(f))
    duplicates = len(rows) - len({r["order_id"] for r in rows})
    bad = sum(1 for r in rows if float(r["amount"]) <= 0)
    return duplicates == 0 and bad == 0, f"{len(rows)} rows, {duplicates} duplicates, {bad} bad"


@assets.task(inputs=[orders], outputs=[revenue])
def daily_revenue(ctx: ef.TaskContext) -> None:
    with open(ctx.inputs[orders].metadata["path"], newline="") as f:
        rows = list(csv.DictReader(f))
    per_country: dict[str, float] = {}
    for r in rows:
        per_country[r["country"]] = per_country.get(r["country"], 0.0) + float(r["amount"])
    path = Warehouse.file(revenue, ctx.partition, "json")
    path.write_text(json.dumps({c: round(v, 2) for c, v in sorted(per_country.items())}))
    ctx.emit(revenue, path=str(path), total=round(sum(per_country.values()), 2))


@assets.check(revenue, blocking=False)
def revenue_is_plausible(ctx: ef.CheckContext) -> tuple[bool, str]:
    """A warning only: a day far off the usual is worth a look, not a stop."""
    total = float(ctx.metadata["total"])
    return 1_000 <= total <= 50_000, f"total {total:,.2f}"


@reporting.task(inputs=[revenue], outputs=[dashboard])
def update_dashboard(ctx: ef.TaskContext) -> None:
    meta = ctx.inputs[revenue].metadata
    path = Warehouse.file(dashboard, ctx.partition, "json")
    path.write_text(json.dumps({"day": ctx.partition, "revenue": meta["total"]}))
    ctx.emit(dashboard, path=str(path))


app = ef.App([assets, reporting])


async def demo(keep: bool = False) -> int:
    """The 30-day backfill on an empty warehouse in a temporary folder, removed at the end
    unless `keep`; the exit status (0: every run succeeded, each day reached the dashboard)."""
    work = Path(tempfile.mkdtemp(prefix="eventflow-daily-"))
    Warehouse.root = work / "warehouse"
    try:
        return await _demo(work, keep)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


async def _demo(work: Path, keep: bool) -> int:
    today = datetime.now(UTC).date()
    first, last = (today - timedelta(days=30)).isoformat(), (today - timedelta(days=1)).isoformat()
    async with ef.EmbeddedRuntime(app, ef.Settings(home=work / ".eventflow")) as runtime:
        events = runtime.subscribe()
        receipt = await runtime.act(
            "daily_assets",
            "backfill",
            reason="load the last 30 days",
            operator="example",
            backfill="bf-last-30-days",
            plan=ef.BackfillPlan(start=first, end=last, max_active=4),
        )
        if receipt.dead_letter is not None:
            print(f"backfill refused: {receipt.dead_letter}")
            return 1
        print(f"backfill bf-last-30-days of daily_assets: {first} .. {last}, 4 days at a time")
        seen: list[ef.Event] = []
        shown = -1
        while True:
            found = _progress(runtime)
            done = found.succeeded + found.failed + found.skipped
            if done != shown:
                print(_bar(found))
                shown = done
            if found.status != "running":
                break
            seen.append(await events.get())
        await runtime.wait_idle()  # `reporting` follows the last days through the router
        while not events.empty():
            seen.append(events.get_nowait())
        runtime.unsubscribe(events)
    return _outcome(found, seen, today, work, keep)


def _progress(runtime: ef.EmbeddedRuntime) -> Backfill:
    """The backfill as `eventflow backfill show` reads it, from the state the engine decides on."""
    return next(b for b in backfills(runtime.engine) if b.id == "bf-last-30-days")


def _bar(b: Backfill, width: int = 30) -> str:
    done = b.succeeded + b.failed + b.skipped
    filled = width * done // max(b.planned, 1)
    running = b.started - b.succeeded - b.failed
    return (
        f"  [{'#' * filled}{'.' * (width - filled)}] {done:>2}/{b.planned} done, "
        f"{running} running, {b.failed} failed, {b.skipped} skipped"
    )


def _outcome(b: Backfill, seen: list[ef.Event], today: date, work: Path, keep: bool) -> int:
    runs: Counter[tuple[str, str]] = Counter()
    days_run: dict[str, set[str]] = {"daily_assets": set(), "reporting": set()}
    checks: Counter[tuple[str, bool]] = Counter()
    late: dict[tuple[str, str], str] = {}
    for event in seen:
        if isinstance(event, ef.PipelineRunSucceeded | ef.PipelineRunFailed):
            runs[event.data.pipeline, event.data.status] += 1
            days_run[event.data.pipeline].add(event.data.partition)
        elif isinstance(event, ef.CheckCompleted):
            checks[event.data.check, event.data.passed] += 1
        elif isinstance(event, ef.FreshnessViolated):
            late[event.data.name, event.data.partition] = event.data.message
        elif isinstance(event, ef.FreshnessRecovered):
            late.pop((event.data.name, event.data.partition), None)
    print(
        f"\nbackfill {b.id} {b.status}: {b.planned} planned, {b.started} started, "
        f"{b.succeeded} succeeded, {b.failed} failed, {b.skipped} skipped"
    )
    for pipeline in ("daily_assets", "reporting"):
        ok, failed = runs[pipeline, "succeeded"], runs[pipeline, "failed"]
        each = len(days_run[pipeline])
        print(f"{pipeline:<13} {ok} runs succeeded, {failed} failed, over {each} days")
    for (check, passed), n in sorted(checks.items()):
        print(f"check {check:<21} {'passed' if passed else 'FAILED'} {n} times")
    days = [(today - timedelta(days=n)).isoformat() for n in range(30, 0, -1)]
    shown = sorted(Warehouse.root.glob("dashboard/*.json"))
    missing = [d for d in days if not (Warehouse.root / "dashboard" / f"{d}.json").exists()]
    print(f"dashboard: {len(shown)} days, from {shown[0].stem} to {shown[-1].stem}")
    for day in (days[0], days[-1]):
        row = json.loads((Warehouse.root / "dashboard" / f"{day}.json").read_text())
        print(f"  {day}: revenue {row['revenue']:>10,.2f}")
    if late:
        for (name, partition), message in sorted(late.items()):
            print(f"still late: {name} {partition}: {message}")
    else:
        print("freshness: no day of revenue late (due by 06:00 UTC of the next day)")
    where = "" if keep else " (removed when the example ends; --keep keeps them)"
    print(f"files and state in {work}{where}")
    good = b.status == "done" and b.failed == 0 and not missing and not late
    return 0 if good and runs["daily_assets", "failed"] == runs["reporting", "failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(demo(keep="--keep" in sys.argv[1:])))
