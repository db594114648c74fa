"""The App the web UI is tested on: daily orders through a blocking check to a report that
branches, a task that fails when told to, a task that holds until released, and a schedule."""

import time
from pathlib import Path

import eventflow as ef

orders = ef.Dataset("orders", ef.daily(), "orders exported by the shop")
customers = ef.Dataset("customers", ef.daily())
clean = ef.Dataset("orders.clean", ef.daily())
report = ef.Dataset("report", ef.daily())
refunds = ef.Dataset("refunds", ef.daily())
tick = ef.Dataset("clock.hourly")
digest = ef.Dataset("digest")
gate = ef.Dataset("gate", ef.daily())

shop = ef.Pipeline("shop", description="orders to a daily report")


@shop.task(inputs=[orders, customers], outputs=[clean])
def tidy(ctx: ef.TaskContext) -> None:
    if ctx.inputs[orders].metadata.get("fail"):
        raise RuntimeError(f"orders of {ctx.partition} are unreadable")
    ctx.log.info("tidying %s rows of %s", ctx.inputs[orders].metadata.get("rows", 0), ctx.partition)
    metadata = ctx.inputs[orders].metadata
    ctx.emit(clean, rows=metadata.get("rows", 0), refunded=metadata.get("refunded", 0))


@shop.check(clean)
def has_rows(ctx: ef.CheckContext) -> tuple[bool, str]:
    rows = int(ctx.metadata.get("rows", 0))
    return rows > 0, f"{rows} rows"


@shop.task(inputs=[clean], outputs=[report, refunds])
def summarise(ctx: ef.TaskContext) -> None:
    """The branch: a report, or the refunds when the day refunded more than it sold."""
    ctx.log.info("summarising")
    day = ctx.inputs[clean].metadata
    if day.get("refunded", 0) > day["rows"]:
        ctx.emit(refunds, rows=day["refunded"])
    else:
        ctx.emit(report, rows=day["rows"])


@shop.task(inputs=[refunds])
def refund(ctx: ef.TaskContext) -> None:
    """Runs only on days that refunded more than they sold: skipped on the others."""
    ctx.log.info("refunding %s", ctx.partition)


hourly = ef.Pipeline("hourly")
hourly.schedule(tick, "0 * * * *")


@hourly.task(inputs=[tick], outputs=[digest])
def digest_hour(ctx: ef.TaskContext) -> None:
    ctx.emit(digest)


held = ef.Pipeline("held")


@held.task(inputs=[gate])
def hold(ctx: ef.TaskContext) -> None:
    release = Path(ctx.inputs[gate].metadata["release"])
    ctx.log.info("holding until %s exists", release)
    deadline = time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


app = ef.App([shop, hourly, held])
