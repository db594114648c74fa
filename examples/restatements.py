"""Late and restated data: a correction of an old day re-runs what that day feeds, and nothing
else.

Daily orders are cleaned (once a burst of corrections has been quiet for a minute), summed into
a revenue report, and announced to finance once per day: the announcement ignores
restatements, so a correction updates the report without a second mail.

    python examples/restatements.py         # the story below, in-process on a test clock
    eventflow dev examples/restatements.py  # or serve the App and emit orders yourself
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import eventflow as ef
from eventflow.testing import EmbeddedHarness, ManualClock

orders = ef.Dataset("shop.orders", ef.daily())
clean = ef.Dataset("shop.orders_clean", ef.daily())
revenue = ef.Dataset("shop.revenue", ef.daily())
sales = ef.Pipeline("sales")
ran: list[str] = []


@sales.task(inputs=[orders], outputs=[clean], debounce=timedelta(minutes=1))
async def cleanse(ctx: ef.TaskContext) -> None:
    version = ctx.inputs[orders].version
    ran.append(f"  cleanse   {ctx.partition} on orders version {version}")
    ctx.emit(clean, rows=ctx.inputs[orders].metadata.get("rows", 0))


@sales.task(inputs=[clean], outputs=[revenue])
async def report(ctx: ef.TaskContext) -> None:
    rows = ctx.inputs[clean].metadata["rows"]
    ran.append(f"  report    {ctx.partition} from {rows} rows")
    ctx.emit(revenue, total=rows * 10)


@sales.task(inputs=[revenue], restatements="ignore")
async def announce(ctx: ef.TaskContext) -> None:
    ran.append(f"  announce  {ctx.partition}: revenue {ctx.inputs[revenue].metadata['total']}")


app = ef.App([sales])


async def story() -> None:
    clock = ManualClock()
    async with EmbeddedHarness(app, clock=clock) as h:
        print("two days of orders arrive")
        await h.emit("shop.orders", "2026-11-20", 1, rows=100)
        await h.emit("shop.orders", "2026-11-21", 1, rows=120)
        await clock.advance(60)
        await h.wait_idle()
        print(*ran, sep="\n")
        ran.clear()

        print("three corrections of 2026-11-20 in a burst")
        for version, rows in ((2, 101), (3, 103), (4, 104)):
            await h.emit("shop.orders", "2026-11-20", version, rows=rows)
            await clock.advance(10)
        why = await h.explain("sales", "cleanse", "2026-11-20")
        print(f"  (cleanse: {why.verdict})")
        await clock.advance(50)
        await h.wait_idle()
        print(*ran, sep="\n")
        why = await h.explain("sales", "announce", "2026-11-20")
        print(f"  announce  2026-11-20 not again: {why.verdict}")


if __name__ == "__main__":
    asyncio.run(story())
