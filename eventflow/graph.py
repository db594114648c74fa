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
    """Graphviz: datasets as ellipses (clock datasets dashed, with their cron), tasks as boxes
    in one cluster per pipeline, checks as octagons (dashed: warning only)."""
    crons = {s.dataset.name: s.cron for s in app.schedules.values()}
    out = ["digraph eventflow {", "  rankdir=LR;"]
    for name in app.datasets:
        if name in crons:
            label = _quote(f"{name}\\ncron {crons[name]} (UTC)")
            out.append(f"  {_quote(name)} [label={label}, shape=ellipse, style=dashed];")
        else:
            out.append(f"  {_quote(name)} [shape=ellipse];")
    for n, pipeline in enumerate(app.pipelines.values()):
        out.append(f"  subgraph cluster_{n} {{ label={_quote(pipeline.name)};")
        for task in pipeline.tasks:
            out.append(f"    {_quote('task:' + task.name)} [label={_quote(task.name)}, shape=box];")
        out.append("  }")
    for task in app.tasks.values():
        node = _quote(f"task:{task.name}")
        for ds in task.inputs:
            out.append(f"  {_quote(ds)} -> {node};")
        for ds in task.outputs:
            out.append(f"  {node} -> {_quote(ds)};")
    for dataset, checks in app.checks_of.items():
        for chk in checks:
            node = _quote(f"check:{chk.name}")
            style = "solid" if chk.blocking else "dashed"
            out.append(f"  {node} [label={_quote(chk.name)}, shape=octagon, style={style}];")
            out.append(f"  {_quote(dataset)} -> {node} [style=dashed, arrowhead=none];")
    out.append("}")
    return "\n".join(out) + "\n"


def _quote(text: str) -> str:
    """A Graphviz ID; `\\n` in `text` stays a line break of a label."""
    return '"' + text.replace('"', '\\"') + '"'


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
