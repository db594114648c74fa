"""A partitioned cascade whose bodies journal each start and end with the process id.

The journal path travels in the metadata, as paths do: the first task reads it from the external
event and every task passes it on.
"""

import os
import time
from collections.abc import Callable

import eventflow as ef

raw = ef.Dataset("raw", ef.daily())
names = ["extract", "clean", "left", "right", "join", "publish"]
ds = {n: ef.Dataset(f"ds.{n}", ef.daily()) for n in names}
cascade = ef.Pipeline("journaled")
edges = {
    "extract": [raw],
    "clean": [ds["extract"]],
    "left": [ds["clean"]],
    "right": [ds["clean"]],
    "join": [ds["left"], ds["right"]],
    "publish": [ds["join"]],
}


def body(name: str) -> Callable[[ef.TaskContext], None]:
    def run(ctx: ef.TaskContext) -> None:
        meta = next(iter(ctx.inputs.values())).metadata
        journal, pause = meta["journal"], meta.get("pause", 0.15)
        with open(journal, "a") as f:
            f.write(f"{os.getpid()} start {name} {ctx.partition}\n")
        time.sleep(pause)
        with open(journal, "a") as f:
            f.write(f"{os.getpid()} end {name} {ctx.partition}\n")
        ctx.emit(ds[name], journal=journal, pause=pause)

    run.__name__ = name
    return run


for name in names:
    cascade.task(inputs=edges[name], outputs=[ds[name]], name=name)(body(name))

app = ef.App([cascade])
