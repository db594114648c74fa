"""Run and router state, and the commands decisions return.

Plain dataclasses: orjson writes them as they are and a pydantic TypeAdapter reads them back, so
the same records go to SQLite (embedded) or a changelog topic (Kafka).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import TypeAdapter

from ..events import DatasetProducedData, Event, TaskRequestedData

if TYPE_CHECKING:
    from .backfill import BackfillState

TaskStatus = Literal["queued", "running", "retry_wait", "succeeded", "failed"]
IN_FLIGHT: frozenset[str] = frozenset({"queued", "running", "retry_wait"})


@dataclass(slots=True)
class InputState:
    """Latest accepted version of one input dataset, for one partition."""

    version: int
    metadata: dict[str, Any] = field(default_factory=dict)
    producer: str | None = None


@dataclass(slots=True)
class TaskRun:
    """The current (or last) run of one task in one partition."""

    run_id: str
    key: str
    attempt: int
    status: TaskStatus
    inputs: dict[str, int]
    pipeline_run: str
    requested_at: float
    started_at: float | None = None
    seen_at: float | None = None
    retry_at: float | None = None
    error: str | None = None
    outputs: list[str] = field(default_factory=list)
    worker: str | None = None
    #: Rerun counter salted into `key` (0: a run triggered by its inputs).
    rerun: int = 0
    #: W3C trace context (`traceparent`, `tracestate`) its requests carry, retries included;
    #: set by the runtime's step, opaque to the decisions.
    trace: str | None = None
    tracestate: str | None = None


@dataclass(slots=True)
class Rerun:
    """An operator's rerun of a task, waiting to start (for a run slot, or a resume)."""

    salt: int
    cause: str


@dataclass(slots=True)
class Pacing:
    """Debounce and cooldown of one task in one partition (`core.pacing`)."""

    #: When a newest input version of the task last arrived here (debounce counts from it).
    updated: float | None = None
    #: When its last run started here (cooldown counts from it).
    started: float | None = None
    #: The time a decision held back waits for; a wake is asked for it.
    due: float | None = None


