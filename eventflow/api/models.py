"""What the HTTP API takes and returns, beyond the events and history records themselves."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..alerts import Alert
from ..core.freshness import policies
from ..core.state import PipelineState
from ..definitions import App
from ..events import MAX_BACKFILL, MAX_NAME, MAX_TEXT, MAX_VERSION, BackfillMode, Metadata
from ..history.models import CheckOutcome, DatasetVersionRecord, Freshness, FreshnessViolation


class TaskInfo(BaseModel):
    name: str
    pipeline: str
    inputs: list[str]
    outputs: list[str]
    trigger: str = Field(description="`all`: every input newer; `any`: one input newer.")
    pool: str | None
    retries: int
    timeout_s: float | None


class Paused(BaseModel):
    operator: str
    reason: str
    at: datetime


class PipelineInfo(BaseModel):
    name: str
    description: str
    paused: Paused | None = Field(default=None, description="Who paused it, when and why.")
    active: list[str] = Field(default_factory=list, description="Partitions with a run.")
    waiting: list[str] = Field(
        default_factory=list, description="Partitions waiting for a run slot (max_active_runs)."
    )
    max_active_runs: int | None
    tasks: list[TaskInfo]
    checks: list[str]
    schedules: list[str] = Field(description="Clock datasets the pipeline's schedules produce.")


class Node(BaseModel):
    id: str = Field(description="`dataset:NAME`, `task:NAME` or `check:NAME`.")
    kind: Literal["dataset", "task", "check"]
    name: str
    pipeline: str | None = None
    partitions: str | None = Field(default=None, description="A dataset's partitioning kind.")
    schedule: str | None = Field(default=None, description="Cron of a clock dataset.")


class Edge(BaseModel):
    source: str
    target: str


class Graph(BaseModel):
    """Datasets, tasks and checks of the App as one lineage graph."""

    nodes: list[Node]
    edges: list[Edge]


class Publish(BaseModel):
    """A dataset version to announce, with the bounds of the bus."""

    partition: str = Field(default="", max_length=MAX_NAME, description="Partition key, if any.")
    version: int | None = Field(
        default=None, ge=1, le=MAX_VERSION, strict=True, description="Default: now, in µs."
    )
    metadata: Metadata = Field(default_factory=dict)


class Submitted(BaseModel):
    id: str = Field(description="The event's id.")
    status: Literal["accepted", "published"] = Field(
        description="`accepted`: decided by a dev instance; `published`: on Kafka, to be "
        "decided by the coordinator."
    )


class LineageReceived(BaseModel):
    """What became of an OpenLineage RunEvent."""

    announced: list[str] = Field(description="Ids of the dataset versions it announced.")
    recorded: list[str] = Field(
        description="What it said that is no trigger (a run failed or aborted, an output no "
        "mapping names), each recorded as a dead letter with this reason."
    )


class FreshnessPolicy(BaseModel):
    """A dataset's freshness policy, or a task's deadline, as the App declares it."""

    kind: Literal["dataset", "task"] = Field(description="A dataset's policy or a task's.")
    name: str = Field(description="The dataset, or the task.")
    pipeline: str | None = Field(default=None, description="The task's pipeline.")
    partitioning: str = Field(description="`none`, `daily`, `hourly` or `static`.")
    deadline: str | None = Field(default=None, description="Cron (UTC) of the deadline ticks.")
    max_age_s: float | None = Field(default=None, description="The longest time without news.")

    @staticmethod
    def of_app(app: App) -> list[FreshnessPolicy]:
        return [
            FreshnessPolicy(
                kind=p.kind,
                name=p.name,
                pipeline=p.pipeline,
                partitioning=p.partitions.kind,
                deadline=p.deadline,
                max_age_s=p.max_age_s,
            )
            for p in policies(app).values()
        ]


class FreshnessReport(BaseModel):
    policies: list[FreshnessPolicy] = Field(description="Every policy and task deadline.")
    violations: list[FreshnessViolation] = Field(
        description="Violations, the latest due first: those open now (and ended, with `ended`)."
    )


class DatasetHistory(BaseModel):
    name: str
    freshness: list[Freshness] = Field(description="The newest version of each partition.")
    versions: list[DatasetVersionRecord] = Field(description="Versions, newest first.")
    checks: list[CheckOutcome] = Field(description="Check outcomes, newest first.")
    policy: FreshnessPolicy | None = Field(default=None, description="Its freshness policy.")
    violations: list[FreshnessViolation] = Field(
        default_factory=list, description="Its freshness violations open now."
    )


class ActionRequest(BaseModel):
    """An operator's action; `reason` is kept in the log and in the run's outcome."""

    reason: str = Field(min_length=1, max_length=MAX_TEXT)
    operator: str = Field(default="api", min_length=1, max_length=MAX_NAME, description="Who.")


class PartitionAction(ActionRequest):
    partition: str = Field(default="", max_length=MAX_NAME)


class Rerun(PartitionAction):
    task: str | None = Field(
        default=None, max_length=MAX_NAME, description="One task; unset: the whole run."
    )


class ActionDone(BaseModel):
    id: str = Field(description="The action event's id.")
    status: Literal["applied", "published"] = Field(
        description="`applied`: a coordinator carried it out; `published`: sent, not decided "
        "within the wait (it will be, or be dead-lettered)."
    )


class AlertRule(BaseModel):
    """An alert rule of the App: which events it sends, where, and how it retries."""

    name: str
    on: list[str] = Field(description="Event kinds it sends (`run.failed`, ...).")
    event_types: list[str] = Field(description="The event types those kinds stand for.")
    webhook: str = Field(
        description="Where it posts, as written (`${NAME}` left unresolved); a literal query or "
        "long path, where a webhook keeps its secret, shows as `***`."
    )
    format: Literal["json", "slack"] = Field(
        description="`json`: the CloudEvent as it is; `slack`: a Slack message."
    )
    pipelines: list[str] = Field(description="Only events of these pipelines; empty: any.")
    datasets: list[str] = Field(description="Only events of these datasets; empty: any.")
    partitions: list[str] = Field(description="Only events of these partitions; empty: any.")
    headers: list[str] = Field(description="Names of the headers it sets (values not shown).")
    max_attempts: int
    max_age_s: float
    backoff_s: float
    max_backoff_s: float
    timeout_s: float

    @classmethod
    def of(cls, alert: Alert) -> AlertRule:
        return cls(
            name=alert.name,
            on=list(alert.on),
            event_types=sorted(alert.event_types),
            webhook=alert.shown_webhook,
            format=alert.format,
            pipelines=list(alert.pipelines),
            datasets=list(alert.datasets),
            partitions=list(alert.partitions),
            headers=sorted(alert.headers),
            max_attempts=alert.max_attempts,
            max_age_s=alert.max_age_s,
            backoff_s=alert.backoff_s,
            max_backoff_s=alert.max_backoff_s,
            timeout_s=alert.timeout_s,
        )


class Problem(BaseModel):
    detail: Any


def task_info(app: App, name: str) -> TaskInfo:
    task = app.tasks[name]
    return TaskInfo(
        name=task.name,
        pipeline=task.pipeline,
        inputs=list(task.inputs),
        outputs=list(task.outputs),
        trigger=task.trigger,
        pool=task.pool,
        retries=task.retry.count,
        timeout_s=task.timeout_s,
    )


def pipeline_info(app: App, name: str, state: PipelineState) -> PipelineInfo:
    pipeline = app.pipelines[name]
    pause = state.paused
    return PipelineInfo(
        name=pipeline.name,
        description=pipeline.description,
        paused=Paused(
            operator=pause.operator, reason=pause.reason, at=datetime.fromtimestamp(pause.at, UTC)
        )
        if pause is not None
        else None,
        active=list(state.active),
        waiting=list(state.waiting),
        max_active_runs=pipeline.max_active_runs,
        tasks=[task_info(app, t.name) for t in pipeline.tasks],
        checks=[c.name for c in pipeline.checks],
        schedules=[s.dataset.name for s in pipeline.schedules],
    )


def graph(app: App) -> Graph:
    crons = {s.dataset.name: s.cron for s in app.schedules.values()}
    nodes = [
        Node(
            id=f"dataset:{name}",
            kind="dataset",
            name=name,
            partitions=dataset.partitions.kind,
            schedule=crons.get(name),
        )
        for name, dataset in app.datasets.items()
    ]
    edges: list[Edge] = []
    for task in app.tasks.values():
        node = Node(id=f"task:{task.name}", kind="task", name=task.name, pipeline=task.pipeline)
        nodes.append(node)
        edges += [Edge(source=f"dataset:{d}", target=f"task:{task.name}") for d in task.inputs]
        edges += [Edge(source=f"task:{task.name}", target=f"dataset:{d}") for d in task.outputs]
    for chk in app.checks.values():
        nodes.append(Node(id=f"check:{chk.name}", kind="check", name=chk.name))
        edges.append(Edge(source=f"dataset:{chk.dataset}", target=f"check:{chk.name}"))
    return Graph(nodes=nodes, edges=edges)


class BackfillRequest(ActionRequest):
    """A backfill of a pipeline, or of the pipelines consuming a dataset, over a range of
    partitions (`start` to `end`, both included) or a list."""

    pipeline: str | None = Field(
        default=None, max_length=MAX_NAME, description="The pipeline (unset: `dataset` given)."
    )
    dataset: str | None = Field(
        default=None,
        max_length=MAX_NAME,
        description="From this dataset downward: the tasks consuming it start (of `pipeline`, "
        "or of every pipeline consuming it); their downstream follows as usual.",
    )
    start: str | None = Field(default=None, max_length=MAX_NAME)
    end: str | None = Field(default=None, max_length=MAX_NAME)
    partitions: list[str] | None = Field(default=None, max_length=MAX_BACKFILL)
    mode: BackfillMode = "missing"
    max_active: int = Field(default=4, ge=1, le=10_000, description="Runs at a time.")
    reverse: bool = Field(default=False, description="Newest partition first.")
    dry_run: bool = Field(default=False, description="Say what it would run; start nothing.")


class PlannedRun(BaseModel):
    pipeline: str
    partition: str
    run: bool = Field(description="Whether the backfill would start a run there.")
    why: str
    tasks: list[str] = Field(default_factory=list, description="The tasks it would start.")


class Skip(BaseModel):
    partition: str
    why: str


class BackfillPart(BaseModel):
    """A backfill in one pipeline."""

    pipeline: str
    status: Literal["running", "done", "cancelled"]
    planned: int
    started: int
    succeeded: int
    failed: int
    skipped: int
    active: list[str] = Field(description="Partitions whose run is in progress.")
    skips: list[Skip] = Field(description="The first partitions skipped, and why.")
    finished_at: datetime | None = None


class Backfill(BaseModel):
    """A backfill and its progress, summed over its pipelines."""

    id: str
    dataset: str | None
    start: str | None
    end: str | None
    mode: BackfillMode
    max_active: int
    reverse: bool
    operator: str
    reason: str
    created_at: datetime
    status: Literal["running", "done", "cancelled"] = Field(
        description="`running` while a pipeline still starts or awaits runs of it."
    )
    planned: int
    started: int
    succeeded: int
    failed: int
    skipped: int
    pipelines: list[BackfillPart]


class BackfillStarted(BaseModel):
    id: str
    status: Literal["applied", "published", "dry_run"]
    pipelines: list[str]
    plan: list[PlannedRun] = Field(
        default_factory=list, description="The dry run: every partition judged, in order."
    )
