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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..events import (
    CheckCompleted,
    DatasetProduced,
    DeadLetter,
    Event,
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

#: The type of the events carrying a task attempt's log lines.
TASK_LOG = "eventflow.task.log"
#: Characters of a dead letter's input kept as its excerpt.
EXCERPT = 512

Row = dict[str, Any]
_ATTEMPT_RANK = {"requested": 0, "running": 1, "succeeded": 2, "failed": 2}
_RUN_RANK = {"running": 0, "succeeded": 1, "failed": 1}
#: What only the ending of an attempt says, taken together from the ending that wins.
_ENDING = ("ended_at", "error", "error_kind", "outputs", "skipped", "duration_ms")
_RUN_EVENTS = (PipelineRunStarted, PipelineRunSucceeded, PipelineRunFailed)


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


def project(events: Iterable[Event]) -> Rows:
    """The rows of `events` (each event once: the store drops those it has already)."""
    rows = Rows()
    for event in events:
        data = event.data.model_dump(mode="json")
        rows.events.append(event_row(event, data))
        if isinstance(event, DatasetProduced):
            d = event.data
            rows.versions.append(
                {
                    "dataset": d.dataset,
                    "partition": d.partition,
                    "version": d.version,
                    "time": event.time,
                    "metadata": d.metadata,
                    "producer": d.producer,
                }
            )
        elif isinstance(event, TaskRequested):
            r = event.data
            inputs = [_ref(i) for i in data["inputs"]]
            rows.attempt(
                _attempt(data, "requested", event)
                | {
                    "pipeline_run_id": r.pipeline_run_id,
                    "inputs": inputs,
                    "requested_at": event.time,
                }
            )
            rows.inputs += [{"run_id": r.run_id, **ref} for ref in inputs]
        elif isinstance(event, TaskStarted | TaskHeartbeat):
            started = event.time if isinstance(event, TaskStarted) else None
            rows.attempt(
                _attempt(data, "running", event)
                | {"started_at": started, "worker": event.data.worker}
            )
        elif isinstance(event, TaskSucceeded):
            s = event.data
            rows.attempt(
                _attempt(data, "succeeded", event)
                | {
                    "ended_at": event.time,
                    "worker": s.worker,
                    "outputs": [_ref(o) for o in data["outputs"]],
                    "skipped": s.skipped,
                    "duration_ms": s.duration_ms,
                }
            )
        elif isinstance(event, TaskFailed):
            f = event.data
            rows.attempt(
                _attempt(data, "failed", event)
                | {
                    "ended_at": event.time,
                    "worker": f.worker or None,
                    "error": f.error,
                    "error_kind": f.kind,
                    "duration_ms": f.duration_ms,
                }
            )
        elif isinstance(event, _RUN_EVENTS):
            p = event.data
            rows.run(
                {
                    "run_id": p.run_id,
                    "pipeline": p.pipeline,
                    "partition": p.partition,
                    "status": p.status,
                    "started_at": p.started_at,
                    "finished_at": p.finished_at,
                    "reason": p.reason,
                    "tasks": data["tasks"],
                }
            )
        elif isinstance(event, CheckCompleted):
            c = event.data
            rows.checks.append(
                {
                    "run_id": c.run_id,
                    "check": c.check,
                    "dataset": c.target.dataset,
                    "partition": c.target.partition,
                    "version": c.target.version,
                    "passed": c.passed,
                    "blocking": c.blocking,
                    "message": c.message,
                    "worker": c.worker,
                    "time": event.time,
                }
            )
        elif isinstance(event, DeadLetter):
            dl = event.data
            rows.dead_letters.append(
                {
                    "id": event.id,
                    "time": event.time,
                    "reason": dl.reason,
                    "origin": dl.origin,
                    "size": dl.size,
                    "sha256": dl.sha256,
                    "excerpt": excerpt(dl.original),
                    "truncated": dl.truncated,
                }
            )
        elif isinstance(event, FreshnessViolated | FreshnessRecovered):
            late = event.data
            due = late.expected_by.isoformat()
            row = {
                "key": f"{late.kind}|{late.name}|{late.partition}|{late.policy}|{due}",
                "kind": late.kind,
                "name": late.name,
                "pipeline": late.pipeline,
                "partition": late.partition,
                "policy": late.policy,
                "expected_by": late.expected_by,
            }
            if isinstance(event, FreshnessViolated):
                rows.violated.append(
                    row
                    | {"violated_at": late.since, "newest_version": late.newest_version}
                    | {"message": late.message}
                )
            else:
                rows.recovered.append(
                    row | {"recovered_at": event.time, "recovered_version": late.newest_version}
                )
        elif event.type == TASK_LOG:
            rows.logs += log_rows(data)
    return rows


def event_row(event: Event, data: Mapping[str, Any]) -> Row:
    """The columns an event is filtered on, read from its payload as JSON (whatever its type)."""
    target = data.get("target")
    dataset = data.get("dataset") or (target.get("dataset") if isinstance(target, dict) else None)
    partition = data.get("partition")
    if partition is None and isinstance(target, dict):
        partition = target.get("partition")
    return {
        "id": event.id,
        "type": event.type,
        "time": event.time,
        "subject": event.subject,
        "dataset": dataset,
        "pipeline": data.get("pipeline"),
        "partition": partition,
        "run_id": data.get("run_id"),
        "correlation": event.correlationid,
        "body": event.model_dump(mode="json", exclude_none=True),
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


def _attempt(data: Mapping[str, Any], status: str, event: Event) -> Row:
    """The fields every task event gives; its pipeline run is the event's `correlationid`
    until the request says it."""
    return {
        "pipeline_run_id": event.correlationid,
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
