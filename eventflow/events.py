"""Every event eventflow reads or writes, as CloudEvents 1.0 in structured JSON mode.

The envelope carries the CloudEvents attributes (`specversion`, `id`, `source`, `type`, `time`,
`subject`, `datacontenttype`, `dataschema`) plus two extension attributes of ours: `schemaversion`
(of our payloads) and `correlationid` (the pipeline run an event belongs to). Any other producer's
extension attributes (`traceparent`...) are kept as they came, so an event written by any
CloudEvents SDK is accepted. Payloads sit in `data`. orjson does the wire; pydantic checks the
shape, so an invalid event fails with a reason a dead letter keeps. Kafka's binary content mode
(attributes in `ce_` headers) is turned into the structured form by `from_binary`.
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Generic, Literal, Self, TypeAlias, Union

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from typing_extensions import TypeVar

from .errors import EventError, MetadataTooLarge

SCHEMA_VERSION = 1
DEFAULT_MAX_METADATA_BYTES = 64 * 1024
#: Largest version: versions are signed 64-bit integers everywhere they are stored.
MAX_VERSION = 2**63 - 1
#: Longest dataset, task, pipeline, check or pool name, and partition key.
MAX_NAME = 200
#: Longest run id (ids are built from a name, a partition key and a few short parts).
MAX_ID = 4 * MAX_NAME
#: Longest free-text field (an error, a reason, a check's message).
MAX_TEXT = 8 * 1024
#: Bytes of a refused input that its dead letter keeps; the rest is summed up by size and hash.
DEAD_LETTER_PREFIX = 4 * 1024
#: Most log lines one `TaskLog` chunk carries.
MAX_LOG_LINES = 1000

Metadata: TypeAlias = dict[str, Any]
Version: TypeAlias = Annotated[
    int,
    Field(
        strict=True,
        ge=1,
        le=MAX_VERSION,
        description="Monotonic version of this partition (table version, or publish time in "
        "microseconds), 1..2^63-1; a repeated or older version is ignored.",
    ),
]
Name: TypeAlias = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
PartitionKey: TypeAlias = Annotated[str, Field(max_length=MAX_NAME)]
RunId: TypeAlias = Annotated[str, Field(min_length=1, max_length=MAX_ID)]
Text: TypeAlias = Annotated[str, Field(max_length=MAX_TEXT)]


def utcnow() -> datetime:
    return datetime.now(UTC)


def metadata_size(metadata: Metadata) -> int:
    return len(orjson.dumps(metadata))


def check_metadata(metadata: Metadata, limit: int) -> Metadata:
    try:
        size = metadata_size(metadata)
    except TypeError as e:
        raise EventError(f"metadata is not JSON-serializable: {e}") from e
    if size > limit:
        raise MetadataTooLarge(
            f"metadata is {size} bytes, over the {limit}-byte limit "
            "(events carry paths and counts, never data)"
        )
    return metadata


class Payload(BaseModel):
    """The `data` of an event: frozen, and refusing fields it does not know."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetVersion(Payload):
    """One produced version of one partition of a dataset."""

    dataset: Name = Field(description="Dataset name, e.g. `raw.gps_telemetry`.")
    partition: PartitionKey = Field(
        default="", description="Partition key (`2026-11-22`, `2026-11-22T07`); empty if none."
    )
    version: Version
    metadata: Metadata = Field(
        default_factory=dict,
        description="Small facts about the data (path, row count, schema hash), never the data.",
    )

    @field_validator("metadata")
    @classmethod
    def _limit_metadata(cls, value: Metadata, info: ValidationInfo) -> Metadata:
        limit = (info.context or {}).get("max_metadata_bytes", DEFAULT_MAX_METADATA_BYTES)
        try:
            return check_metadata(value, limit)
        except EventError as e:
            raise ValueError(e.reason) from e


class DatasetProducedData(DatasetVersion):
    """A dataset version announced, by an outside producer or by a task run."""

    producer: RunId | None = Field(
        default=None, description="Task run id that produced it; absent for external producers."
    )


class TaskRef(Payload):
    """Which attempt of which task run an event is about."""

    run_id: RunId = Field(description="Derived from task, partition, input versions and attempt.")
    task: Name = Field(description="Task name.")
    pipeline: Name = Field(description="Pipeline the task belongs to.")
    partition: PartitionKey = Field(default="", description="Partition the run works on.")
    attempt: int = Field(
        default=1,
        strict=True,
        ge=1,
        le=1_000_000,
        description="1 for the first try, then one per retry.",
    )


