"""From events to history rows: pure functions, so what the store keeps is decided without I/O.

Events reach the store at least once and in any order (Kafka topics are read partition by
partition), so every projection converges whatever the order: facts that never change (a
dataset version, a check result, a dead letter, a log line) are inserted once; what an attempt or
a run is made of is merged field by field (`merge_attempt`, `merge_run`), where a later stage
never gives way to an earlier one (a `task.started` arriving after `task.succeeded` does not
reopen the attempt) and, between two endings, the earlier one wins, as the coordinator took it.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..events import (
    CheckCompleted,
    DatasetProduced,
    DeadLetter,
    FreshnessRecovered,
    FreshnessViolated,
    PipelineRunFailed,
    PipelineRunStarted,
    PipelineRunSucceeded,
    TaskFailed,
    TaskHeartbeat,
    TaskRequested,
    TaskStarted,
    TaskSucceeded,
)

log = logging.getLogger("eventflow.history")

#: The type of the events carrying a task attempt's log lines.
TASK_LOG = "eventflow.task.log"
#: Characters of a dead letter's input kept as its excerpt.
EXCERPT = 512

Row = dict[str, Any]
#: An event as JSON: its attributes, `data` its payload.
Doc = Mapping[str, Any]
PRODUCED = DatasetProduced.event_type
REQUESTED = TaskRequested.event_type
STARTED = TaskStarted.event_type
PROGRESS = (STARTED, TaskHeartbeat.event_type)
SUCCEEDED = TaskSucceeded.event_type
FAILED = TaskFailed.event_type
RUN_EVENTS = tuple(
    e.event_type for e in (PipelineRunStarted, PipelineRunSucceeded, PipelineRunFailed)
)
CHECKED = CheckCompleted.event_type
DEAD_LETTER = DeadLetter.event_type
VIOLATED = FreshnessViolated.event_type
FRESHNESS = (VIOLATED, FreshnessRecovered.event_type)
_ATTEMPT_RANK = {"requested": 0, "running": 1, "succeeded": 2, "failed": 2}
_RUN_RANK = {"running": 0, "succeeded": 1, "failed": 1}
#: What only the ending of an attempt says, taken together from the ending that wins.
_ENDING = ("ended_at", "error", "error_kind", "outputs", "skipped", "duration_ms")


@dataclass
class Rows:
    """What a batch of events adds to each table; attempts and runs are partial rows, merged
    with what the store has by `merge_attempt` and `merge_run`."""

    events: list[Row] = field(default_factory=list)
    versions: list[Row] = field(default_factory=list)
    inputs: list[Row] = field(default_factory=list)
    checks: list[Row] = field(default_factory=list)
    dead_letters: list[Row] = field(default_factory=list)
    logs: list[Row] = field(default_factory=list)
    violated: list[Row] = field(default_factory=list)
    recovered: list[Row] = field(default_factory=list)
    attempts: dict[str, Row] = field(default_factory=dict)
    runs: dict[str, Row] = field(default_factory=dict)

    def attempt(self, part: Row) -> None:
        run_id = part["run_id"]
        old = self.attempts.get(run_id)
        self.attempts[run_id] = part if old is None else merge_attempt(old, part)

    def run(self, part: Row) -> None:
        run_id = part["run_id"]
        old = self.runs.get(run_id)
        self.runs[run_id] = part if old is None else merge_run(old, part)


def project(events: Iterable[Doc]) -> Rows:
    """The rows of `events`, each an event as JSON (`Event.model_dump(mode="json")`, or the
    bytes the embedded log holds, parsed), each once: the store drops those it has already.
    Projecting from JSON, not from `Event`s, spares the embedded history building each logged
    event again and dumping it back: a quarter of its CPU per event. An event that does not
    project (a field missing or of another type) is left out, with a warning."""
    rows = Rows()
    for event in events:
        try:
            row = event_row(event)
            _project(rows, event)  # each kind's rows are built whole before any is added
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            log.warning("event %r is not projected: %s: %s", event.get("id"), type(e).__name__, e)
            continue
        rows.events.append(row)
    return rows


def _project(rows: Rows, event: Doc) -> None:
    kind, data = event["type"], event["data"]
    if kind == PRODUCED:
        rows.versions.append(
            {
                "dataset": data["dataset"],
                "partition": data.get("partition", ""),
                "version": data["version"],
                "time": _time(event["time"]),
                "metadata": data.get("metadata", {}),
                "producer": data.get("producer"),
            }
        )
    elif kind == REQUESTED:
        inputs = [_ref(i) for i in data["inputs"]]
        rows.attempt(
            _attempt(data, "requested", event)
            | {
                "pipeline_run_id": data["pipeline_run_id"],
                "inputs": inputs,
                "requested_at": _time(event["time"]),
            }
        )
        rows.inputs += [{"run_id": data["run_id"], **ref} for ref in inputs]
    elif kind in PROGRESS:
        started = _time(event["time"]) if kind == STARTED else None
        rows.attempt(
            _attempt(data, "running", event) | {"started_at": started, "worker": data["worker"]}
        )
    elif kind == SUCCEEDED:
        rows.attempt(
            _attempt(data, "succeeded", event)
            | {
                "ended_at": _time(event["time"]),
                "worker": data["worker"],
                "outputs": [_ref(o) for o in data["outputs"]],
                "skipped": data.get("skipped"),
                "duration_ms": data["duration_ms"],
            }
        )
    elif kind == FAILED:
        rows.attempt(
            _attempt(data, "failed", event)
            | {
                "ended_at": _time(event["time"]),
                "worker": data.get("worker") or None,
                "error": data["error"],
                "error_kind": data["kind"],
                "duration_ms": data.get("duration_ms", 0),
            }
        )
    elif kind in RUN_EVENTS:
        if data["status"] not in _RUN_RANK:  # `merge_run` ranks it
            raise ValueError(f"run status {data['status']!r}")
        finished = data.get("finished_at")
        rows.run(
            {
                "run_id": data["run_id"],
                "pipeline": data["pipeline"],
                "partition": data.get("partition", ""),
                "status": data["status"],
                "started_at": _time(data["started_at"]),
                "finished_at": _time(finished) if finished is not None else None,
                "reason": data.get("reason", ""),
                # Null where the JSON leaves them out, as the store has always shown them.
                "tasks": [{"run_id": None, "error": None, **o} for o in data.get("tasks", [])],
            }
        )
    elif kind == CHECKED:
        target = data["target"]
        rows.checks.append(
            {
                "run_id": data["run_id"],
                "check": data["check"],
                "dataset": target["dataset"],
                "partition": target.get("partition", ""),
                "version": target["version"],
                "passed": data["passed"],
                "blocking": data["blocking"],
                "message": data.get("message", ""),
                "worker": data.get("worker", ""),
                "time": _time(event["time"]),
            }
        )
    elif kind == DEAD_LETTER:
        rows.dead_letters.append(
            {
                "id": event["id"],
                "time": _time(event["time"]),
                "reason": data["reason"],
                "origin": data.get("origin", ""),
                "size": data.get("size", 0),
                "sha256": data.get("sha256", ""),
                "excerpt": excerpt(data["original"]),
                "truncated": data.get("truncated", False),
            }
        )
    elif kind in FRESHNESS:
        expected_by = _time(data["expected_by"])
        partition = data.get("partition", "")
        key = f"{data['kind']}|{data['name']}|{partition}|{data['policy']}|"
        row = {
            "key": key + expected_by.isoformat(),
            "kind": data["kind"],
            "name": data["name"],
            "pipeline": data.get("pipeline"),
            "partition": partition,
            "policy": data["policy"],
            "expected_by": expected_by,
        }
        if kind == VIOLATED:
            rows.violated.append(
                row
                | {
                    "violated_at": _time(data["since"]),
                    "newest_version": data.get("newest_version"),
                }
                | {"message": data["message"]}
            )
        else:
            rows.recovered.append(
                row
                | {
                    "recovered_at": _time(event["time"]),
                    "recovered_version": data.get("newest_version"),
                }
            )
    elif kind == TASK_LOG:
        rows.logs += log_rows(data)


def event_row(event: Doc) -> Row:
    """The columns an event is filtered on, read from its payload (whatever its type)."""
    data = event.get("data")
    if not isinstance(data, dict):
        data = {}
    target = data.get("target")
    dataset = data.get("dataset") or (target.get("dataset") if isinstance(target, dict) else None)
    partition = data.get("partition")
    if partition is None and isinstance(target, dict):
        partition = target.get("partition")
    return {
        "id": event["id"],
        "type": event["type"],
        "time": _time(event["time"]),
        "subject": event.get("subject"),
        "dataset": dataset,
        "pipeline": data.get("pipeline"),
        "partition": partition,
        "run_id": data.get("run_id"),
        "correlation": event.get("correlationid"),
        "body": event,
    }


def log_rows(data: Mapping[str, Any]) -> list[Row]:
    """The lines of one task log event (`{run_id, task, pipeline, partition, attempt, seq,
    lines: [{time, level, message}], truncated}`), one row per line."""
    return [
        {
            "run_id": data["run_id"],
            "seq": int(data["seq"]),
            "line": index,
            "task": data["task"],
            "pipeline": data["pipeline"],
            "partition": data.get("partition", ""),
            "attempt": int(data.get("attempt", 1)),
            "time": _time(line["time"]),
            "level": str(line.get("level", "INFO")),
            "message": str(line.get("message", "")),
            "truncated": bool(data.get("truncated", False)),
        }
        for index, line in enumerate(data.get("lines", ()))
    ]


def excerpt(original: str) -> str:
    """The first bytes of a refused input (kept base64 in its dead letter) as text."""
    try:
        raw = base64.b64decode(original)
    except ValueError:
        return ""
    return raw[: EXCERPT * 4].decode("utf-8", errors="replace")[:EXCERPT]


def merge_attempt(old: Row, new: Row) -> Row:
    """One attempt from two partial views of it, the same whatever order they come in."""
    merged = dict(old)
    for key, value in new.items():
        fill = key not in _ENDING and key != "status"
        if fill and merged.get(key) in (None, []) and value not in (None, []):
            merged[key] = value
    merged["started_at"] = _earliest(old.get("started_at"), new.get("started_at"))
    old_rank, new_rank = _ATTEMPT_RANK[old["status"]], _ATTEMPT_RANK[new["status"]]
    if new_rank > old_rank or (new_rank == old_rank == 2 and _before(new, old, "ended_at")):
        merged["status"] = new["status"]
        if new_rank == 2:
            merged.update({key: new.get(key, [] if key == "outputs" else None) for key in _ENDING})
            merged["worker"] = new.get("worker") or merged.get("worker")
    return merged


def merge_run(old: Row, new: Row) -> Row:
    """One pipeline run from two of its events, the same whatever order they come in."""
    old_rank, new_rank = _RUN_RANK[old["status"]], _RUN_RANK[new["status"]]
    if new_rank > old_rank or (new_rank == old_rank == 1 and _before(new, old, "finished_at")):
        return dict(new)
    return dict(old)


def _attempt(data: Mapping[str, Any], status: str, event: Doc) -> Row:
    """The fields every task event gives; its pipeline run is the event's `correlationid`
    until the request says it."""
    return {
        "pipeline_run_id": event.get("correlationid"),
        "run_id": data["run_id"],
        "task": data["task"],
        "pipeline": data["pipeline"],
        "partition": data.get("partition", ""),
        "attempt": data.get("attempt", 1),
        "status": status,
        "inputs": [],
        "outputs": [],
    }


def _ref(version: Mapping[str, Any]) -> Row:
    return {
        "dataset": version["dataset"],
        "partition": version.get("partition", ""),
        "version": version["version"],
    }


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return min(a, b)


def _before(new: Row, old: Row, key: str) -> bool:
    at_new, at_old = new.get(key), old.get(key)
    return at_new is not None and (at_old is None or at_new < at_old)


def _time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
