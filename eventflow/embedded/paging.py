"""Memory that follows activity, not history: idle states live in the SQLite file only.

A partition (or dataset partition) that no run is using costs nothing to keep on disk and is
needed again only when an event names it. Before an event is decided, the states it will touch
are read in; after a commit, the least recently used idle states beyond `limit` are dropped from
memory (they are committed, so nothing is lost). Live states (a run in progress or waiting for a
slot, a decision a debounce or cooldown holds back, versions waiting for checks, a pipeline's
unpartitioned inputs) never leave.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from ..core import Engine, fanout
from ..errors import EventError
from ..events import (
    CheckCompleted,
    DatasetProduced,
    DatasetReset,
    Event,
    PipelineAction,
    PipelineInput,
    TaskRef,
    TaskSucceeded,
)
from ..partitions import UNPARTITIONED
from .store import Store

_Key = tuple[str, str, str]  # ("p", pipeline, partition) or ("d", dataset, partition)


class Pager:
    def __init__(self, engine: Engine, store: Store, limit: int) -> None:
        self.engine = engine
        self.store = store
        self.limit = limit
        self._recent: OrderedDict[_Key, None] = OrderedDict()
        #: Dataset partitions looked up in the file since the step began, found or not.
        self._looked_up: set[tuple[str, str]] = set()
        #: Pipelines whose every partition is in memory: read whole once, and nothing of them
        #: dropped since (a partition made later is made in memory before it is in the file).
        self._whole: set[str] = set()

    async def prefetch(self, events: Iterable[Event]) -> None:
        """Before a step: read in, in one query, the dataset partitions its inputs name,
        including the outputs of the task runs that succeeded (which the step follows), so
        that a step of many inputs does not query the file once per dataset event. A
        partition the file lacks is not looked up again until the next step (the file
        changes only when the step commits)."""
        self._looked_up.clear()
        wanted: dict[tuple[str, str], None] = {}
        for event in events:
            if isinstance(event, DatasetProduced):
                self._want(wanted, event.data.dataset, event.data.partition)
            elif isinstance(event, TaskSucceeded):
                for output in event.data.outputs:
                    self._want(wanted, output.dataset, output.partition)
        if wanted:
            keys = list(wanted)
            await self.store.page_in_datasets(self.engine, keys)
            self._looked_up.update(keys)

    def _want(self, wanted: dict[tuple[str, str], None], dataset: str, partition: str) -> None:
        key = self._dataset_key(dataset, partition)
        if key is not None and key not in self.engine.datasets:
            wanted[key] = None

    async def page_in(self, event: Event) -> None:
        """Read in what deciding `event` will touch; unknown names are left to the engine."""
        data = event.data
        if isinstance(event, DatasetProduced):
            await self._dataset(event.data.dataset, event.data.partition)
        elif isinstance(event, CheckCompleted):
            await self._dataset(event.data.target.dataset, event.data.target.partition)
        elif isinstance(event, DatasetReset) and event.data.pipeline is None:
            await self._dataset(event.data.dataset, event.data.partition)
        elif isinstance(event, PipelineInput | DatasetReset) and event.data.pipeline is not None:
            pipeline, partition = event.data.pipeline, event.data.partition
            await self._partition(pipeline, partition, everything=not partition)
            producer = event.data.producer if isinstance(event, PipelineInput) else None
            await self._fanned_from(pipeline, partition, producer)
        elif isinstance(data, TaskRef):
            await self._partition(data.pipeline, data.partition)
            await self._fanned_from(data.pipeline, data.partition)
        elif isinstance(event, PipelineAction):
            if event.data.action in ("resume", "backfill"):  # evaluates many partitions
                await self._partition(event.data.pipeline, "", everything=True)
            else:  # a cancelled item records its end in the partition that fanned out
                await self._partition(event.data.pipeline, event.data.partition)
                await self._fanned_from(event.data.pipeline, event.data.partition)

    async def page_in_partition(self, pipeline: str, partition: str) -> None:
        """Read in one partition of a pipeline and its unpartitioned inputs, to read them
        (`EmbeddedRuntime.explain`)."""
        await self._partition(pipeline, partition)
        await self._partition(pipeline, UNPARTITIONED)

    async def page_in_pipeline(self, pipeline: str) -> None:
        """Read in every partition of a pipeline."""
        await self._partition(pipeline, UNPARTITIONED, everything=True)

    def touched(
        self, partitions: Iterable[tuple[str, str]], datasets: Iterable[tuple[str, str]]
    ) -> None:
        for pipeline, key in partitions:
            self._use(("p", pipeline, key))
        for dataset, key in datasets:
            self._use(("d", dataset, key))

    def evict(self) -> None:
        """Drop the least recently used idle states beyond the limit."""
        for _ in range(len(self._recent)):
            if len(self._recent) <= self.limit:
                return
            key, _ = self._recent.popitem(last=False)
            if not self._drop(key):
                self._recent[key] = None  # live: keep it, look at the next

    def forget(self) -> None:
        """The engine's state was reloaded from the file."""
        self._recent.clear()
        self._looked_up.clear()
        self._whole.clear()

    def __len__(self) -> int:
        return len(self._recent)

    def _use(self, key: _Key) -> None:
        self._recent[key] = None
        self._recent.move_to_end(key)

    def _drop(self, key: _Key) -> bool:
        kind, name, partition = key
        if kind == "d":
            found = self.engine.datasets.get((name, partition))
            if found is not None and found.pending:
                return False
            self.engine.datasets.pop((name, partition), None)
            return True
        pst = self.engine.pipelines.get(name)
        if pst is None:
            return True
        live = (pst.active, pst.waiting, pst.held)
        if partition == UNPARTITIONED or any(partition in keys for keys in live):
            return False
        if any(bf.status == "running" for bf in pst.backfills.values()):
            return False  # a backfill judges its partitions one after another, from memory
        pst.partitions.pop(partition, None)
        self._whole.discard(name)
        return True

    async def _fanned_from(
        self, pipeline: str, partition: str, producer: str | None = None
    ) -> None:
        """An item of a fan-out records its end in the partition that fanned out (named by
        the producer of the item's input, arriving or held)."""
        app = self.engine.app
        pst = self.engine.pipelines.get(pipeline)
        if pst is None or not partition or not app.gathers_of:
            return
        found = {fanout.parent_of(producer, name) for name in app.gathers_of} if producer else set()
        part = pst.partitions.get(partition)
        if part is not None:
            found |= {parent for parent, _ in fanout.parents(app, pst, part)}
        for parent in sorted(p for p in found if p is not None):
            await self._partition(pipeline, parent)

    def _dataset_key(self, dataset: str, partition: str) -> tuple[str, str] | None:
        """The state's key, or None for what the engine will refuse."""
        found = self.engine.app.datasets.get(dataset)
        if found is None:
            return None
        try:
            return dataset, found.partitions.validate(partition)
        except EventError:
            return None

    async def _dataset(self, dataset: str, partition: str) -> None:
        key = self._dataset_key(dataset, partition)
        if key is None:
            return
        if key not in self.engine.datasets and key not in self._looked_up:
            await self.store.page_in_datasets(self.engine, [key])
        self._use(("d", *key))

    async def _partition(self, pipeline: str, partition: str, everything: bool = False) -> None:
        pst = self.engine.pipelines.get(pipeline)
        if pst is None:
            return
        if everything:
            # An unpartitioned input is evaluated in every partition of the pipeline.
            if pipeline not in self._whole:
                await self.store.page_in_partitions(self.engine, pipeline, None)
                self._whole.add(pipeline)
            for key in pst.partitions:
                self._use(("p", pipeline, key))
            return
        if partition not in pst.partitions:
            await self.store.page_in_partitions(self.engine, pipeline, [partition])
        self._use(("p", pipeline, partition))
