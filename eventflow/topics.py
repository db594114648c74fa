"""Kafka topics, the JSON Schema of every event and an AsyncAPI document, as written to `topics/`.

`python -m eventflow.topics DIR` writes one spec per topic (`DIR/<topic>.json`), one schema per
event type (`DIR/schemas/<type>.json`) and an AsyncAPI 3 document of them all
(`DIR/asyncapi.json`: a channel per topic, its messages and keys), so a producer in any language
can publish valid events and AsyncAPI tooling can show or generate code for them. A test
regenerates them and fails when the files and the models drift apart.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .events import (
    BY_TYPE,
    EVENT_TYPES,
    SCHEMA_VERSION,
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
        "the state of stream task N, the keys of partition N of the co-partitioned input "
        "topics (a dataset produced by a pipeline: that pipeline's partition).",
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


#: AsyncAPI's Kafka bindings version the document uses.
KAFKA_BINDING = "0.5.0"
#: Topic settings AsyncAPI's Kafka channel binding spells as integers.
_INTEGER_CONFIG = frozenset(
    {"retention.ms", "retention.bytes", "delete.retention.ms", "max.message.bytes"}
)
_KEYS = {
    "dataset": "The dataset name (a check result: the dataset checked).",
    "pipeline": "The pipeline name, so one stream task owns all of a pipeline's inputs.",
    "run_id": "The task or check run id.",
    "pool": "The pool name.",
    "record": "Which state record (an opaque string).",
    "correlation": "The correlation id of the announcement decided on.",
    "name": "The dataset or task name the policy is about.",
}


def _channel_id(topic: str) -> str:
    return topic.removeprefix("eventflow.")


def _message(kind: type[Event], spec: TopicSpec) -> dict[str, Any]:
    message: dict[str, Any] = {
        "name": kind.event_type,
        "title": kind.__name__,
        "summary": (kind.__doc__ or "").strip().split("\n\n")[0].replace("\n", " "),
        "contentType": "application/cloudevents+json",
        "payload": {"$ref": f"schemas/{kind.event_type}.json"},
    }
    if spec.key in _KEYS:
        message["bindings"] = {
            "kafka": {
                "key": {"type": "string", "description": _KEYS[spec.key]},
                "bindingVersion": KAFKA_BINDING,
            }
        }
    return message


def _kafka_channel(spec: TopicSpec) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for name, value in spec.config.items():
        if name == "cleanup.policy":
            config[name] = value.split(",")
        elif name in _INTEGER_CONFIG:
            config[name] = int(value)
        else:
            config[name] = value
    return {
        "topic": spec.name,
        "partitions": spec.partitions,
        "replicas": spec.replication_factor,
        "topicConfiguration": config,
        "bindingVersion": KAFKA_BINDING,
    }


def asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every topic: payloads refer to the JSON Schemas beside it,
    so the two never say different things."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for spec in TOPICS:
        channel_id = _channel_id(spec.name)
        messages = {BY_TYPE[t].__name__: _message(BY_TYPE[t], spec) for t in spec.events}
        channels[channel_id] = {
            "address": spec.name,
            "title": spec.name,
            "description": spec.description
            + ("" if spec.events else " Not CloudEvents: its records are eventflow's own."),
            "messages": messages,
            "bindings": {"kafka": _kafka_channel(spec)},
        }
        if messages and spec.name not in INTERNAL_TOPICS:
            operations[f"read-{channel_id}"] = {
                "action": "receive",
                "title": f"Read {spec.name}",
                "channel": {"$ref": f"#/channels/{channel_id}"},
                "messages": [
                    {"$ref": f"#/channels/{channel_id}/messages/{name}"} for name in messages
                ],
            }
    operations["announce-dataset"] = {
        "action": "send",
        "title": "Announce a dataset version",
        "description": "What an outside producer may publish: a `eventflow.dataset.produced` "
        "without a `producer` (the rest come only from eventflow's signed services).",
        "channel": {"$ref": "#/channels/datasets"},
        "messages": [{"$ref": "#/channels/datasets/messages/DatasetProduced"}],
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "eventflow",
            "version": str(SCHEMA_VERSION),
            "description": "The Kafka topics of eventflow, a data-aware pipeline orchestrator. "
            "Every message is a CloudEvents 1.0 event in structured JSON mode (binary mode, "
            "attributes in `ce_` headers, is accepted on `eventflow.datasets` too); the "
            "version is the payloads' `schemaversion`. Topic names take the deployment's "
            "prefix (`EVENTFLOW_TOPIC_PREFIX`), if one is set.",
        },
        "defaultContentType": "application/cloudevents+json",
        "channels": channels,
        "operations": operations,
    }


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
    files["asyncapi.json"] = orjson.dumps(asyncapi(), option=option)
    return files


def write(folder: Path) -> None:
    for relative, content in topic_files().items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


if __name__ == "__main__":
    write(Path(sys.argv[1] if len(sys.argv) > 1 else "topics"))
