"""What the history store's queries return: pydantic models an API can send as JSON as they are."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict, Field

#: A task attempt's status: `requested` (waiting for a worker or a pool slot), `running`, or how
#: it ended.
AttemptStatus: TypeAlias = Literal["requested", "running", "succeeded", "failed"]
RunStatus: TypeAlias = Literal["running", "succeeded", "failed"]

T = TypeVar("T")


class Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class VersionRef(Record):
    """One version of one dataset partition."""

    dataset: str = Field(description="Dataset name.")
    partition: str = Field(default="", description="Partition key; empty if none.")
    version: int = Field(description="The version.")


class DatasetVersionRecord(VersionRef):
    """A dataset version as announced, with who produced it."""

    time: datetime = Field(description="When it was announced.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Its metadata.")
    producer: str | None = Field(
        default=None, description="Task run id that produced it; absent for outside producers."
    )


class Freshness(DatasetVersionRecord):
    """The newest version of a dataset partition, and how old it is."""

    age_s: float = Field(description="Seconds between its announcement and the query's `now`.")


class LatestVersion(Freshness):
    """The newest version of a dataset, over its partitions or in one."""

    partitions: int = Field(description="Partitions of the dataset with a version.")


class FreshnessViolation(Record):
    """A dataset partition (or a task's run) late by its policy; open until `recovered_at`."""

    kind: Literal["dataset", "task"] = Field(description="Whose policy: a dataset's or a task's.")
    name: str = Field(description="The dataset, or the task.")
    pipeline: str | None = Field(default=None, description="The task's pipeline.")
    partition: str = Field(default="", description="The partition late; empty if none.")
    policy: Literal["deadline", "max_age"] = Field(description="The policy violated.")
    expected_by: datetime = Field(description="When the version (or success) was due.")
    violated_at: datetime | None = Field(default=None, description="When it was found late.")
    newest_version: int | None = Field(default=None, description="The newest version then.")
    message: str | None = Field(default=None, description="The violation in words.")
    recovered_at: datetime | None = Field(default=None, description="When it ended; none: open.")
    recovered_version: int | None = Field(default=None, description="What ended it.")


class TaskAttempt(Record):
    """One attempt of one task run, from its request to its end."""

    run_id: str = Field(description="The attempt's run id.")
    task: str = Field(description="Task name.")
    pipeline: str = Field(description="Pipeline of the task.")
    partition: str = Field(default="", description="Partition the attempt works on.")
    attempt: int = Field(description="1 for the first try, then one per retry.")
    pipeline_run_id: str | None = Field(default=None, description="Its pipeline run.")
    inputs: list[VersionRef] = Field(default_factory=list, description="Versions it consumed.")
    requested_at: datetime | None = Field(default=None, description="When it was requested.")
    started_at: datetime | None = Field(default=None, description="When a worker began it.")
    ended_at: datetime | None = Field(default=None, description="When it succeeded or failed.")
    worker: str | None = Field(default=None, description="The worker that ran it.")
    status: AttemptStatus = Field(description="Where it stands.")
    error: str | None = Field(default=None, description="Why it failed.")
    error_kind: str | None = Field(
        default=None, description="`error`, `timeout`, `lost` or `definition`, when it failed."
    )
    outputs: list[VersionRef] = Field(default_factory=list, description="Versions it emitted.")
    skipped: str | None = Field(default=None, description="Why it emitted nothing, if so.")
    duration_ms: float | None = Field(default=None, description="Time the body ran.")


class PipelineRun(Record):
    """A pipeline run for one partition."""

    run_id: str = Field(description="Pipeline run id.")
    pipeline: str = Field(description="Pipeline name.")
    partition: str = Field(default="", description="Partition of the run.")
    status: RunStatus = Field(description="`running`, `succeeded` or `failed`.")
    started_at: datetime = Field(description="When its first task triggered.")
    finished_at: datetime | None = Field(default=None, description="When it ended.")
    reason: str = Field(default="", description="Why it failed.")
    tasks: list[dict[str, Any]] = Field(
        default_factory=list, description="Each task's outcome, as the run's last event said."
    )


class RunDetail(Record):
    """A pipeline run with every task attempt it made."""

    run: PipelineRun
    attempts: list[TaskAttempt] = Field(description="In the order they were requested.")


#: What a grid cell shows: its task's last attempt's status, or, when the partition's last run
#: ended without running the task, that run's outcome for it.
CellStatus: TypeAlias = Literal[
    "requested", "running", "succeeded", "failed", "skipped", "upstream_failed"
]


class GridCell(Record):
    """One task in one partition, as a pipeline's partition grid shows it."""

    task: str = Field(description="Task name.")
    status: CellStatus = Field(description="Its last attempt's status, or its last run outcome.")
    attempt: int = Field(description="Number of its last attempt (in its series); 0 if none.")
    attempts: int = Field(description="Attempts of the task in the partition, every series.")
    run_id: str | None = Field(default=None, description="Its last attempt's run id.")
    pipeline_run_id: str | None = Field(default=None, description="The pipeline run it is of.")
    at: datetime | None = Field(default=None, description="When it ended, started or was asked.")
    detail: str | None = Field(
        default=None, description="Why it failed, emitted nothing, or never ran."
    )


class GridRow(Record):
    """One partition of a pipeline: each task's cell, by task name (tasks that never ran in it
    have none)."""

    partition: str = Field(description="Partition key.")
    last_activity: datetime = Field(description="Its newest task request or run start.")
    cells: dict[str, GridCell] = Field(description="By task name.")


class PipelineSummary(Record):
    """A pipeline's runs in the history, counted, and its newest."""

    pipeline: str
    runs: int = Field(description="Runs in the history.")
    running: int = Field(description="Of these, still running.")
    failed: int = Field(description="Of these, failed.")
    last: PipelineRun | None = Field(default=None, description="The newest started.")


class Page(Record, Generic[T]):
    """One page of a query's results."""

    items: list[T] = Field(description="This page.")
    total: int = Field(description="Results matching the filters, on every page.")
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; absent on the last."
    )


