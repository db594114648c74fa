"""Plain-text rendering of run outcomes and dataset freshness, for the CLI and scripts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .events import PipelineRunData

MARKS = {
    "succeeded": "ok",
    "failed": "FAILED",
    "skipped": "skipped",
    "upstream_failed": "upstream failed",
    "running": "running",
}


def _duration(run: PipelineRunData) -> str:
    if run.finished_at is None:
        return ""
    return f"{(run.finished_at - run.started_at).total_seconds():.2f}s"


def run_line(run: PipelineRunData) -> str:
    """One line per run: pipeline, partition, outcome, duration, id, and why it failed."""
    partition = run.partition or "-"
    line = f"{run.pipeline}  {partition}  {MARKS[run.status]}  {_duration(run)}  ({run.run_id})"
    return f"{line}  {run.reason}" if run.reason else line


def run_summary(runs: list[PipelineRunData]) -> str:
    """Finished runs with every task's outcome, attempts, outputs and error."""
    if not runs:
        return "No pipeline run started."
    ok = sum(r.status == "succeeded" for r in runs)
    lines = [f"Pipeline runs: {len(runs)} ({ok} succeeded, {len(runs) - ok} failed)"]
    for run in runs:
        lines.append("")
        lines.append(run_line(run))
        width = max((len(t.task) for t in run.tasks), default=0)
        for outcome in run.tasks:
            detail = []
            if outcome.attempts > 1:
                detail.append(f"{outcome.attempts} attempts")
            if outcome.outputs:
                detail.append("-> " + ", ".join(outcome.outputs))
            if outcome.error:
                detail.append(outcome.error)
            text = "  ".join(detail)
            lines.append(f"  {outcome.task:<{width}}  {MARKS[outcome.status]:<15}  {text}".rstrip())
    return "\n".join(lines)


def freshness_table(rows: list[dict[str, Any]], now: datetime | None = None) -> str:
    """The newest version of each dataset partition and its age."""
    if not rows:
        return "No dataset has been produced yet."
    now = now or datetime.now(UTC)
    out = [f"{'dataset':<28} {'partition':<14} {'version':>17}  age"]
    for row in rows:
        age = now - datetime.fromisoformat(row["produced_at"])
        out.append(
            f"{row['dataset']:<28} {row['partition'] or '-':<14} {row['version']:>17}  "
            f"{_age(age.total_seconds())}"
        )
    return "\n".join(out)


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"