class FanOutItem(Payload):
    """One item of a fan-out, as the task gathering them sees it."""

    key: PartitionKey = Field(description="The item's partition key.")
    status: Literal["succeeded", "failed"] = Field(
        description="How the item's run ended (`succeeded` also when it emitted nothing)."
    )
    version: Version | None = Field(
        default=None, description="Version of the gathered dataset for the item, if emitted."
    )


class TaskRequestedData(TaskRef):
    """A task run for a worker to execute, with the input versions it consumes."""

    pipeline_run_id: RunId = Field(description="The pipeline run this task run is part of.")
    inputs: list[DatasetVersion] = Field(description="Input versions this run consumes.")
    timeout_s: float = Field(gt=0, description="Seconds the body may run.")
    pool: Name | None = Field(default=None, description="Shared concurrency pool, if any.")
    items: list[FanOutItem] | None = Field(
        default=None,
        description="For a task that gathers a fan-out: every item, in key order (absent for "
        "any other task, so workers of earlier versions keep taking their requests).",
    )


class TaskProgressData(TaskRef):
    """A task run a worker has started, or is still running (a heartbeat)."""

    worker: Annotated[str, Field(max_length=MAX_NAME)] = Field(
        description="Identity of the worker running the task."
    )


class TaskSucceededData(TaskProgressData):
    """A task run that finished, with the dataset versions it emitted."""

    outputs: list[DatasetVersion] = Field(description="Outputs emitted; the rest were skipped.")
    skipped: Text | None = Field(default=None, description="Why the task emitted nothing, if so.")
    duration_ms: float = Field(ge=0, description="Time the body ran.")


class TaskFailedData(TaskProgressData):
    """A task run that failed, and whether the retry policy may run it again."""

    error: Text = Field(description="What went wrong, one line.")
    kind: Literal["error", "timeout", "lost", "definition", "cancelled"] = Field(
        description="`error`: the body raised; `timeout`: it ran too long; `lost`: its worker "
        "stopped reporting; `definition`: the worker does not know the task, or the body emitted "
        "an output the task does not declare; `cancelled`: an operator cancelled its run."
    )
    retriable: bool = Field(
        default=True,
        description="Whether the retry policy may run it again: not after `eventflow.Fail` or a "
        "`definition` failure.",
    )
    duration_ms: float = Field(default=0, ge=0, description="Time the body ran.")


class CheckRequestedData(Payload):
    """A data check to run against one dataset version."""

    run_id: RunId = Field(description="Derived from check, dataset, partition and version.")
    check: Name = Field(description="Check name.")
    target: DatasetVersion = Field(description="The dataset version to check.")
    timeout_s: float = Field(gt=0, description="Seconds the check may run.")


class CheckCompletedData(Payload):
    """The result of a data check on one dataset version."""

    run_id: RunId = Field(description="The check run.")
    check: Name = Field(description="Check name.")
    target: DatasetVersion = Field(description="The dataset version checked.")
    passed: bool = Field(description="Whether the data passed.")
    blocking: bool = Field(
        description="A failing blocking check stops everything downstream (as its definition "
        "says; the coordinator reads the definition, not this field)."
    )
    message: Text = Field(default="", description="What the check found.")
    worker: Annotated[str, Field(max_length=MAX_NAME)] = Field(
        default="", description="Identity of the worker that ran it."
    )


class PipelineInputData(DatasetProducedData):
    """A dataset version routed to one consuming pipeline, after its checks."""

    pipeline: Name = Field(description="The consuming pipeline this input is routed to.")
    accepted: bool = Field(default=True, description="False when a blocking check rejected it.")
    reason: Text = Field(default="", description="Why it was rejected.")


class DatasetResetData(Payload):
    """An operator's reset of a dataset's newest-version mark, so older versions count again."""

    dataset: Name = Field(description="Dataset whose newest-version mark is set back.")
    partition: PartitionKey = Field(default="", description="Partition key; empty if none.")
    version: int = Field(
        strict=True,
        ge=0,
        le=MAX_VERSION,
        description="The newest version counted as seen from now on; later versions above it are "
        "accepted again. 0 forgets every version.",
    )
    reason: Text = Field(default="", description="Why the operator reset it.")
    pipeline: Name | None = Field(
        default=None,
        description="Set by the router when it passes the reset on to a consuming pipeline.",
    )


class LogLine(Payload):
    """One line a task body logged or printed."""

    time: datetime = Field(description="When the line was written (UTC).")
    level: Annotated[str, Field(min_length=1, max_length=MAX_NAME)] = Field(
        description="Logging level name (`INFO`, `WARNING`...), or `STDOUT` / `STDERR` for what "
        "a blocking body printed."
    )
    message: Text = Field(description="The line, with its traceback if one was logged.")


