"""The runtime of `eventflow dev` driven in this process: CPU per task run, and whose it is.

The throughput scenario measures the service from outside, where its rate moves with everything
else on the machine's cores. This one runs the same App and external events through
`EmbeddedRuntime` in the bench process (on the bench's event loop), as the control socket hands
them in, and counts CPU rather than time: the process's (every thread: the decision loop, the
bodies, SQLite's threads), the main thread's apart, and the history child's, read from `/proc`.
A profiler run on it sees the runtime alone:
`py-spy record -f raw -o F -- python -m bench inprocess --runtime embedded`.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from eventflow.embedded.control import control_allows
from eventflow.embedded.runtime import EmbeddedRuntime
from eventflow.events import DatasetProduced, DatasetProducedData, encode
from eventflow.settings import Settings

from .apps import CHAIN, PIPELINES, throughput
from .deploy import _children, _cpu_s
from .scenarios import throughput_input

#: Publishers at once, as the throughput scenario's lanes.
LANES = 32


def _announcements(first: int, count: int) -> Iterator[bytes]:
    for i in range(first, first + count):
        dataset, key = throughput_input(i)
        data = DatasetProducedData(dataset=dataset, partition=key, version=1)
        yield encode(DatasetProduced.of(data, source="bench"))


async def inprocess(*, events: int) -> dict[str, Any]:
    """`events` external events into the throughput scenario's 100 ten-task chains, after one
    per pipeline of warm-up; the history child projects, as in `eventflow dev`. The clock stops
    when the runtime is idle; the child's CPU is read once it holds every run."""
    with tempfile.TemporaryDirectory(prefix="eventflow-bench-inprocess-") as folder:
        settings = Settings(home=Path(folder), concurrency=64, history_process=True)
        async with EmbeddedRuntime(throughput, settings) as runtime:

            async def drive(first: int, count: int) -> None:
                waiting = _announcements(first, count)

                async def lane() -> None:
                    for raw in waiting:  # one iterator: each event goes once
                        await runtime.publish_raw(raw, "control", allowed=control_allows)

                await asyncio.gather(*(lane() for _ in range(LANES)))
                await runtime.wait_idle()

            await drive(10**6, PIPELINES)  # warm-up, in partitions of its own
            await runtime.history.flush()
            child = _children(os.getpid())
            child_before = sum(_cpu_s(pid) for pid in child)
            succeeded_before = _succeeded()
            began, cpu, main = time.perf_counter(), time.process_time(), time.thread_time()
            await drive(0, events)
            seconds = time.perf_counter() - began
            cpu, main = time.process_time() - cpu, time.thread_time() - main
            runs = _succeeded() - succeeded_before
            await runtime.history.flush()  # the child's work for these runs, done
            if _children(os.getpid()) != child:
                raise RuntimeError("the history process was started again: its CPU is lost")
            child_cpu = sum(_cpu_s(pid) for pid in child) - child_before
    if runs != events * CHAIN:
        raise RuntimeError(f"{runs} task runs succeeded, not {events * CHAIN}")
    return {
        "external_events": events,
        "task_runs": runs,
        "seconds": round(seconds, 3),
        "task_runs_per_s": round(runs / seconds),
        "cpu_us_per_run": round(cpu / runs * 1e6, 1),
        "main_thread_us_per_run": round(main / runs * 1e6, 1),
        "history_child_us_per_run": round(child_cpu / runs * 1e6, 1),
        "main_thread_busy": round(main / seconds, 3),
    }


def _succeeded() -> int:
    """Task runs this process's workers finished as succeeded (their metric)."""
    found = REGISTRY.get_sample_value("eventflow_task_runs_total", {"outcome": "succeeded"})
    return round(found or 0)
