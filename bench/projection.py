"""Projecting an embedded event log into a fresh SQLite history, in this process: what the
history child of `eventflow dev` does under load, without the runtime beside it.

The log holds what the throughput scenario's runs log (a dataset from outside, then a pipeline
run of a ten-task chain: each task requested, started and succeeded, its output produced), and
`rebuild` projects it as the child does, `BATCH` events per history transaction. The CPU time
counts every thread of the process (aiosqlite's included)."""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from eventflow.embedded.history import BATCH, rebuild
from eventflow.embedded.store import Store
from eventflow.events import (
    DatasetProduced,
    DatasetProducedData,
    DatasetVersion,
    Event,
    PipelineRunData,
    PipelineRunStarted,
    PipelineRunSucceeded,
    TaskOutcome,
    TaskProgressData,
    TaskRequested,
    TaskRequestedData,
    TaskStarted,
    TaskSucceeded,
    TaskSucceededData,
)
from eventflow.history import HistoryStore
from eventflow.runtime.step import Outcome

from .apps import CHAIN, PIPELINES

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def chain_run(pipeline: int, hour: int) -> list[Event]:
    """One external version and the chain run it starts, as the runtime logs them."""
    name, key = f"flow{pipeline}", (EPOCH + timedelta(hours=hour)).strftime("%Y-%m-%dT%H")
    run_id, at = f"{name}:{key}:1", EPOCH + timedelta(hours=hour)
    given = DatasetVersion(dataset=f"bench.t{pipeline}.0", partition=key, version=1)
    events: list[Event] = [DatasetProduced.of(DatasetProducedData(**given.model_dump()), time=at)]
    run = PipelineRunData(
        pipeline=name, partition=key, run_id=run_id, status="running", started_at=at
    )
    events.append(PipelineRunStarted.of(run, correlationid=run_id, time=at))
    outcomes = []
    for step in range(1, CHAIN + 1):
        task, task_run = f"{name}.step{step}", f"{name}.step{step}:{key}:{step:012x}:1"
        ids = {"run_id": task_run, "task": task, "pipeline": name, "partition": key}
        made = DatasetVersion(dataset=f"bench.t{pipeline}.{step}", partition=key, version=1)
        request = {**ids, "pipeline_run_id": run_id, "inputs": [given], "timeout_s": 60.0}
        succeeded = {**ids, "worker": "bench", "outputs": [made], "duration_ms": 0.1}
        envelope: dict[str, Any] = {"correlationid": run_id, "time": at}
        events += [
            TaskRequested.of(TaskRequestedData.model_validate(request), **envelope),
            TaskStarted.of(TaskProgressData.model_validate({**ids, "worker": "bench"}), **envelope),
            TaskSucceeded.of(TaskSucceededData.model_validate(succeeded), **envelope),
            DatasetProduced.of(
                DatasetProducedData(**made.model_dump(), producer=task_run), **envelope
            ),
        ]
        outcomes.append(
            TaskOutcome(
                task=task, status="succeeded", run_id=task_run, attempts=1, outputs=[made.dataset]
            )
        )
        given = made
    done = run.model_copy(update={"status": "succeeded", "finished_at": at, "tasks": outcomes})
    events.append(PipelineRunSucceeded.of(done, correlationid=run_id, time=at))
    return events


async def projection(*, runs: int) -> dict[str, Any]:
    """`runs` chain runs across the bench's pipelines, logged, then projected."""
    with tempfile.TemporaryDirectory(prefix="eventflow-bench-projection-") as folder:
        database = Path(folder) / "state.db"
        store = Store(database)
        await store.start()
        logged = 0
        try:
            for hour in range(-(-runs // PIPELINES)):
                # As the runtime logs a step's events: through the store's own commit.
                step = Outcome(
                    events=[
                        e
                        for p in range(min(PIPELINES, runs - hour * PIPELINES))
                        for e in chain_run(p, hour)
                    ]
                )
                await store.commit(step, [])
                logged += len(step.events)
        finally:
            await store.stop()
        async with HistoryStore(f"sqlite+aiosqlite:///{Path(folder) / 'history.db'}") as history:
            began, cpu = time.perf_counter(), time.process_time()
            read = await rebuild(database, history)
            seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    assert read == logged, (read, logged)
    return {
        "events": logged,
        "events_per_apply": BATCH,
        "seconds": round(seconds, 3),
        "events_per_s": round(logged / seconds),
        "cpu_us_per_event": round(cpu / logged * 1e6, 1),
    }
