"""Plain-text rendering of run outcomes, dataset freshness and the graph, for the CLI."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .definitions import App
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
    partition = run.partition or "-"
    line = f"{run.pipeline}  {partition}  {MARKS[run.status]}  {_duration(run)}  ({run.run_id})"
    return f"{line}  {run.reason}" if run.reason else line


def run_summary(runs: list[PipelineRunData]) -> str:
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


def graph_text(app: App) -> str:
    """Each pipeline's tasks in dependency order, as `inputs -> task -> outputs`."""
    lines: list[str] = []
    for pipeline in app.pipelines.values():
        limit = f" (max {pipeline.max_active_runs} active runs)" if pipeline.max_active_runs else ""
        lines.append(f"pipeline {pipeline.name}{limit}")
        for task in _ordered(app, [t.name for t in pipeline.tasks]):
            t = app.tasks[task]
            rule = f" [{t.trigger}]" if len(t.inputs) > 1 else ""
            extras = [f"pool {t.pool}"] if t.pool else []
            if t.retry.count:
                extras.append(f"retries {t.retry.count}")
            suffix = f"  ({', '.join(extras)})" if extras else ""
            outputs = ", ".join(t.outputs) or "(no outputs)"
            lines.append(f"  {', '.join(t.inputs)} -> {t.name}{rule} -> {outputs}{suffix}")
        lines.append("")
    for dataset, checks in app.checks_of.items():
        for chk in checks:
            kind = "blocking" if chk.blocking else "warning"
            lines.append(f"check {chk.name} on {dataset} ({kind})")
    for schedule in app.schedules.values():
        lines.append(f"schedule {schedule.dataset.name}: cron {schedule.cron!r} (UTC)")
    return "\n".join(lines).rstrip() + "\n"


def graph_dot(app: App) -> str:
    """Graphviz: datasets as ellipses, tasks as boxes, one cluster per pipeline."""
    out = ["digraph eventflow {", "  rankdir=LR;"]
    for n, pipeline in enumerate(app.pipelines.values()):
        out.append(f'  subgraph cluster_{n} {{ label="{pipeline.name}";')
        for task in pipeline.tasks:
            out.append(f'    "task:{task.name}" [label="{task.name}", shape=box];')
        out.append("  }")
    for task in app.tasks.values():
        for ds in task.inputs:
            out.append(f'  "{ds}" -> "task:{task.name}";')
        for ds in task.outputs:
            out.append(f'  "task:{task.name}" -> "{ds}";')
    out.append("}")
    return "\n".join(out) + "\n"


def _ordered(app: App, names: list[str]) -> list[str]:
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        for ds in app.tasks[name].inputs:
            producer = app.producer.get(ds)
            if producer is not None and producer.name in names:
                visit(producer.name)
        order.append(name)

    for name in names:
        visit(name)
    return order
