"""Decision notes: what became of a dataset version announced from outside, said by the stage
that decided it, from the effects of its decision and the state it decided on.

Only announcements from outside (no `producer`) get notes: they are what a person or a tool sent
and wants an answer for (`eventflow emit` waits for them), while task outputs are followed by the
runs they set going. A note costs one event per stage and is never decided on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..events import (
    MAX_TEXT,
    DatasetProducedData,
    Decided,
    DecisionData,
    Outcome,
    PipelineInput,
    PipelineInputData,
)
from ..partitions import UNPARTITIONED
from .explain import explain

if TYPE_CHECKING:
    from .engine import Effects, Engine


def routed(
    engine: Engine, data: DatasetProducedData, seen: int, fx: Effects, correlation: str
) -> Decided:
    """The router's decision on an announcement; `seen` is the newest version it knew before."""
    pipelines = [e.data.pipeline for e in fx.events if isinstance(e, PipelineInput)]
    outcome: Outcome
    if pipelines:
        outcome, detail = "routed", f"routed to {_some(pipelines)}"
    elif fx.checks:
        names = _some(sorted({c.data.check for c in fx.checks}))
        outcome, detail = "held", f"held until its checks report: {names}"
    elif data.version <= seen:
        outcome = "ignored"
        detail = f"version {data.version} is not newer than {seen}, already seen"
    else:
        outcome, detail = "unused", f"no pipeline consumes {data.dataset}"
    note = DecisionData(
        correlation=correlation,
        stage="router",
        dataset=data.dataset,
        partition=data.partition,
        version=data.version,
        outcome=outcome,
        detail=detail[:MAX_TEXT],
        pipelines=pipelines,
    )
    return Decided.of(note, source=engine.runs.source, correlationid=correlation)


def evaluated(
    engine: Engine, data: PipelineInputData, known: int | None, fx: Effects, correlation: str
) -> Decided:
    """A pipeline's decision on a routed announcement; `known` is the version of the dataset
    it held before."""
    requests = [*fx.dispatch, *fx.pool_requests]
    runs = sorted({r.pipeline_run_id for r in requests if r.pipeline_run_id})
    tasks = sorted({r.task for r in requests})
    pst = engine.pipelines[data.pipeline]
    outcome: Outcome
    if not data.accepted:
        outcome, detail = "rejected", f"rejected: {data.reason}"
    elif known is not None and data.version <= known:
        outcome, detail = "ignored", f"version {data.version} is not newer than {known}"
    elif tasks:
        outcome, detail = "triggered", f"requested {_some(tasks)} in {_some(runs)}"
    else:
        outcome = "paused" if pst.paused is not None else "waiting"
        detail = _waiting(engine, data)
    note = DecisionData(
        correlation=correlation,
        stage="pipeline",
        dataset=data.dataset,
        partition=data.partition,
        version=data.version,
        pipeline=data.pipeline,
        outcome=outcome,
        detail=detail[:MAX_TEXT],
        runs=runs,
        tasks=tasks,
    )
    return Decided.of(note, source=engine.runs.source, correlationid=correlation)


#: Names a note spells out before it only counts the rest (a note stays small at any fan-out).
NAMED = 10


def _some(names: list[str]) -> str:
    if len(names) <= NAMED:
        return ", ".join(names)
    return f"{', '.join(names[:NAMED])} and {len(names) - NAMED} more"


def _waiting(engine: Engine, data: PipelineInputData) -> str:
    """Why no consumer of the dataset runs: each one's verdict, as explain gives it (for the
    first `NAMED` consumers: explaining costs, and the rest wait alike)."""
    verdicts = []
    consumers = [
        t for t in engine.app.consumers.get(data.dataset, ()) if t.pipeline == data.pipeline
    ]
    for task in consumers[:NAMED]:
        if task.partitioning.partitioned and data.partition == UNPARTITIONED:
            verdicts.append(f"{task.name}: no partition became due")
            continue
        why = explain(engine, data.pipeline, task.name, data.partition).verdict
        verdicts.append(f"{task.name}: {why}")
    more = f"; and {len(consumers) - NAMED} more tasks" if len(consumers) > NAMED else ""
    return ("; ".join(verdicts) or "no task of this pipeline runs on it") + more
