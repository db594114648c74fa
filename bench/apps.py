"""The pipelines the benchmarks run; every body stamps when it started into its output."""

from __future__ import annotations

import time

import eventflow as ef


def _stamp(output: ef.Dataset) -> ef.definitions.TaskFn:
    async def body(ctx: ef.TaskContext) -> None:
        ctx.emit(output, started=time.time())

    return body


# Trigger latency: one external dataset, one task.
ping, pong = ef.Dataset("bench.ping"), ef.Dataset("bench.pong")
_latency = ef.Pipeline("latency")
_latency.task(inputs=[ping], outputs=[pong], name="pong")(_stamp(pong))
latency = ef.App([_latency])

# chain-10: ten tasks, each consuming the previous one's output.
CHAIN = 10
links = [ef.Dataset(f"bench.chain{n}") for n in range(CHAIN + 1)]
_chain = ef.Pipeline("chain10")
for n in range(1, CHAIN + 1):
    _chain.task(inputs=[links[n - 1]], outputs=[links[n]], name=f"hop{n}")(_stamp(links[n]))
chain = ef.App([_chain])