class Consumer(Record):
    """A task attempt that consumed a version, and what it produced."""

    attempt: TaskAttempt
    outputs: list[Lineage] = Field(description="Versions it produced, with their consumers.")


class Lineage(VersionRef):
    """A version with where it came from (`upstream`: the inputs of its producer, recursively)
    and where it went (`downstream`: the attempts that consumed it and their outputs)."""

    time: datetime | None = Field(default=None, description="When it was announced, if known.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Its metadata.")
    producer: TaskAttempt | None = Field(default=None, description="The attempt producing it.")
    upstream: list[Lineage] = Field(default_factory=list, description="Its producer's inputs.")
    downstream: list[Consumer] = Field(default_factory=list, description="Who consumed it.")


class InputNow(VersionRef):
    """A version a task consumed, beside the newest version of that input partition now."""

    newest: int = Field(description="The newest version of the input's partition.")
    newest_time: datetime = Field(description="When that newest version was announced.")


class Provenance(Record):
    """What a version was made from, against what is newest now, and how its checks went."""

    version: VersionRef
    producer: TaskAttempt | None = Field(
        default=None, description="The attempt that produced it; absent for outside producers."
    )
    inputs: list[InputNow] = Field(
        default_factory=list, description="The versions its producer consumed."
    )
    checks: list[CheckOutcome] = Field(
        default_factory=list, description="The newest outcome of each check on this version."
    )


class CheckOutcome(Record):
    """The result of one data check on one dataset version."""

    run_id: str
    check: str
    dataset: str
    partition: str
    version: int
    passed: bool
    blocking: bool
    message: str
    worker: str
    time: datetime


class DeadLetterRecord(Record):
    """An input eventflow refused, summed up (the original bytes stay in the event log)."""

    id: str = Field(description="The dead letter's event id.")
    time: datetime
    reason: str
    origin: str
    size: int = Field(description="Bytes of the refused input.")
    sha256: str = Field(description="Hash of the whole refused input.")
    excerpt: str = Field(description="Its first bytes as text, undecodable bytes replaced.")
    truncated: bool = Field(description="Whether the event kept only a prefix of the input.")


class LogLine(Record):
    """One line a task body logged."""

    run_id: str
    seq: int = Field(description="The log event's number within the attempt.")
    line: int = Field(description="The line's index within that event.")
    task: str
    pipeline: str
    partition: str
    attempt: int
    time: datetime
    level: str
    message: str
    truncated: bool = Field(description="Whether lines were dropped after this event's lines.")


class EventRecord(Record):
    """An event as the store keeps it."""

    seq: int = Field(description="Order of arrival in the store; `after_seq` pages on it.")
    id: str
    type: str
    time: datetime
    subject: str | None = None
    dataset: str | None = None
    pipeline: str | None = None
    partition: str | None = None
    run_id: str | None = None
    correlation: str | None = None
    body: dict[str, Any] = Field(description="The whole CloudEvent as JSON.")


Provenance.model_rebuild()
Consumer.model_rebuild()
Lineage.model_rebuild()
