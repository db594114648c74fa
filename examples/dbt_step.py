"""A dbt step between two Python tasks: export -> dbt build (DuckDB) -> report, a day at a time.

    python examples/dbt_step.py          # self-contained: three days, the third one broken
    python examples/dbt_step.py --keep   # ... and keeps its files (the DuckDB file) for a look
    eventflow dev examples/dbt_step.py   # as a service (files under ./shop); then
    eventflow emit source.orders_ready --partition 2026-11-20

dbt runs as a subprocess, so it may live in a venv of its own: `pip install 'eventflow[dbt]'`
puts it beside eventflow, or `EVENTFLOW_DBT=/path/to/dbt` names it.

A source system says a day's orders are ready; `export_orders` writes them to a CSV file.
`transform` runs `dbt build` on the tiny project in `dbt_project/` (a staging model reading the
file, a daily aggregate, two data tests) with the day and the file's path as dbt vars; each
model it built is announced as that day's version of its dataset, with dbt's timing and
invocation id. `report` reads the aggregate's rows back from DuckDB. Both tasks touching the
DuckDB file share a pool of one slot: DuckDB lets one process write a file at a time.

Run as a script, it delivers three days; the third day's export holds a refund as a negative
amount, so dbt's test `amounts_are_not_negative` fails and so does the run, in dbt's words.
"""

from __future__ import annotations

import asyncio
import csv
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

import duckdb

import eventflow as ef
from eventflow.dbt import DbtProject

PROJECT = Path(__file__).parent / "dbt_project"

ready = ef.Dataset("source.orders_ready", ef.daily(), "the source system closed the day")
orders = ef.Dataset("orders", ef.daily(), "the day's orders as exported, a CSV file")
stg_orders = ef.Dataset("shop.stg_orders", ef.daily(), "the orders, typed (dbt)")
revenue = ef.Dataset("shop.daily_revenue", ef.daily(), "revenue per country and day (dbt)")
report = ef.Dataset("revenue_report", ef.daily(), "the day's revenue as the sales team reads it")

shop = ef.Pipeline("shop", description="orders exported, modelled by dbt, reported")
warehouse = ef.Pool("warehouse", slots=1)

dbt_shop = DbtProject(PROJECT, models={"stg_orders": stg_orders, "daily_revenue": revenue})


class Files:
    """Where the shop's files go: `./shop` as a service, a temporary folder as a script."""

    root = Path("shop")

    @classmethod
    def path(cls, *parts: str) -> Path:
        path = cls.root.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.absolute()


@shop.task(inputs=[ready], outputs=[orders])
def export_orders(ctx: ef.TaskContext) -> None:
    """What the source system exports for the day (made up here: the same for each day)."""
    rng = random.Random(ctx.partition)
    rows = [
        {
            "order_id": f"{ctx.partition}-{i}",
            "country": rng.choice(("DE", "FR", "NL")),
            "amount": round(rng.uniform(5, 200), 2),
        }
        for i in range(rng.randrange(20, 40))
    ]
    if ctx.inputs[ready].metadata.get("refund"):  # a refund exported as an order
        rows.append({"order_id": f"{ctx.partition}-refund", "country": "DE", "amount": -50})
    path = Files.path("orders", f"{ctx.partition}.csv")
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["order_id", "country", "amount"])
        writer.writeheader()
        writer.writerows(rows)
    ctx.emit(orders, path=str(path), rows=len(rows))


@shop.task(inputs=[orders], outputs=[stg_orders, revenue], pool=warehouse.name)
async def transform(ctx: ef.TaskContext) -> None:
    """The dbt step: the day (`partition`) and the export's path go to dbt as vars."""
    await dbt_shop.build(
        ctx,
        vars={
            "orders_csv": ctx.inputs[orders].metadata["path"],
            "duckdb_path": str(Files.path("shop.duckdb")),
        },
    )


@shop.task(inputs=[revenue], outputs=[report], pool=warehouse.name)
def revenue_report(ctx: ef.TaskContext) -> None:
    """Reads the aggregate dbt built, by the relation its dataset version names."""
    relation = ctx.inputs[revenue].metadata["relation"]
    with duckdb.connect(str(Files.path("shop.duckdb")), read_only=True) as db:
        rows = db.execute(
            f"select country, orders, revenue from {relation} where day = ? order by country",
            [ctx.partition],
        ).fetchall()
    table = {country: {"orders": n, "revenue": float(total)} for country, n, total in rows}
    path = Files.path("reports", f"{ctx.partition}.json")
    path.write_text(json.dumps(table, indent=2))
    ctx.emit(report, path=str(path), rows=len(table))


app = ef.App([shop], pools=[warehouse])

DAYS = ("2026-11-20", "2026-11-21", "2026-11-22")


async def main(keep: bool = False) -> int:
    work = Path(tempfile.mkdtemp(prefix="eventflow-dbt-step-"))
    Files.root = work / "shop"
    try:
        status = await _days(work)
    finally:
        where = "" if keep else " (removed; --keep keeps them)"
        print(f"files and state in {work}{where}")
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return status


async def _days(work: Path) -> int:
    outcome = []
    async with ef.EmbeddedRuntime(app, ef.Settings(home=work / ".eventflow")) as runtime:
        events = runtime.subscribe()
        for day in DAYS:
            refund = day == DAYS[-1]
            await runtime.emit(ready.name, partition=day, metadata={"refund": refund})
            await runtime.wait_idle()
            outcome += _print_day(day, events)
        runtime.unsubscribe(events)
    return 0 if outcome == ["succeeded", "succeeded", "failed"] else 1


def _print_day(day: str, events: asyncio.Queue[ef.Event]) -> list[str]:
    print(day)
    statuses: list[str] = []
    while not events.empty():
        data = events.get_nowait().data
        if isinstance(data, ef.TaskSucceededData):
            for out in data.outputs:
                meta = out.metadata
                said = ", ".join(f"{k}={meta[k]}" for k in ("rows", "unique_id") if k in meta)
                print(f"  {data.task:<15} -> {out.dataset} ({said})")
        elif isinstance(data, ef.TaskFailedData):
            print(f"  {data.task:<15} failed: {data.error}")
        elif isinstance(data, ef.PipelineRunData) and data.status != "running":
            statuses.append(data.status)
            print(f"  run {data.status}")
    return statuses


if __name__ == "__main__":
    sys.exit(asyncio.run(main(keep="--keep" in sys.argv[1:])))
