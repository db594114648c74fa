"""Dynamic fan-out: a day's file listing fans out to one run per file, each with its own
retries, and a summary gathers them all.

`listing` names the files it finds as partitions of the `dynamic()` dataset `raw.files` (at
most 100); `parse` runs once per file, in that file's partition; `summarise` runs once the last
file's run ended, in the day's partition, and sees every file (`ctx.items`). One file fails
once and is retried on its own; the next listing of the same day supersedes the first.

    python examples/fan_out.py         # the story below, in-process
    eventflow dev examples/fan_out.py  # or serve the App and emit `raw.day` yourself
"""

from __future__ import annotations

import asyncio

import eventflow as ef
from eventflow.testing import EmbeddedHarness

day = ef.Dataset("raw.day", ef.daily())
files = ef.Dataset("raw.files", ef.dynamic())
parsed = ef.Dataset("clean.files", ef.dynamic())
summary = ef.Dataset("report.daily_files", ef.daily())
ingest = ef.Pipeline("ingest")
listings = {1: ["a.csv", "b.csv", "c.csv"], 2: ["b.csv", "c.csv", "d.csv", "e.csv"]}
ran: list[str] = []


@ingest.task(inputs=[day], outputs=[files], fan_out=ef.FanOut(max_width=100))
async def listing(ctx: ef.TaskContext) -> None:
    found = listings[ctx.inputs[day].version]
    for name in found:  # the key names the partition: safe characters only
        ctx.emit(files, partition=f"{ctx.partition}.{name}", name=name)
    ran.append(f"  listing   {ctx.partition}: {len(found)} files")


@ingest.task(inputs=[files], outputs=[parsed], retries=ef.Retry(count=2, backoff_s=0))
async def parse(ctx: ef.TaskContext) -> None:
    name = ctx.inputs[files].metadata["name"]
    if name == "b.csv" and ctx.attempt == 1:
        raise OSError("connection reset")
    ran.append(f"  parse     {name} (attempt {ctx.attempt})")
    ctx.emit(parsed, rows=len(name) * 10)


@ingest.task(inputs=[parsed], outputs=[summary], gather=True)
async def summarise(ctx: ef.TaskContext) -> None:
    keys = ", ".join(item.key.removeprefix(f"{ctx.partition}.") for item in ctx.items)
    ran.append(f"  summarise {ctx.partition}: {len(ctx.items)} files ({keys})")


app = ef.App([ingest], datasets=[day])


def order(line: str) -> tuple[int, str]:
    """Files run side by side: print them in the order of the steps, then by name."""
    return (["listing", "parse", "summarise"].index(line.split()[0]), line)


async def story() -> None:
    async with EmbeddedHarness(app) as h:
        print("the first listing of 2026-11-20")
        await h.emit("raw.day", "2026-11-20", 1)
        await h.wait_idle()
        print(*sorted(ran, key=order), sep="\n")
        ran.clear()
        print("the day is listed again: the new listing supersedes the first")
        await h.emit("raw.day", "2026-11-20", 2)
        await h.wait_idle()
        print(*sorted(ran, key=order), sep="\n")


if __name__ == "__main__":
    asyncio.run(story())