class TaskLogData(TaskRef):
    """A chunk of what one task attempt logged, in order; chunks of an attempt count up by
    `seq`, so a reader puts them together however they arrive."""

    seq: int = Field(
        strict=True, ge=0, le=1_000_000, description="0, 1, 2... per attempt, in order written."
    )
    lines: list[LogLine] = Field(
        max_length=MAX_LOG_LINES, description="The lines of this chunk, oldest first."
    )
    truncated: bool = Field(
        default=False,
        description="Lines of this attempt were dropped by now, over the worker's "
        "`task_log_max_bytes`; the attempt's last chunk ends with a line saying how many.",
    )


#: What an operator may do to a pipeline (`PipelineActionData.action`).
Action: TypeAlias = Literal[
    "pause", "resume", "rerun_task", "rerun_run", "cancel", "backfill", "cancel_backfill"
]
#: Actions aimed at one partition (pause and resume concern the whole pipeline).
PARTITION_ACTIONS: frozenset[str] = frozenset({"rerun_task", "rerun_run", "cancel"})
#: Most partitions one backfill covers (a range or a list).
MAX_BACKFILL = 100_000
BackfillMode: TypeAlias = Literal["missing", "failed", "all"]


class BackfillPlan(Payload):
    """What a backfill covers and how fast it goes; the partitions are a range (`start` to
    `end`, both included, in the partitioning of the tasks it starts) or a list."""

    dataset: Name | None = Field(
        default=None,
        description="From this dataset downward: start the pipeline's tasks that consume it "
        "(unset: the pipeline's entry tasks).",
    )
    start: PartitionKey | None = Field(default=None, description="First partition of a range.")
    end: PartitionKey | None = Field(default=None, description="Last partition of a range.")
    partitions: list[PartitionKey] | None = Field(
        default=None, max_length=MAX_BACKFILL, description="The partitions, instead of a range."
    )
    mode: BackfillMode = Field(
        default="missing",
        description="`missing`: partitions where those tasks never ran; `failed`: where the "
        "last run failed; `all`: both, and where they ran on older input versions. A task that "
        "succeeded on the input versions it would run on is never run again.",
    )
    max_active: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=4, description="Most runs of the backfill in progress at a time."
    )
    reverse: bool = Field(default=False, description="Newest partition first.")

    @model_validator(mode="after")
    def _one_choice(self) -> Self:
        ranged = self.start is not None or self.end is not None
        if ranged == (self.partitions is not None):
            raise ValueError("give a range (`start` and `end`) or `partitions`, one of them")
        if ranged and (self.start is None or self.end is None):
            raise ValueError("a range needs both `start` and `end`")
        return self


class PipelineActionData(Payload):
    """An operator's action on a pipeline, decided by the coordinator like any other input."""

    pipeline: Name = Field(description="The pipeline acted on.")
    action: Action = Field(
        description="`pause`: no new run or task attempt starts until `resume` (inputs are kept "
        "and decided on resume); `rerun_task`: a new attempt series of `task` in `partition` on "
        "the input versions it last consumed; `rerun_run`: the same for the pipeline's entry "
        "tasks; `cancel`: the active run of `partition` ends failed, its attempts stopped; "
        "`backfill`: runs over the partitions `plan` names, a few at a time; `cancel_backfill`: "
        "that backfill starts no more runs."
    )
    partition: PartitionKey = Field(
        default="", description="Partition of `rerun_task`, `rerun_run` and `cancel`."
    )
    task: Name | None = Field(default=None, description="The task of `rerun_task`, only.")
    backfill: Name | None = Field(
        default=None, description="The backfill's id, of `backfill` and `cancel_backfill` only."
    )
    plan: BackfillPlan | None = Field(default=None, description="What `backfill` covers, only.")
    reason: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)] = Field(
        description="Why the operator acts (kept in the event log and in the run's outcome)."
    )
    operator: Annotated[str, Field(min_length=1, max_length=MAX_NAME)] = Field(
        description="Who acts: a person or a tool."
    )

    @model_validator(mode="after")
    def _fits_action(self) -> Self:
        if (self.task is not None) != (self.action == "rerun_task"):
            raise ValueError("`task` is given with `rerun_task` and only with it")
        if self.partition and self.action not in PARTITION_ACTIONS:
            raise ValueError(f"`{self.action}` concerns the whole pipeline: give no partition")
        if (self.backfill is not None) != (self.action in ("backfill", "cancel_backfill")):
            raise ValueError("`backfill` is given with `backfill` and `cancel_backfill` only")
        if (self.plan is not None) != (self.action == "backfill"):
            raise ValueError("`plan` is given with `backfill` and only with it")
        return self

    def describe(self) -> str:
        """The action as the run outcome and logs tell it."""
        what = {
            "pause": "paused",
            "resume": "resumed",
            "rerun_task": f"task {self.task!r} rerun",
            "rerun_run": "run rerun",
            "cancel": "cancelled",
            "backfill": f"backfill {self.backfill}",
            "cancel_backfill": f"backfill {self.backfill} cancelled",
        }[self.action]
        return f"{what} by {self.operator}: {self.reason}"


