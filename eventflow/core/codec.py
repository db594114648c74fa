"""The engine's state as key/value records: the one layout every state log stores.

A record per (pipeline, partition), per pipeline header (partitions holding or waiting for a run
slot, or holding a decision back for a debounce or cooldown), per (dataset, partition) and per
pool. The embedded runtime keeps them in a SQLite table, the Kafka services in a compacted
changelog topic; both write `changes()` after a step and read records back into a `Snapshot`
that `Snapshot.install` puts into the engine whole.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from ..partitions import UNPARTITIONED
from . import backfill, freshness
from .engine import Effects, Engine
from .state import (
    DatasetState,
    PartitionState,
    Pause,
    compact,
    dump,
    finished,
    load_dataset,
    load_partition,
)

SEP = "\x00"

Record = tuple[bytes, bytes]


def partition_key(pipeline: str, key: str) -> bytes:
    return f"p{SEP}{pipeline}{SEP}{key}".encode()


def header_key(pipeline: str) -> bytes:
    return f"h{SEP}{pipeline}".encode()


def dataset_key(dataset: str, key: str) -> bytes:
    return f"d{SEP}{dataset}{SEP}{key}".encode()


def freshness_key(subject: str) -> bytes:
    return f"f{SEP}{subject}".encode()


def pool_key(pool: str) -> bytes:
    return f"g{SEP}{pool}".encode()


def header(engine: Engine, pipeline: str) -> bytes:
    pst = engine.pipelines[pipeline]
    head: dict[str, object] = {
        "active": pst.active,
        "waiting": pst.waiting,
        "paused": pst.paused,
        "acted": pst.acted,
        "backfills": backfill.dump_all(pst.backfills),
    }
    if pst.held:  # absent while nothing is held back, as in headers from before pacing
        head["held"] = pst.held
    return orjson.dumps(head)


def changes(engine: Engine, fx: Effects) -> list[Record]:
    """The records of the state a step changed, as `fx` names it. A partition the step left
    finished is kept compact from now on, as the record's bytes (`state.compact`)."""
    records: list[Record] = []
    for pipeline, key in fx.dirty_partitions:
        part = engine.pipelines[pipeline].partitions.get(key)
        if part is not None:
            raw = dump(part)
            records.append((partition_key(pipeline, key), raw))
            if key != UNPARTITIONED and finished(part):
                compact(part, raw)
    for pipeline in {p for p, _ in fx.dirty_partitions} | fx.dirty_headers:
        records.append((header_key(pipeline), header(engine, pipeline)))
    for dataset, key in fx.dirty_datasets:
        records.append((dataset_key(dataset, key), dump(engine.datasets[(dataset, key)])))
    for pool in fx.dirty_pools:
        records.append((pool_key(pool), engine.gate.dump(pool)))
    for subject in fx.dirty_freshness:
        records.append((freshness_key(subject), freshness.dump(engine.fresh[subject])))
    return records


