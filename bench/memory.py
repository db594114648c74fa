"""Memory per (pipeline, partition) state, in this process: the scale app's real states (see
`state.py`) installed into an `Engine` as a restore installs them, with nothing else running.

Two measures, because each misleads alone: the resident memory (RSS) that `states` states add,
which is what a host pays but includes the allocator's slack; and the bytes `tracemalloc` counts
for a sample of states, which are the objects themselves. Each for the (pipeline, partition)
states and, apart, the (dataset, partition) states the router keeps beside them."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from eventflow.core import codec
from eventflow.core.engine import Engine
from eventflow.core.state import bulk_load

from .apps import scale
from .state import States

SAMPLE = 10_000  # states measured by tracemalloc, which slows allocation down


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc")


def install(engine: Engine, records: Iterable[tuple[str, bytes, bytes]]) -> int:
    """As a restore does: records into a `Snapshot`, then into the engine."""
    snapshot = codec.Snapshot()
    with bulk_load():
        for _, key, value in records:
            snapshot.add(key.decode(), value)
        snapshot.install(engine, merge=True)
    return snapshot.records


def traced(states: States, kind: str, limit: int) -> float:
    """Bytes per state of `kind` ("p" or "d"), as tracemalloc counts them for `limit` states
    installed into an engine of their own."""
    engine = Engine(scale)
    chosen = (r for r in states.records() if r[1][:1] == kind.encode())
    sample = (r for _, r in zip(range(limit), chosen, strict=False))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        count = install(engine, sample)
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del engine
    return used / count


async def memory(*, states: int) -> dict[str, Any]:
    built = States(states)
    await built.record()
    stored = built.stored_bytes()
    per_partition = traced(built, "p", SAMPLE)
    per_dataset = traced(built, "d", 2 * SAMPLE)
    engine = Engine(scale)
    gc.collect()
    empty = rss_bytes()
    partitions = install(engine, (r for r in built.records() if r[1][:1] == b"p"))
    with_partitions = rss_bytes()
    datasets = install(engine, (r for r in built.records() if r[1][:1] == b"d"))
    full = rss_bytes()
    return {
        "states": partitions,
        "dataset_states": datasets,
        "rss_mib": round(full / 2**20),
        "rss_empty_mib": round(empty / 2**20),
        "rss_per_state_b": round((with_partitions - empty) / partitions),
        "rss_per_dataset_state_b": round((full - with_partitions) / max(datasets, 1)),
        "traced_per_state_b": round(per_partition),
        "traced_per_dataset_state_b": round(per_dataset),
        "stored_state_b": round(stored["partition"]),
        "stored_dataset_state_b": round(stored["dataset"]),
        "memory_over_stored": round(per_partition / stored["partition"], 2),
    }