#: What became of an input from outside, at one stage (`DecisionData.outcome`).
Outcome: TypeAlias = Literal[
    "routed", "held", "ignored", "unused", "rejected", "triggered", "waiting", "paused"
]


class DecisionData(Payload):
    """What a stage decided about a dataset version announced from outside: the router (routed
    to its pipelines, held for checks, ignored as not newer) and then each consuming pipeline
    (runs triggered, or why not). `correlation` ties them to the announcement: its
    `correlationid`, or its id if it had none."""

    correlation: RunId = Field(description="The announcement's correlation id (or its id).")
    stage: Literal["router", "pipeline"] = Field(description="Who decided.")
    dataset: Name = Field(description="The dataset announced.")
    partition: PartitionKey = Field(default="", description="Its partition; empty if none.")
    version: Version
    pipeline: Name | None = Field(default=None, description="The pipeline, at its stage.")
    outcome: Outcome = Field(
        description="router: `routed` (to `pipelines`), `held` (for checks), `ignored` (not "
        "newer than a version seen), `unused` (no pipeline consumes it); pipeline: `rejected` "
        "(a blocking check failed), `ignored`, `triggered` (`runs`, `tasks`), `waiting` or "
        "`paused` (`detail` says for what)."
    )
    detail: Text = Field(description="The decision in words.")
    pipelines: list[Name] = Field(default_factory=list, description="Routed to these.")
    runs: list[RunId] = Field(default_factory=list, description="Pipeline runs it set going.")
    tasks: list[Name] = Field(default_factory=list, description="Tasks it requested.")


class FreshnessData(Payload):
    """A freshness policy violated, or recovered: a dataset (or a task's run) that is late."""

    kind: Literal["dataset", "task"] = Field(description="Whose policy: a dataset's or a task's.")
    name: Name = Field(description="The dataset, or the task.")
    pipeline: Name | None = Field(
        default=None, description="The task's pipeline; none for a dataset."
    )
    partition: PartitionKey = Field(
        default="", description="The partition late; empty if unpartitioned or for `max_age`."
    )
    policy: Literal["deadline", "max_age"] = Field(
        description="`deadline`: nothing by a cron tick; `max_age`: nothing new for too long."
    )
    expected_by: datetime = Field(description="When the version (or success) was due (UTC).")
    since: datetime = Field(description="When the violation was found (UTC).")
    newest_version: int | None = Field(
        default=None, description="The newest version seen then (a task's: none)."
    )
    message: Text = Field(description="The violation, or its end, in words.")


class PoolReleasedData(Payload):
    """A pool slot freed because the task run holding it ended."""

    run_id: RunId = Field(description="The task run whose attempt ended.")
    pool: Name = Field(description="The pool whose slot it held.")


class TaskOutcome(Payload):
    """How one task of a pipeline run ended."""

    task: str = Field(description="Task name.")
    status: Literal["succeeded", "failed", "skipped", "upstream_failed"] = Field(
        description="`succeeded`: it ran to the end (emitting its outputs or skipping them); "
        "`failed`: its last attempt failed; `skipped`: it never ran, the inputs it waits for "
        "were not emitted; `upstream_failed`: it never ran, a task it depends on failed or a "
        "blocking check rejected its input."
    )
    run_id: str | None = Field(default=None, description="Its last task run; absent if none.")
    attempts: int = Field(default=0, description="Attempts it took; 0 if it never ran.")
    error: str | None = Field(default=None, description="Why its last attempt failed.")
    outputs: list[str] = Field(default_factory=list, description="Datasets the task emitted.")


class PipelineRunData(Payload):
    """A pipeline run for one partition: its status and each task's outcome."""

    pipeline: str = Field(description="Pipeline name.")
    partition: str = Field(default="", description="Partition of the run.")
    run_id: str = Field(description="Pipeline run id.")
    status: Literal["running", "succeeded", "failed"] = Field(
        description="`running` in `started` events; then `failed` if a task failed for good, "
        "else `succeeded`."
    )
    started_at: datetime = Field(description="When the first task triggered.")
    finished_at: datetime | None = Field(default=None, description="When the last one finished.")
    tasks: list[TaskOutcome] = Field(default_factory=list, description="Outcome of each task.")
    reason: str = Field(
        default="",
        description="Why the run failed, and what an operator did to it (a rerun that started "
        "it, a cancel that ended it).",
    )


