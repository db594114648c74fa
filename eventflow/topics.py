"""Kafka topics and the JSON Schema of every event, as written to `topics/`.

`python -m eventflow.topics DIR` writes one spec per topic (`DIR/<topic>.json`) and one schema per
event type (`DIR/schemas/<type>.json`), so a producer in any language can publish valid events.
A test regenerates them and fails when the files and the models drift apart.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .events import (
    EVENT_TYPES,
    CheckCompleted,
    CheckRequested,
    DatasetProduced,
    DatasetReset,
    DeadLetter,
    Decided,
    Event,
    FreshnessRecovered,
    FreshnessViolated,
    PipelineAction,
    PipelineInput,
    PipelineRunFailed,
    PipelineRunStarted,
    PipelineRunSucceeded,
    PoolReleased,
    TaskFailed,
    TaskHeartbeat,
    TaskLog,
    TaskRequested,
    TaskStarted,
    TaskSucceeded,
)

DAY_MS = 24 * 3600 * 1000
#: Topics whose partition N is processed together (one stream task per partition number).
CO_PARTITIONED = (
    "eventflow.datasets",
    "eventflow.pipeline-inputs",
    "eventflow.task-events",
    "eventflow.pools",
    "eventflow.state",
)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    description: str
    key: str
    events: tuple[str, ...]
    partitions: int = 6
    replication_factor: int = 1
    config: dict[str, str] = field(default_factory=dict)


def _types(*kinds: type[Event]) -> tuple[str, ...]:
    return tuple(kind.event_type for kind in kinds)


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(
        "eventflow.datasets",
        "Dataset versions produced, by outside systems or by tasks, and check results.",
        key="dataset",
        events=_types(DatasetProduced, CheckCompleted, DatasetReset),
        config={"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
    ),
    TopicSpec(
        "eventflow.pipeline-inputs",
        "Dataset versions (and operators' resets) routed to each consuming pipeline, after "
        "their checks, and operators' actions on pipelines.",
        key="pipeline",
        events=_types(PipelineInput, DatasetReset, PipelineAction),
        config={"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
    ),
    TopicSpec(
        "eventflow.task-requests",
        "Task and check runs for workers to execute.",
        key="run_id",
        events=_types(TaskRequested, CheckRequested),
        partitions=12,
        config={"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
    ),
    TopicSpec(
        "eventflow.task-events",
        "Progress and results of task runs, reported by workers.",
        key="pipeline",
        events=_types(TaskStarted, TaskHeartbeat, TaskSucceeded, TaskFailed),
        config={"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
    ),
    TopicSpec(
        "eventflow.task-logs",
        "What task attempts logged, in chunks, from workers; read by history and operators' "
        "tools, never by the coordinator.",
        key="run_id",
        events=_types(TaskLog),
        config={"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
    ),
    TopicSpec(
        "eventflow.task-stops",
        "Attempts a coordinator ended that may still run (an operator cancelled their run): "
        "the worker running one stops its body.",
        key="run_id",
        events=_types(TaskFailed),
        config={"cleanup.policy": "delete", "retention.ms": str(1 * DAY_MS)},
    ),
    TopicSpec(
        "eventflow.pools",
        "Requests of pooled tasks waiting for a slot, and slots released.",
        key="pool",
        events=_types(TaskRequested, PoolReleased),
        config={"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
    ),
    TopicSpec(
        "eventflow.state",
        "Changelog of coordinator, router and pool state (not CloudEvents): partition N holds "
        "the state of the keys of partition N of the co-partitioned input topics.",
        key="record",
        events=(),
        config={"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"},
    ),
    TopicSpec(
        "eventflow.task-done",
        "Run ids workers have finished, per task-requests partition, so a redelivered request "
        "that already ran is never executed again.",
        key="run_id",
        events=(),
        partitions=12,
        config={"cleanup.policy": "compact,delete", "retention.ms": str(7 * DAY_MS)},
    ),
    TopicSpec(
        "eventflow.pipeline-runs",
        "Pipeline-run outcomes, for subscribers.",
        key="pipeline",
        events=_types(PipelineRunStarted, PipelineRunSucceeded, PipelineRunFailed),
        config={"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)},
    ),
    TopicSpec(
        "eventflow.decisions",
        "What became of each dataset version announced from outside: the router's decision, "
        "then each consuming pipeline's, keyed by the announcement's correlation id.",
        key="correlation",
        events=_types(Decided),
        config={"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
    ),
    TopicSpec(
        "eventflow.freshness",
        "Freshness policies violated and recovered: datasets and tasks' runs that are late.",
        key="name",
        events=_types(FreshnessViolated, FreshnessRecovered),
        config={"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)},
    ),
    TopicSpec(
        "eventflow.openlineage",
        "OpenLineage RunEvents of other tools (not CloudEvents), as the OpenLineage Kafka "
        "transport writes them: `eventflow server` announces the outputs of completed runs "
        "that the App's lineage mappings name.",
        key="job",
        events=(),
        config={"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
    ),
    TopicSpec(
        "eventflow.deadletter",
        "Input refused as malformed or invalid: the original bytes and the reason.",
        key="none",
        events=_types(DeadLetter),
        partitions=1,
        config={"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)},
    ),
)


SPECS: dict[str, TopicSpec] = {spec.name: spec for spec in TOPICS}
#: Topics a subscriber never reads: their events reach the topics it reads too (a pooled
#: request goes on to `eventflow.task-requests`), or they are not events.
INTERNAL_TOPICS = frozenset({"eventflow.pools", "eventflow.state", "eventflow.task-done"})


def destination(event: Event) -> tuple[str, str]:
    """The topic an event goes to and its record key, as the specs above say: a reset routed to
    a pipeline goes to the pipeline's inputs, a cancelled attempt to the workers' stops. Pooled
    task requests are the exception the coordinator makes: they go through `eventflow.pools`
    first."""
    if isinstance(event, DatasetReset) and event.data.pipeline is not None:
        return "eventflow.pipeline-inputs", event.data.pipeline
    if isinstance(event, TaskFailed) and event.data.kind == "cancelled":
        return "eventflow.task-stops", event.data.run_id
    for spec in TOPICS:
        if event.type in spec.events:
            if isinstance(event, CheckCompleted):
                return spec.name, event.data.target.dataset
            return spec.name, str(getattr(event.data, spec.key, ""))
    raise ValueError(f"no topic carries {event.type}")


def topic_files() -> dict[str, bytes]:
    """Relative path -> content of everything that belongs in `topics/`."""
    option = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE
    files: dict[str, bytes] = {}
    for spec in TOPICS:
        body: dict[str, Any] = asdict(spec)
        body["events"] = [f"schemas/{t}.json" for t in spec.events]
        files[f"{spec.name}.json"] = orjson.dumps(body, option=option)
    for kind in EVENT_TYPES:
        schema = kind.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"eventflow/{kind.event_type}"
        files[f"schemas/{kind.event_type}.json"] = orjson.dumps(schema, option=option)
    return files


def write(folder: Path) -> None:
    for relative, content in topic_files().items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


if __name__ == "__main__":
    write(Path(sys.argv[1] if len(sys.argv) > 1 else "topics"))
