"""For the UI's backfill views: a daily schedule (a backfill needs no data for it: the clock's
tick for a past day is known) loading each day into a table, and a report on the table. `load`
holds while a file `hold` lies beside this file, and fails for the days listed in a file `fail`
there; the tests run a copy of this file in a folder of their own."""

import time
from pathlib import Path

import eventflow as ef

HERE = Path(__file__).parent

clock = ef.Dataset("clock.daily", ef.daily())
table = ef.Dataset("table", ef.daily())

days = ef.Pipeline("days", description="a table per day, and its report")
days.schedule(clock, "0 3 * * *")


@days.task(inputs=[clock], outputs=[table])
def load(ctx: ef.TaskContext) -> None:
    deadline = time.monotonic() + 60
    while (HERE / "hold").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    failing = HERE / "fail"
    if failing.exists() and ctx.partition in failing.read_text().split():
        raise ef.Fail(f"no export for {ctx.partition}")
    ctx.emit(table, rows=10)


@days.task(inputs=[table])
def report(ctx: ef.TaskContext) -> None:
    ctx.log.info("%s rows", ctx.inputs[table].metadata["rows"])


app = ef.App([days])
