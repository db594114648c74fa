"""What a task or check body receives: its partition, its inputs, a logger, and `emit`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from .definitions import Dataset, DatasetLike, Task
from .errors import EventError
from .events import DatasetVersion, Metadata, check_metadata


@dataclass(frozen=True)
class Input:
    """The version of one input dataset a run consumes."""

    dataset: str
    partition: str
    version: int
    metadata: Metadata

    @classmethod
    def of(cls, ref: DatasetVersion) -> Input:
        return cls(ref.dataset, ref.partition, ref.version, dict(ref.metadata))


@dataclass
class TaskContext:
    """Passed to a task body. Calling `emit` chooses outputs: a task that never calls it emits
    every declared output; one that does emits only those it named (that is how it branches).
    Raise `eventflow.Skip` to emit nothing."""

    task: Task
    partition: str
    run_id: str
    attempt: int
    inputs: dict[str, Input]
    log: logging.Logger
    max_metadata_bytes: int
    emitted: dict[str, Metadata] = field(default_factory=dict)

    def emit(self, dataset: DatasetLike, metadata: Metadata | None = None, **meta: Any) -> None:
        name = dataset.name if isinstance(dataset, Dataset) else dataset
        if name not in self.task.outputs:
            raise EventError(
                f"task {self.task.name!r} cannot emit {name!r}: not one of its outputs "
                f"{list(self.task.outputs)}"
            )
        self.emitted[name] = check_metadata({**(metadata or {}), **meta}, self.max_metadata_bytes)

    def outputs(self) -> dict[str, Metadata]:
        if self.emitted:
            return self.emitted
        return {name: {} for name in self.task.outputs}


@dataclass(frozen=True)
class CheckContext:
    """Passed to a check body: the dataset version under test."""

    check: str
    dataset: str
    partition: str
    version: int
    metadata: Metadata
    log: logging.Logger