class DeadLetterData(Payload):
    """An input refused as malformed or invalid, kept with the reason."""

    reason: str = Field(description="Why the input was refused.")
    original: str = Field(
        description=f"The refused bytes, base64: all of them, or the first {DEAD_LETTER_PREFIX} "
        "when `truncated`."
    )
    size: int = Field(default=0, ge=0, description="Length of the refused input in bytes.")
    sha256: str = Field(default="", description="SHA-256 of the whole refused input, hex.")
    truncated: bool = Field(default=False, description="Whether `original` is only a prefix.")
    origin: str = Field(default="", description="Topic or entry point it arrived on.")

    @property
    def original_bytes(self) -> bytes:
        """The refused input as it arrived (its prefix when `truncated`)."""
        return base64.b64decode(self.original)


def new_id() -> str:
    """128 random bits in hex, like `uuid4().hex` but without a system call per event (the
    `random` module is seeded from the OS at start and again after a fork)."""
    return f"{random.getrandbits(128):032x}"


#: What an extension attribute's name may be (CloudEvents 1.0: lowercase letters and digits).
EXTENSION_NAME = re.compile(rf"^[a-z0-9]{{1,{MAX_NAME}}}$")
#: CloudEvents' integer type is signed 32-bit.
ExtensionValue: TypeAlias = (
    StrictBool
    | Annotated[StrictInt, Field(ge=-(2**31), le=2**31 - 1)]
    | Annotated[StrictStr, Field(max_length=MAX_TEXT)]
)
#: Attributes every CloudEvent carries; eventflow fills them in for its own events, but an
#: event from outside without one of them is not a CloudEvent.
REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type")
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def is_json_media_type(value: str) -> bool:
    """`application/json`, `text/json` or a `+json` type, with or without parameters."""
    essence = value.split(";", 1)[0].strip().lower()
    return essence in ("application/json", "text/json") or (
        essence.endswith("+json") and "/" in essence
    )


_T = TypeVar("_T")
#: The `type` attribute; each event class narrows it to its own literal.
EventType: TypeAlias = Annotated[
    _T, Field(description="CloudEvents type: what happened; it fixes the shape of `data`.")
]
#: The payload type of an event; a bare `Event` is an event of any payload.
D = TypeVar("D", bound=Payload, default=Payload, covariant=True)


