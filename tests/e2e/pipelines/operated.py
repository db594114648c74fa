"""For the operator's commands: a chain whose second task waits for a second input, and a task
that holds its run until the test releases it (a file named in its input's metadata)."""

import time
from pathlib import Path

import eventflow as ef

raw, clean, extra, gate = (ef.Dataset(n, ef.daily()) for n in ("raw", "clean", "extra", "gate"))

ops = ef.Pipeline("ops")


@ops.task(inputs=[raw], outputs=[clean])
def tidy(ctx: ef.TaskContext) -> None:
    ctx.log.info("tidying %s", ctx.partition)
    ctx.emit(clean, rows=3)


@ops.task(inputs=[clean, extra])
def join(ctx: ef.TaskContext) -> None:
    ctx.log.info("joined")


held = ef.Pipeline("held")


@held.task(inputs=[gate])
def hold(ctx: ef.TaskContext) -> None:
    release = Path(ctx.inputs[gate].metadata["release"])
    ctx.log.info("holding until %s exists", release)
    deadline = time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    ctx.log.info("released")


app = ef.App([ops, held])
