"""What a task or check body receives: who it is, its partition, its inputs, a logger, `emit`.

Bodies see frozen copies (`TaskInfo`, `Input`), never the definitions the engine decides with.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar, overload

from .datasets import Dataset, DatasetLike, dataset_name
from .errors import DefinitionError, EventError
from .events import DEFAULT_MAX_METADATA_BYTES, DatasetVersion, Metadata, check_metadata
from .partitions import MAX_DYNAMIC_KEY, dynamic

_T = TypeVar("_T")


@dataclass(frozen=True)
class TaskInfo:
    """The definition of the running task, as a body may read it.

    `partitioning` is the kind of partition the task runs per (`"daily"`...), None when it runs
    unpartitioned; `timeout_s` is the limit this attempt runs under; `retries` is how many
    attempts may follow a failed one, so `ctx.attempt > ctx.task.retries` marks the last.
    """

    name: str
    pipeline: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    partitioning: str | None = None
    trigger: str = "all"
    pool: str | None = None
    timeout_s: float | None = None
    retries: int = 0
    #: The most partitions of its dynamic outputs a run may emit, when it fans out.
    fan_out: int | None = None
    #: Whether it gathers a fan-out's items (`TaskContext.items`).
    gather: bool = False
    #: Outputs whose partitions a fan-out names (`emit(ds, partition=key)`).
    dynamic_outputs: tuple[str, ...] = ()
    #: The longest key each of `dynamic_outputs` accepts (its `dynamic(max_length)`).
    dynamic_key_lengths: tuple[int, ...] = ()


@dataclass(frozen=True)
class Input:
    """The version of one input dataset a run consumes, with the metadata it was produced with."""

    dataset: str
    partition: str
    version: int
    metadata: Metadata

    @classmethod
    def of(cls, ref: DatasetVersion) -> Input:
        """A copy of `ref`, so a body changing the metadata changes nothing shared."""
        return cls(ref.dataset, ref.partition, ref.version, dict(ref.metadata))


class Inputs(Mapping[str, Input]):
    """A run's inputs keyed by dataset name; the `Dataset` itself works as a key too."""

    __slots__ = ("_by_name",)

    def __init__(self, inputs: Iterable[Input] = ()) -> None:
        self._by_name = {i.dataset: i for i in inputs}

    def __getitem__(self, key: DatasetLike) -> Input:
        name = dataset_name(key)
        try:
            return self._by_name[name]
        except KeyError:
            known = sorted(self._by_name)
            raise KeyError(f"{name!r} is not an input of this run: {known}") from None

    def __contains__(self, key: object) -> bool:
        return (key.name if isinstance(key, Dataset) else key) in self._by_name

    @overload
    def get(self, key: DatasetLike, /) -> Input | None: ...
    @overload
    def get(self, key: DatasetLike, default: Input | _T, /) -> Input | _T: ...
    def get(self, key: DatasetLike, default: object = None, /) -> object:
        """The input of `key` (a name or a `Dataset`), `default` when the run has none."""
        return self._by_name.get(dataset_name(key), default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __repr__(self) -> str:
        return f"Inputs({self._by_name!r})"


@dataclass(frozen=True)
class Item:
    """One item of the fan-out a gathering task sees: its key, how its run ended, and the
    version of the gathered dataset it produced (None if it produced none)."""

    key: str
    status: str
    version: int | None


@dataclass
class TaskContext:
    """Passed to a task body: which task, partition, run and attempt, the inputs, and `emit`.

    A body that never calls `emit` produces every declared output; one that does produces only
    those it named (that is how it branches). Raise `eventflow.Skip` to produce nothing, and
    `eventflow.Fail` to fail the run without a retry.
    """

    task: TaskInfo
    partition: str
    run_id: str
    attempt: int
    inputs: Inputs
    log: logging.Logger
    max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES
    emitted: dict[str, Metadata] = field(default_factory=dict)
    #: Partitions of dynamic outputs named at run time: dataset -> key -> metadata.
    fanned: dict[str, dict[str, Metadata]] = field(default_factory=dict)
    #: For a gathering task, every item of the fan-out, in key order.
    items: tuple[Item, ...] = ()
    #: Set by `emit` when the body names an output it does not declare: the attempt then fails
    #: without a retry, even if the body caught the error.
    definition_error: str | None = field(default=None, init=False)

    def emit(
        self,
        dataset: DatasetLike,
        metadata: Metadata | None = None,
        *,
        partition: str | None = None,
        **meta: Any,
    ) -> None:
        """Produce `dataset` (one of the declared outputs) when the body returns, with
        `metadata` and `meta` merged; raises `DefinitionError` for any other dataset.

        A task that fans out names the `partition` of a `dynamic()` output, once per item; more
        distinct keys than its `max_width`, or a malformed key, fail the run without a retry."""
        name = dataset_name(dataset)
        if name not in self.task.outputs:
            self._refuse(
                f"task {self.task.name!r} emitted {name!r}, which is not one of its declared "
                f"outputs {list(self.task.outputs)}"
            )
        if name not in self.task.dynamic_outputs:
            if partition is not None:  # a metadata field, as before fan-outs named partitions
                meta = {"partition": partition, **meta}
            merged = check_metadata({**(metadata or {}), **meta}, self.max_metadata_bytes)
            self.emitted[name] = merged
            return
        merged = check_metadata({**(metadata or {}), **meta}, self.max_metadata_bytes)
        if partition is None:
            self._refuse(f"{name!r} is partitioned dynamic(): name the partition to emit")
        lengths = dict(zip(self.task.dynamic_outputs, self.task.dynamic_key_lengths, strict=False))
        try:
            key = dynamic(lengths.get(name, MAX_DYNAMIC_KEY)).validate(partition)
        except EventError as e:
            self._refuse(f"task {self.task.name!r}: {e.reason}")
        keys = self.fanned.setdefault(name, {})
        width = self.task.fan_out or 0
        named = {k for found in self.fanned.values() for k in found}  # items: every output's
        if key not in named and len(named) >= width:
            self._refuse(
                f"task {self.task.name!r} fanned out to more than max_width={width} partitions "
                f"of {name!r}"
            )
        keys[key] = merged

    def fan_out(self, dataset: DatasetLike, keys: Iterable[str]) -> None:
        """Emit one partition of the dynamic output `dataset` per key (see `emit`)."""
        for key in keys:
            self.emit(dataset, partition=key)

    def _refuse(self, message: str) -> NoReturn:
        if self.definition_error is None:
            self.definition_error = message
        raise DefinitionError(message)

    def outputs(self) -> dict[str, Metadata]:
        """What the attempt produces: the emitted outputs, or every declared one if none was."""
        if self.emitted or self.fanned:
            return self.emitted
        return {name: {} for name in self.task.outputs if name not in self.task.dynamic_outputs}


@dataclass(frozen=True)
class CheckContext:
    """Passed to a check body: the dataset version under test and a logger."""

    check: str
    dataset: str
    partition: str
    version: int
    metadata: Metadata
    log: logging.Logger
