"""The data graph: every dataset, task and check of the App as one lineage graph, laid out in the
browser (dagre) from JSON the page embeds, each node coloured by its state in the partition
chosen (or the latest of each dataset). A live refresh brings new colours only: the layout is
the App's, which a running instance never changes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ..api.models import graph as lineage_graph
from ..history.models import CheckOutcome, Freshness, TaskAttempt
from .site import Site, quote
from .states import late_by_name, states_of, takes

#: The events that can change a colour.
COLOURING = [
    "eventflow.freshness.violated",
    "eventflow.freshness.recovered",
    "eventflow.dataset.produced",
    "eventflow.check.completed",
    "eventflow.task.requested",
    "eventflow.task.started",
    "eventflow.task.succeeded",
    "eventflow.task.failed",
]
#: Partitions offered by the selector, most recently announced first.
PARTITIONS = 200


def add(router: APIRouter, site: Site) -> None:
    @router.get("/")
    async def data_graph(request: Request, partition: str = "") -> HTMLResponse:
        partitions = await site.history.partitions(limit=PARTITIONS)
        if partition and partition not in partitions:
            partitions.insert(0, partition)
        return site.page(
            request,
            "graph.html",
            title="Data graph",
            stream={"type": COLOURING},
            graph=await coloured(site, partition),
            partition=partition,
            partitions=partitions,
        )


async def coloured(site: Site, partition: str) -> dict[str, Any]:
    """The App's graph as the page's script draws it: nodes with their label, link, state and
    the reason for it; edges as `[source, target]`."""
    app, history = site.app, site.history
    latest = {v.dataset: v for v in await history.latest_versions()}
    chosen: dict[str, Freshness] = {}
    attempts = {(a.pipeline, a.task): a for a in await history.latest_attempts()}
    if partition:
        chosen = {v.dataset: v for v in await history.latest_versions(partition=partition)}
        # a task of the partition's scheme shows its attempts there; any other, its last one
        attempts = {
            key: a
            for key, a in attempts.items()
            if key[1] not in app.tasks or not takes(app.tasks[key[1]].partitioning, partition)
        }
        attempts |= {
            (a.pipeline, a.task): a for a in await history.latest_attempts(partition=partition)
        }
    in_partition = {
        name for name, d in app.datasets.items() if partition and takes(d.partitions, partition)
    }
    shown = {
        name: chosen.get(name) if name in in_partition else latest.get(name)
        for name in app.datasets
    }
    states = await states_of(history, shown, partition or None)
    late_tasks = await late_by_name(history, "task", partition or None)
    crons = {name: s.cron for name, s in app.schedules.items()}
    nodes: list[dict[str, Any]] = []
    for node in lineage_graph(app).nodes:
        if node.kind == "dataset":
            state, _ = states[node.name]
            version = shown[node.name]
            nodes.append(
                {
                    "id": node.id,
                    "kind": "dataset",
                    "name": node.name,
                    "state": state.status,
                    "sub": f"clock · {crons[node.name]}"
                    if node.name in crons
                    else f"dataset · {state.status}",
                    "title": state.reason
                    + (
                        f" (partition {version.partition})" if version and version.partition else ""
                    ),
                    "href": _dataset_href(
                        node.name, partition if node.name in in_partition else ""
                    ),
                }
            )
        elif node.kind == "task":
            task = app.tasks[node.name]
            attempt = attempts.get((task.pipeline, task.name))
            status, title = _task_status(attempt), _task_title(attempt)
            if late := late_tasks.get(task.name):
                status = "late"
                title = "; ".join(v.message or "deadline missed" for v in late) + f" ({title})"
            nodes.append(
                {
                    "id": node.id,
                    "kind": "task",
                    "name": node.name,
                    "state": status,
                    "sub": f"{task.pipeline} · {status}",
                    "title": title,
                    "href": _task_href(
                        task.pipeline,
                        task.name,
                        partition if takes(task.partitioning, partition) else "",
                    ),
                }
            )
        else:
            chk = app.checks[node.name]
            _, made = states[chk.dataset]
            outcome = next((c for c in made.checks if c.check == chk.name), None) if made else None
            result = _check_status(outcome)
            nodes.append(
                {
                    "id": node.id,
                    "kind": "check",
                    "name": node.name,
                    "state": result,
                    "sub": f"check · {result}",
                    "title": f"{'passed' if outcome.passed else 'failed'}: {outcome.message}"
                    if outcome
                    else f"not run on the version of {chk.dataset} shown",
                    "href": _dataset_href(
                        chk.dataset, partition if chk.dataset in in_partition else ""
                    )
                    + "#checks",
                }
            )
    edges = [[e.source, e.target] for e in lineage_graph(app).edges]
    return {"nodes": nodes, "edges": edges}


def _task_status(attempt: TaskAttempt | None) -> str:
    if attempt is None:
        return "never"
    if attempt.status == "succeeded" and attempt.skipped:
        return "skipped"
    return attempt.status


def _task_title(attempt: TaskAttempt | None) -> str:
    if attempt is None:
        return "no attempt yet"
    said = f"attempt {attempt.attempt} {attempt.status}"
    if attempt.partition:
        said += f" in {attempt.partition}"
    if attempt.error:
        said += f": {attempt.error}"
    elif attempt.skipped:
        said += f", emitted nothing: {attempt.skipped}"
    return said


def _check_status(outcome: CheckOutcome | None) -> str:
    if outcome is None:
        return "never"
    return "passed" if outcome.passed else "failed"


def _dataset_href(name: str, partition: str) -> str:
    href = f"/ui/datasets/{quote(name)}"
    return f"{href}?partition={quote(partition)}" if partition else href


def _task_href(pipeline: str, task: str, partition: str) -> str:
    if partition:
        why = f"/ui/pipelines/{quote(pipeline)}/tasks/{quote(task)}/why"
        return f"{why}?partition={quote(partition)}"
    return f"/ui/pipelines/{quote(pipeline)}"