class Event(BaseModel, Generic[D]):
    """A CloudEvents 1.0 envelope around a payload of type `D`.

    Each event class fixes `type` and its payload (`DatasetProduced(Event[DatasetProducedData])`),
    so `event.data` is typed wherever the event's class is known.
    """

    # Unknown attributes are extensions; their names are checked below, their values typed here.
    model_config = ConfigDict(
        extra="allow",
        frozen=True,
        json_schema_extra={"propertyNames": {"pattern": EXTENSION_NAME.pattern}},
    )
    __pydantic_extra__: dict[str, ExtensionValue] = Field(init=False)
    event_type: ClassVar[str]

    specversion: Literal["1.0"] = Field(default="1.0", description="CloudEvents spec version.")
    id: Annotated[str, Field(min_length=1, max_length=MAX_NAME)] = Field(
        default_factory=lambda: new_id(), description="Unique event id."
    )
    source: Annotated[str, Field(min_length=1, max_length=MAX_NAME)] = Field(
        default="eventflow", description="Who emitted the event."
    )
    type: EventType[str]
    time: datetime = Field(default_factory=utcnow, description="When it was emitted (UTC).")
    subject: Annotated[str, Field(max_length=MAX_ID)] | None = Field(
        default=None, description="What it is about."
    )
    datacontenttype: Annotated[str, Field(max_length=MAX_NAME)] = Field(
        default="application/json",
        description="Media type of `data`: `application/json` or another JSON type "
        "(`application/json; charset=utf-8`, `application/vnd.x+json`), kept as given.",
    )
    dataschema: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)] | None = Field(
        default=None, description="URI of the schema `data` follows, as the producer gave it."
    )
    schemaversion: int = Field(default=SCHEMA_VERSION, description="Version of the payload schema.")
    correlationid: RunId | None = Field(default=None, description="Pipeline run it belongs to.")
    data: D = Field(description="The payload, its shape fixed by `type`.")

    @field_validator("datacontenttype")
    @classmethod
    def _json_content(cls, value: str) -> str:
        if not is_json_media_type(value):
            raise ValueError(f"{value!r} is not a JSON media type: eventflow's `data` is JSON")
        return value

    @field_validator("dataschema")
    @classmethod
    def _absolute_uri(cls, value: str | None) -> str | None:
        if value is not None and not _URI_SCHEME.match(value):
            raise ValueError(f"{value!r} is not an absolute URI")
        return value

    @model_validator(mode="before")
    @classmethod
    def _extensions(cls, values: Any) -> Any:
        """One clear reason per bad extension (the typed extras alone would list three)."""
        if not isinstance(values, dict):
            return values
        # The class's own dict: `model_fields` goes through a deprecation descriptor that cost
        # more than the rest of validating an event.
        fields = cls.__pydantic_fields__
        for name, value in values.items():
            if name in fields:
                continue
            if not isinstance(name, str) or not EXTENSION_NAME.match(name):
                raise ValueError(
                    f"{name!r} is not a CloudEvents attribute name (lowercase a-z and 0-9 only)"
                )
            if not isinstance(value, bool | int | str):
                raise ValueError(
                    f"extension {name!r} is a {type(value).__name__}: CloudEvents attributes "
                    "are strings, integers or booleans"
                )
        return values

    @property
    def extensions(self) -> dict[str, ExtensionValue]:
        """Extension attributes other producers set (`traceparent`...), kept as they came."""
        return dict(self.model_extra or {})

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if not cls.__pydantic_generic_metadata__["args"]:  # not `Event[X]` itself
            cls.event_type = cls.model_fields["type"].default

    @classmethod
    # A constructor: the payload is stored, never read back through a wider type, so taking the
    # covariant `D` as a parameter is safe, and it checks the payload matches the event class.
    def of(cls, data: D, **envelope: Any) -> Self:  # type: ignore[misc]
        """The event carrying `data`, its `subject` derived from the payload unless given."""
        envelope.setdefault("subject", cls._subject(data))
        return cls(data=data, **envelope)

    @staticmethod
    def _subject(data: Payload) -> str | None:
        if isinstance(data, TaskRef | CheckRequestedData | CheckCompletedData | PoolReleasedData):
            return data.run_id
        if isinstance(data, DatasetVersion):
            return f"{data.dataset}/{data.partition}" if data.partition else data.dataset
        if isinstance(data, PipelineRunData):
            return data.run_id
        if isinstance(data, FreshnessData):
            return f"{data.name}/{data.partition}" if data.partition else data.name
        if isinstance(data, PipelineActionData):
            return f"{data.pipeline}/{data.partition}" if data.partition else data.pipeline
        return None


class DatasetProduced(Event[DatasetProducedData]):
    """A new version of a dataset partition exists; it triggers whatever consumes it."""

    type: EventType[Literal["eventflow.dataset.produced"]] = "eventflow.dataset.produced"


class TaskRequested(Event[TaskRequestedData]):
    """A worker should run this task run."""

    type: EventType[Literal["eventflow.task.requested"]] = "eventflow.task.requested"


class TaskStarted(Event[TaskProgressData]):
    """A worker began a task run."""

    type: EventType[Literal["eventflow.task.started"]] = "eventflow.task.started"


class TaskHeartbeat(Event[TaskProgressData]):
    """A worker is still running a task run."""

    type: EventType[Literal["eventflow.task.heartbeat"]] = "eventflow.task.heartbeat"


class TaskSucceeded(Event[TaskSucceededData]):
    """A task run finished and emitted its outputs."""

    type: EventType[Literal["eventflow.task.succeeded"]] = "eventflow.task.succeeded"


class TaskFailed(Event[TaskFailedData]):
    """A task run failed; the coordinator retries it or fails the pipeline run."""

    type: EventType[Literal["eventflow.task.failed"]] = "eventflow.task.failed"


class CheckRequested(Event[CheckRequestedData]):
    """A worker should run this data check."""

    type: EventType[Literal["eventflow.check.requested"]] = "eventflow.check.requested"


class CheckCompleted(Event[CheckCompletedData]):
    """A data check passed or failed."""

    type: EventType[Literal["eventflow.check.completed"]] = "eventflow.check.completed"


class PipelineInput(Event[PipelineInputData]):
    """A dataset version routed to a pipeline that consumes it."""

    type: EventType[Literal["eventflow.pipeline.input"]] = "eventflow.pipeline.input"


class PipelineRunStarted(Event[PipelineRunData]):
    """A pipeline run began: its first task was triggered."""

    type: EventType[Literal["eventflow.pipeline.run.started"]] = "eventflow.pipeline.run.started"


