"""The pipelines of an App drawn as text or Graphviz, for `eventflow graph`."""

from __future__ import annotations

from .definitions import App


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
