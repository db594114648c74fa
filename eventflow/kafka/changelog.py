"""A stream task's state changelog: reading it back, and moving a
task's state into and out of the engine.

Stream task N keeps its state in partition N of the compacted `eventflow.state` topic, as the
records of `core.codec`. A restore reads the partition from its beginning to its end
into a `Snapshot`, apart from the engine, a bounded batch at a time with a yield to the event
loop after each: a million states take tens of seconds to decode, and meanwhile the coordinator
must keep heartbeating, polling and processing its other stream tasks. Only a complete snapshot
is installed, so a restore cancelled by a rebalance leaves nothing behind. `TaskStates` knows
which of the engine's state belongs to which task, installs a snapshot in one synchronous step and
drops a task's state a batch at a time. `explain` reads the same records to answer for a task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from ..core import Engine, Explanation, codec
from ..core.freshness import of_dataset, owner_of
from ..core.state import bulk_load
from ..definitions import App
from .config import KafkaConfig, partition_for

#: The topic whose records are keyed by dataset and decided in the stream task of its home.
DATASETS = "eventflow.datasets"
#: Records fetched and decoded between two yields to the event loop (about 15 ms of decoding
#: at 500 bytes a record): aiokafka's heartbeats and the processing loop run in between.
BATCH = 1000


@dataclass
class Snapshot(codec.Snapshot):
    """The state of one stream task as read from its changelog, not yet installed."""

    #: The changelog's end offset (read_committed) the snapshot was read to.
    end: int = 0


def state_partition(config: KafkaConfig, n: int) -> TopicPartition:
    return TopicPartition(config.topic("eventflow.state"), n)


async def end_offset(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int:
    """Where `tp` ends for `consumer`: its last stable offset if it reads committed records."""
    offset: int = (await consumer.end_offsets([tp]))[tp]
    return offset


async def read(config: KafkaConfig, n: int, *, batch: int = BATCH) -> Snapshot:
    """Task n's state, from the beginning of its changelog partition to its current end.

    Call it only after fencing the previous owner (starting the task's transactional producer):
    then nobody else writes to the partition and its end is the whole committed state."""
    tp = state_partition(config, n)
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False, isolation_level="read_committed", **config.client()
    )
    await consumer.start()
    snapshot = Snapshot()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        snapshot.end = await end_offset(consumer, tp)
        with bulk_load():
            while await consumer.position(tp) < snapshot.end:
                fetched = await consumer.getmany(tp, timeout_ms=1000, max_records=batch)
                for record in fetched.get(tp, ()):
                    if record.key is not None and record.value is not None:
                        snapshot.add(record.key.decode(), record.value)
                # getmany returns at once while fetched records are buffered: yield explicitly.
                await asyncio.sleep(0)
    finally:
        await consumer.stop()
    return snapshot


async def explain(
    app: App, config: KafkaConfig, pipeline: str, task: str, partition: str = ""
) -> Explanation:
    """`Engine.explain` from outside the coordinators (an API server, an operator's tool): the
    stream tasks holding the pipeline's state, its inputs' router state and the task's pool are
    read from their changelog partitions, as committed, into an engine of their own."""
    found = app.tasks.get(task)
    names = [pipeline, *(app.home_of(d) for d in (found.inputs if found is not None else ()))]
    if found is not None and found.pool is not None:
        names.append(found.pool)
    tasks = config.partitions("eventflow.pipeline-inputs")
    engine = Engine(app)
    for n in sorted({partition_for(name, tasks) for name in names}):
        snapshot = await read(config, n)
        snapshot.forget_datasets(TaskStates(engine, tasks).elsewhere(n))
        snapshot.install(engine)
    return engine.explain(pipeline, task, partition)


class TaskStates:
    """Which of the engine's state belongs to which stream task, and which tasks' state it holds
    (owned, or revoked and kept in case the task comes back)."""

    def __init__(self, engine: Engine, tasks: int) -> None:
        self.engine = engine
        self.tasks = tasks
        #: Tasks with state in the engine.
        self.held: set[int] = set()
        #: Per held task, the changelog end offset its state corresponds to, while that state
        #: is known to be the committed one.
        self.ends: dict[int, int] = {}
        self._tasks_of: dict[str, int] = {}
        self._datasets: dict[str, int] = {}

    def task_of(self, key: str) -> int:
        """The stream task of a pipeline or pool name (a dataset's: `dataset_task`)."""
        n = self._tasks_of.get(key)
        if n is None:  # names come from the App, so this cache stays small
            n = self._tasks_of[key] = partition_for(key, self.tasks)
        return n

    def dataset_task(self, dataset: str) -> int:
        """The stream task of a dataset's router state: its home's (`App.home_of`)."""
        n = self._datasets.get(dataset)
        if n is None:
            n = self._datasets[dataset] = self.task_of(self.engine.app.home_of(dataset))
        return n

    def elsewhere(self, n: int) -> Callable[[str], bool]:
        """Selects the datasets whose state stream task n does not hold (`App.home_of`), though
        its changelog may still have records of them from before their home moved."""
        return lambda dataset: self.dataset_task(dataset) != n

    def owner_task(self, key: str) -> int:
        """The stream task of a timer or freshness subject: its pipeline's or its dataset's."""
        owner = owner_of(key)
        return self.dataset_task(owner) if of_dataset(key) else self.task_of(owner)

    def task_for(self, topic: str, key: str) -> int:
        """The stream task that decides a record of `topic` (unprefixed) keyed `key`."""
        return self.dataset_task(key) if topic == DATASETS else self.task_of(key)

    def install(self, n: int, snapshot: Snapshot) -> None:
        """Task n's state into the engine, in one synchronous step; the engine holds none of
        n's state before (a held task is dropped first)."""
        assert n not in self.held
        snapshot.forget_datasets(self.elsewhere(n))
        snapshot.install(self.engine)
        self.held.add(n)
        self.ends[n] = snapshot.end

    async def drop(self, n: int, *, batch: int = BATCH) -> None:
        """Remove task n's state from the engine, `batch` states between yields to the loop.
        Nothing may change n's state meanwhile (n is not owned)."""
        self.ends.pop(n, None)
        for name, pst in self.engine.pipelines.items():
            if self.task_of(name) == n:
                parts, pst.partitions = pst.partitions, {}
                pst.active, pst.waiting, pst.held, pst.paused, pst.acted = [], [], [], None, []
                while parts:
                    for _ in range(min(batch, len(parts))):
                        parts.popitem()
                    await asyncio.sleep(0)
        datasets = self.engine.datasets
        keys = list(datasets)  # others' datasets may be added while this yields
        for start in range(0, len(keys), 10 * batch):
            for key in keys[start : start + 10 * batch]:
                if self.dataset_task(key[0]) == n:
                    del datasets[key]
            await asyncio.sleep(0)
        for pool in self.engine.app.pools:
            if self.task_of(pool) == n:
                self.engine.gate.forget(pool)
        for subject in [s for s in self.engine.fresh if self.owner_task(s) == n]:
            del self.engine.fresh[subject]
        self.held.discard(n)