@dataclass(slots=True)
class FanOutState:
    """The last fan-out of a task in a partition (`core.fanout`): the items it named, and what
    each gave once its own runs ended. A later fan-out replaces it."""

    #: The fan-out task run that named the items; each item's input names it as producer.
    run_id: str
    #: Fan-outs of the task here so far; a gather consumes this number.
    seq: int
    items: list[str] = field(default_factory=list)
    #: Items that ended well: key -> versions of the gathered datasets the item holds.
    results: dict[str, dict[str, int]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return len(self.results) + len(self.failed) >= len(self.items)


@dataclass(slots=True)
class Pause:
    """Who paused a pipeline, when and why."""

    operator: str
    reason: str
    at: float


@dataclass(slots=True)
class RunState:
    """A pipeline run in progress: the cascade for one partition."""

    run_id: str
    started_at: float
    tasks: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    expected: dict[str, int] = field(default_factory=dict)
    blocked: list[str] = field(default_factory=list)
    #: What operators did to this run (a rerun started it, a cancel ended it).
    causes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class PartitionState:
    """Everything the run decisions know about one (pipeline, partition)."""

    inputs: dict[str, InputState] = field(default_factory=dict)
    consumed: dict[str, dict[str, int]] = field(default_factory=dict)
    runs: dict[str, TaskRun] = field(default_factory=dict)
    run: RunState | None = None
    run_seq: int = 0
    #: Operators' reruns by task, waiting to start.
    reruns: dict[str, Rerun] = field(default_factory=dict)
    #: Reruns ever asked for here: each one's salt, so no run id repeats.
    rerun_seq: int = 0
    #: Newest version of an input a blocking check rejected, and why: (version, reason).
    rejected: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: Debounce and cooldown by task, for the tasks that have either.
    pacing: dict[str, Pacing] = field(default_factory=dict)
    #: The last fan-out by task, for fan-out tasks that a gather follows.
    fan_outs: dict[str, FanOutState] = field(default_factory=dict)


@dataclass(slots=True)
class PipelineState:
    """One pipeline: its partitions, and which of them hold or wait for a run slot."""

    name: str
    partitions: dict[str, PartitionState] = field(default_factory=dict)
    active: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    #: Partitions where a debounce or cooldown holds a decision back (`Pacing.due`).
    held: list[str] = field(default_factory=list)
    #: Set while an operator has the pipeline paused; kept in its header record.
    paused: Pause | None = None
    #: Ids of the last operators' actions carried out (`ACTIONS_KEPT`), so a replayed one is
    #: refused rather than carried out twice; kept in the header record.
    acted: list[str] = field(default_factory=list)
    #: Backfills by id (`core.backfill`), running and the last finished; in the header record.
    backfills: dict[str, BackfillState] = field(default_factory=dict)

    def partition(self, key: str) -> PartitionState:
        found = self.partitions.get(key)
        if found is None:
            found = self.partitions[key] = PartitionState()
        return found


@dataclass(slots=True)
class PendingVersion:
    metadata: dict[str, Any]
    producer: str | None
    results: dict[str, tuple[bool, bool, str] | None]


@dataclass(slots=True)
class DatasetState:
    """Router state of one (dataset, partition): the newest version seen, and versions
    held back until their checks finish."""

    seen: int = -1
    pending: dict[int, PendingVersion] = field(default_factory=dict)


# -- commands ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dispatch:
    """Send a task request to the workers (through the pool gate if it names a pool)."""

    request: TaskRequestedData


@dataclass(frozen=True)
class Release:
    """An attempt ended as far as the run decisions are concerned: free its pool slot, and stop
    the body if it is still running somewhere."""

    run_id: str
    pool: str | None


@dataclass(frozen=True)
class Publish:
    """Emit an event: a produced output, a routed input, a check request or a run outcome."""

    event: Event


@dataclass(frozen=True)
class Wake:
    """Call back with a tick at `at` (epoch seconds) for this pipeline."""

    at: float
    pipeline: str


Command = Dispatch | Release | Publish | Wake


@dataclass(slots=True)
class Decision:
    commands: list[Command] = field(default_factory=list)
    dirty: set[str] = field(default_factory=set)
    #: The pipeline's header (active, waiting, paused) changed though no partition did.
    header: bool = False
    #: Why the input is refused (dead-lettered), though its commands are carried out.
    refused: str | None = None
    #: A dataset version the router accepted (routed as accepted), for freshness.
    accepted: DatasetProducedData | None = None


# -- persistence ---------------------------------------------------------------------------------
_partition = TypeAdapter(PartitionState)
_dataset = TypeAdapter(DatasetState)


@contextmanager
def bulk_load() -> Iterator[None]:
    """Around a restore of many records: none of them is garbage, yet the cyclic collector
    would scan the growing heap again and again (half the restore time at 100k states). After,
    `gc.freeze` keeps the loaded state out of later collections too."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.collect()  # what is garbage now would otherwise be frozen for good
        gc.freeze()


def dump(state: PartitionState | DatasetState) -> bytes:
    if type(state) is _COMPACT:  # its stored bytes, without expanding it
        return bytes(_RAW.__get__(state, _Compact))
    return orjson.dumps(state, option=orjson.OPT_NON_STR_KEYS)


def load_partition(raw: bytes) -> PartitionState:
    return _partition.validate_json(raw)


# -- compact states ------------------------------------------------------------------------------
def finished(part: PartitionState) -> bool:
    """Nothing in the partition runs, waits or is held back, so only an event naming it (or a
    reader such as `explain`) looks at it again: worth keeping compact."""
    return (
        part.run is None
        and not part.reruns
        and all(tr.status not in IN_FLIGHT for tr in part.runs.values())
        and all(p.due is None for p in part.pacing.values())
        and all(fo.complete for fo in part.fan_outs.values())
    )


def compact(part: PartitionState, raw: bytes) -> None:
    """Keep `part` as `raw`, its stored form (`dump(part) == raw`), until something reads it.

    In place, so every reference to the state stays valid: the object becomes a `_Compact`
    (same slots), which turns back into the full `PartitionState` on its first attribute
    access. A finished state costs its stored bytes plus one object, a third of its objects."""
    for name in _FIELDS:
        _SLOTS[name].__delete__(part)
    object.__setattr__(part, "__class__", _Compact)
    _RAW.__set__(part, raw)


def _expand(obj: object) -> None:
    full = _partition.validate_json(_RAW.__get__(obj, _Compact))
    object.__setattr__(obj, "__class__", PartitionState)
    for name in _FIELDS:
        _SLOTS[name].__set__(obj, _SLOTS[name].__get__(full, PartitionState))


class _Compact:
    """A `PartitionState` held as its stored bytes (`compact`). The layout is the same, so the
    object can change class in place; reading or writing any attribute expands it first, so
    callers never see this class (`isinstance` and the dataclass's `==` read `__class__`, which
    names `PartitionState`; only `type()` tells them apart)."""

    __slots__ = PartitionState.__slots__

    def __getattribute__(self, name: str) -> Any:
        if name == "__class__":  # what `isinstance` reads; it must not expand the state first
            return PartitionState
        _expand(self)
        return getattr(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        _expand(self)  # else expanding later would overwrite what is written now
        setattr(self, name, value)

    def __eq__(self, other: object) -> bool:
        _expand(self)
        return self == other

    def __repr__(self) -> str:
        _expand(self)
        return repr(self)

    __hash__ = None  # type: ignore[assignment]  # unhashable like the dataclass it stands for


_COMPACT: type = _Compact  # `type(state)` is typed as a state class, which this is not
_FIELDS: tuple[str, ...] = PartitionState.__slots__
_SLOTS: dict[str, Any] = {name: vars(PartitionState)[name] for name in _FIELDS}
#: The first slot holds the bytes while compact (both classes have the same slot offsets).
_RAW: Any = vars(_Compact)[_FIELDS[0]]


def load_dataset(raw: bytes) -> DatasetState:
    return _dataset.validate_json(raw)