class PipelineRunSucceeded(Event[PipelineRunData]):
    """Every task of a pipeline run succeeded or was skipped."""

    type: EventType[Literal["eventflow.pipeline.run.succeeded"]] = (
        "eventflow.pipeline.run.succeeded"
    )


class PipelineRunFailed(Event[PipelineRunData]):
    """A pipeline run failed: a task failed for good."""

    type: EventType[Literal["eventflow.pipeline.run.failed"]] = "eventflow.pipeline.run.failed"


class DatasetReset(Event[DatasetResetData]):
    """An operator set a dataset's newest-version mark back (`eventflow datasets reset`)."""

    type: EventType[Literal["eventflow.dataset.reset"]] = "eventflow.dataset.reset"


class TaskLog(Event[TaskLogData]):
    """Lines a task attempt logged (through `ctx.log`) or, run in a thread, printed."""

    type: EventType[Literal["eventflow.task.log"]] = "eventflow.task.log"


class PipelineAction(Event[PipelineActionData]):
    """An operator paused, resumed, reran or cancelled (part of) a pipeline."""

    type: EventType[Literal["eventflow.pipeline.action"]] = "eventflow.pipeline.action"


class Decided(Event[DecisionData]):
    """What a stage decided about a dataset version announced from outside."""

    type: EventType[Literal["eventflow.decision"]] = "eventflow.decision"


class FreshnessViolated(Event[FreshnessData]):
    """A dataset partition (or a task's run) was not there by its deadline, or is too old."""

    type: EventType[Literal["eventflow.freshness.violated"]] = "eventflow.freshness.violated"


class FreshnessRecovered(Event[FreshnessData]):
    """What a violation missed arrived; the violation is over."""

    type: EventType[Literal["eventflow.freshness.recovered"]] = "eventflow.freshness.recovered"


class PoolReleased(Event[PoolReleasedData]):
    """A task run gave back its pool slot."""

    type: EventType[Literal["eventflow.pool.released"]] = "eventflow.pool.released"


class DeadLetter(Event[DeadLetterData]):
    """An input eventflow refused, with the reason."""

    type: EventType[Literal["eventflow.deadletter"]] = "eventflow.deadletter"


EVENT_TYPES: tuple[type[Event], ...] = (
    DatasetProduced,
    DatasetReset,
    TaskRequested,
    TaskStarted,
    TaskHeartbeat,
    TaskSucceeded,
    TaskFailed,
    TaskLog,
    CheckRequested,
    CheckCompleted,
    PipelineInput,
    PipelineRunStarted,
    PipelineRunSucceeded,
    PipelineRunFailed,
    PipelineAction,
    Decided,
    FreshnessViolated,
    FreshnessRecovered,
    PoolReleased,
    DeadLetter,
)
BY_TYPE: dict[str, type[Event]] = {cls.event_type: cls for cls in EVENT_TYPES}
PIPELINE_RUN_EVENTS = (PipelineRunStarted, PipelineRunSucceeded, PipelineRunFailed)
#: Operator decisions: they go through the log like any other, from operators' tools only.
OPERATOR_EVENTS: tuple[type[Event], ...] = (DatasetReset, PipelineAction)

# A union of classes listed at run time: `X | Y` cannot spell it, and mypy cannot check it.
_any_event: TypeAdapter[Event] = TypeAdapter(
    Annotated[Union[EVENT_TYPES], Field(discriminator="type")]  # type: ignore[arg-type]  # noqa: UP007
)


def encode(event: Event) -> bytes:
    return orjson.dumps(event.model_dump(exclude_none=True))


