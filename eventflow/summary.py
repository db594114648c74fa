"""Plain-text rendering of run outcomes, for `eventflow dev` and `eventflow watch`."""

from __future__ import annotations

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
