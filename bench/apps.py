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

# fan-out-1000: one event, a thousand independent tasks.
FAN = 1000
fan = ef.Dataset("bench.fan")
_fan = ef.Pipeline("fanout")
for n in range(FAN):
    out = ef.Dataset(f"bench.fan.out{n}")
    _fan.task(inputs=[fan], outputs=[out], name=f"leaf{n}")(_stamp(out))
fanout = ef.App([_fan])

# Coordinator throughput: 100 pipelines of 10-task chains over hourly partitions, so that
# every external event starts ten task runs of its own.
PIPELINES = 100
_flows = []
for p in range(PIPELINES):
    steps = [ef.Dataset(f"bench.t{p}.{n}", ef.hourly()) for n in range(CHAIN + 1)]
    flow = ef.Pipeline(f"flow{p}")
    for n in range(1, CHAIN + 1):
        flow.task(inputs=[steps[n - 1]], outputs=[steps[n]], name=f"flow{p}.step{n}")(
            _stamp(steps[n])
        )
    _flows.append(flow)
throughput = ef.App(_flows)

# State scale: many one-task pipelines over daily partitions.
SCALE_PIPELINES = 1000
_scale = []
for p in range(SCALE_PIPELINES):
    source = ef.Dataset(f"bench.s{p}.in", ef.daily())
    result = ef.Dataset(f"bench.s{p}.out", ef.daily())
    pipe = ef.Pipeline(f"s{p}")
    pipe.task(inputs=[source], outputs=[result], name=f"s{p}.load")(_stamp(result))
    _scale.append(pipe)
scale = ef.App(_scale)

# Soak: one pipeline, a three-task chain over hourly partitions; each external event starts
# one run of it.
SOAK_TASKS = ("soak.extract", "soak.transform", "soak.load")
soak_steps = [ef.Dataset(f"bench.soak{n}", ef.hourly()) for n in range(len(SOAK_TASKS) + 1)]
_soak = ef.Pipeline("soak")
for n, name in enumerate(SOAK_TASKS, 1):
    _soak.task(inputs=[soak_steps[n - 1]], outputs=[soak_steps[n]], name=name)(
        _stamp(soak_steps[n])
    )
soak = ef.App([_soak])

# Web UI: one pipeline, a three-task chain over daily partitions; one run per partition.
UI_TASKS = ("ui.extract", "ui.transform", "ui.load")
ui_steps = [ef.Dataset(f"bench.ui{n}", ef.daily()) for n in range(len(UI_TASKS) + 1)]
_ui = ef.Pipeline("daily")
for n, name in enumerate(UI_TASKS, 1):
    _ui.task(inputs=[ui_steps[n - 1]], outputs=[ui_steps[n]], name=name)(_stamp(ui_steps[n]))
ui = ef.App([_ui])