def decode(raw: bytes, *, max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES) -> Event:
    """Parse wire bytes; an `EventError` says why they are not a valid event."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise EventError(f"not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise EventError(f"not a CloudEvent: a JSON {type(obj).__name__}, not an object")
    kind = obj.get("type")
    if kind not in BY_TYPE:
        raise EventError(f"unknown event type {kind!r}")
    missing = [name for name in REQUIRED_ATTRIBUTES if obj.get(name) is None]
    if missing:
        raise EventError(f"not a CloudEvent: no {', '.join(missing)}")
    if obj["specversion"] != "1.0":
        raise EventError(f"unsupported CloudEvents specversion {obj['specversion']!r} (not 1.0)")
    if "data_base64" in obj:
        raise EventError(f"invalid {kind}: binary `data_base64`; eventflow's `data` is JSON")
    # JSON format: an optional attribute set to null is absent.
    obj = {name: value for name, value in obj.items() if value is not None}
    try:
        return _any_event.validate_python(obj, context={"max_metadata_bytes": max_metadata_bytes})
    except ValidationError as e:
        raise EventError(f"invalid {kind}: {_first_error(e)}") from None


#: Prefix of the Kafka headers carrying attributes in binary content mode.
CE_HEADER_PREFIX = "ce_"


def is_binary(headers: Sequence[tuple[str, bytes]]) -> bool:
    """Whether a Kafka record is a CloudEvent in binary content mode (its `ce_specversion`
    header says so; a structured record carries its attributes in its value)."""
    return any(name.lower() == "ce_specversion" for name, _ in headers)


def from_binary(headers: Sequence[tuple[str, bytes]], value: bytes) -> bytes:
    """A binary-mode Kafka record (attributes in `ce_` headers, `content-type` as the
    `datacontenttype`, the data as the value) as the structured JSON event it stands for, so
    that it is decoded, stored and dead-lettered like any other. Header values are strings;
    `decode` checks them."""
    obj: dict[str, Any] = {}
    for name, raw in headers:
        lowered = name.lower()
        if lowered.startswith(CE_HEADER_PREFIX):
            attribute = lowered[len(CE_HEADER_PREFIX) :]
        elif lowered == "content-type":
            attribute = "datacontenttype"
        else:
            continue  # not an attribute (a signature, a producer's own header)
        try:
            obj[attribute] = raw.decode("utf-8") if raw is not None else None
        except UnicodeDecodeError:
            raise EventError(f"header {name!r} is not UTF-8") from None
    content_type = obj.get("datacontenttype")
    if content_type is not None and not is_json_media_type(content_type):
        raise EventError(f"content-type {content_type!r} is not JSON: eventflow's `data` is JSON")
    try:
        obj["data"] = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        raise EventError(f"binary-mode data is not JSON: {e}") from None
    return orjson.dumps(obj)


def structured(value: bytes, headers: Sequence[tuple[str, bytes]]) -> bytes:
    """A Kafka record's event in structured form, whichever content mode it was written in."""
    return from_binary(headers, value) if is_binary(headers) else value


def _first_error(error: ValidationError, skip: int = 1) -> str:
    """The first problems; `skip` leading parts of their location (`data` of an envelope)."""
    problems = []
    for item in error.errors()[:3]:
        where = ".".join(str(p) for p in item["loc"][skip:]) or "event"
        problems.append(f"{where}: {item['msg']}")
    more = error.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def dead_letter(raw: bytes, reason: str, *, origin: str = "", source: str = "eventflow") -> Event:
    """A refused input, kept up to `DEAD_LETTER_PREFIX` bytes with the size and hash of all of it,
    so a flood of huge inputs cannot fill the log."""
    kept = raw[:DEAD_LETTER_PREFIX]
    data = DeadLetterData(
        reason=reason[:MAX_TEXT],
        original=base64.b64encode(kept).decode(),
        size=len(raw),
        sha256=hashlib.sha256(raw).hexdigest(),
        truncated=len(kept) < len(raw),
        origin=origin,
    )
    return DeadLetter.of(data, source=source)


def version_now(now: float | None = None) -> int:
    """The default version of a dataset: the time it is announced (`now`, epoch seconds, as
    a runtime's clock reads it; the system clock if not given), in microseconds."""
    if now is not None:
        return int(now * 1_000_000)
    return time.time_ns() // 1000


def pipeline_action(
    pipeline: str,
    action: Action,
    *,
    reason: str,
    operator: str,
    partition: str = "",
    task: str | None = None,
    backfill: str | None = None,
    plan: BackfillPlan | None = None,
    source: str = "eventflow",
) -> PipelineAction:
    """An operator's action as an event; `EventError` says why the fields do not fit it."""
    try:
        data = PipelineActionData(
            pipeline=pipeline,
            action=action,
            partition=partition,
            task=task,
            backfill=backfill,
            plan=plan,
            reason=reason,
            operator=operator,
        )
    except ValidationError as e:
        raise EventError(f"invalid {PipelineAction.event_type}: {_first_error(e, 0)}") from None
    return PipelineAction.of(data, source=source)


def is_operator(event: Event) -> bool:
    """An operator's decision: a dataset reset (as `eventflow datasets reset` sends it, not yet
    routed) or an action on a pipeline."""
    if isinstance(event, DatasetReset):
        return event.data.pipeline is None
    return isinstance(event, PipelineAction)


def is_external(event: Event) -> bool:
    """What a publisher outside eventflow may announce: a dataset version, not claimed as the
    output of one of eventflow's task runs."""
    return isinstance(event, DatasetProduced) and event.data.producer is None