@dataclass
class Snapshot:
    """State read back from records, apart from the engine until installed. Finished
    partitions are kept compact (`state.compact`) unless `compact` is off (read in to be
    decided at once); names are interned, since every pipeline's partitions repeat the same
    keys and every dataset's states its name."""

    #: pipeline -> partition key -> state
    partitions: dict[str, dict[str, PartitionState]] = field(default_factory=dict)
    #: pipeline -> (active, waiting) partition keys
    headers: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)
    #: pipeline -> who paused it (None: not paused), from its header
    pauses: dict[str, Pause | None] = field(default_factory=dict)
    #: pipeline -> ids of the operators' actions carried out last, from its header
    acted: dict[str, list[str]] = field(default_factory=dict)
    #: pipeline -> its backfills, from its header
    backfills: dict[str, dict[str, backfill.BackfillState]] = field(default_factory=dict)
    #: pipeline -> partitions a debounce or cooldown holds a decision back in, from its header
    held: dict[str, list[str]] = field(default_factory=dict)
    datasets: dict[tuple[str, str], DatasetState] = field(default_factory=dict)
    #: pool -> its serialized gate state (small; the gate decodes it)
    pools: dict[str, bytes] = field(default_factory=dict)
    #: freshness subject -> its state
    fresh: dict[str, freshness.FreshnessState] = field(default_factory=dict)
    records: int = 0
    compact: bool = True

    def add(self, key: str, value: bytes) -> None:
        """One record; a later record of the same key replaces the earlier one."""
        kind, _, rest = key.partition(SEP)
        if kind == "p":
            pipeline, _, partition = rest.partition(SEP)
            found = self.partitions.get(pipeline)
            if found is None:
                found = self.partitions[pipeline] = {}
            part = found[sys.intern(partition)] = load_partition(value)
            if self.compact and partition != UNPARTITIONED and finished(part):
                compact(part, value)
        elif kind == "h":
            head = orjson.loads(value)
            self.headers[rest] = (head["active"], head["waiting"])
            paused = head.get("paused")  # absent from headers written before pauses existed
            self.pauses[rest] = Pause(**paused) if paused is not None else None
            self.acted[rest] = head.get("acted", [])
            self.backfills[rest] = backfill.load_all(head.get("backfills"))
            self.held[rest] = head.get("held", [])
        elif kind == "d":
            dataset, _, partition = rest.partition(SEP)
            self.datasets[(sys.intern(dataset), sys.intern(partition))] = load_dataset(value)
        elif kind == "g":
            self.pools[rest] = value
        elif kind == "f":
            self.fresh[rest] = freshness.load(value)
        self.records += 1

    def forget_datasets(self, moved: Callable[[str], bool]) -> None:
        """Drop the router and freshness state of the datasets `moved` selects: kept elsewhere
        now (on Kafka, a record left in a stream task's changelog from before the dataset's
        home moved), so it must not overwrite the state where it lives."""
        self.datasets = {key: dst for key, dst in self.datasets.items() if not moved(key[0])}
        self.fresh = {
            subject: fst
            for subject, fst in self.fresh.items()
            if not (freshness.of_dataset(subject) and moved(freshness.owner_of(subject)))
        }

    def install(self, engine: Engine, *, merge: bool = False) -> None:
        """Into the engine in one synchronous step (pipelines the App no longer has are
        skipped). `merge` keeps what the engine holds already and adds only what it lacks
        (paging states in on demand); otherwise a pipeline's partitions are replaced whole."""
        pipelines = engine.pipelines
        for name, parts in self.partitions.items():
            pst = pipelines.get(name)
            if pst is None:
                continue
            if merge:
                for key, part in parts.items():
                    pst.partitions.setdefault(key, part)
            else:
                pst.partitions = parts
        for name, (active, waiting) in self.headers.items():
            pst = pipelines.get(name)
            if pst is not None:
                present = pst.partitions
                pst.active = [k for k in active if k in present]
                pst.waiting = [k for k in waiting if k in present]
                pst.held = [k for k in self.held.get(name, []) if k in present]
                pst.paused = self.pauses.get(name)
                pst.acted = self.acted.get(name, [])
                pst.backfills = self.backfills.get(name, {})
        for where, dst in self.datasets.items():
            if merge:
                engine.datasets.setdefault(where, dst)
            else:
                engine.datasets[where] = dst
        for pool, raw in self.pools.items():
            engine.gate.load(pool, raw)
        for subject, fst in self.fresh.items():
            if subject in engine.freshness.policies:
                engine.fresh[subject] = fst

    def update(self, engine: Engine) -> None:
        """Into the engine as changes to what it holds, record by record (a follower of the
        log): each partition, header and dataset read replaces the engine's one, the rest stays."""
        pipelines = engine.pipelines
        for name, parts in self.partitions.items():
            pst = pipelines.get(name)
            if pst is not None:
                pst.partitions.update(parts)
        for name, (active, waiting) in self.headers.items():
            pst = pipelines.get(name)
            if pst is not None:
                pst.active, pst.waiting = active, waiting
                pst.held = self.held.get(name, [])
                pst.paused = self.pauses.get(name)
                pst.acted = self.acted.get(name, [])
                pst.backfills = self.backfills.get(name, {})
        engine.datasets.update(self.datasets)
        for pool, raw in self.pools.items():
            engine.gate.load(pool, raw)
        engine.fresh.update(self.fresh)
