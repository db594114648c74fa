"""The pipeline page's queries, on SQLite and PostgreSQL: the partition x task grid (last attempt
per cell, skipped branches from the last run, newest activity first, cursor pages) and the
per-pipeline run summaries."""

from __future__ import annotations

from typing import Any, Literal

from eventflow.events import (
    Event,
    PipelineRunData,
    PipelineRunFailed,
    PipelineRunStarted,
    PipelineRunSucceeded,
    TaskFailed,
    TaskFailedData,
    TaskOutcome,
    TaskProgressData,
    TaskRequested,
    TaskRequestedData,
    TaskStarted,
    TaskSucceeded,
    TaskSucceededData,
)
from eventflow.history import GridRow, HistoryStore

from .events import at, version

Outcome = Literal["succeeded", "failed", "skipped", "upstream_failed"]


def attempt(
    task: str,
    partition: str,
    run: str,
    t: float,
    *,
    n: int = 1,
    salt: str = "h",
    end: str | None = "succeeded",
    pipeline: str = "p",
    skipped: str | None = None,
) -> list[Event]:
    """Requested at `t`, started at t+1, ended (`end`: succeeded or failed; None: still
    running) at t+2."""
    ref: dict[str, Any] = {
        "run_id": f"{task}:{partition}:{salt}:{n}",
        "task": task,
        "pipeline": pipeline,
        "partition": partition,
        "attempt": n,
    }
    request = TaskRequestedData(**ref, pipeline_run_id=run, inputs=[], timeout_s=60)
    events: list[Event] = [
        TaskRequested.of(request, time=at(t)),
        TaskStarted.of(TaskProgressData(**ref, worker="w"), time=at(t + 1)),
    ]
    if end == "failed":
        failed = TaskFailedData(
            **ref, worker="w", error=f"{task} broke", kind="error", duration_ms=5
        )
        events.append(TaskFailed.of(failed, time=at(t + 2)))
    elif end == "succeeded":
        outputs = [] if skipped else [version(f"{task}.out", int(t) + 1, partition)]
        done = TaskSucceededData(**ref, worker="w", outputs=outputs, skipped=skipped, duration_ms=5)
        events.append(TaskSucceeded.of(done, time=at(t + 2)))
    return events


def run(
    run_id: str,
    partition: str,
    start: float,
    end: float | None,
    outcomes: dict[str, Outcome],
    *,
    pipeline: str = "p",
) -> list[Event]:
    started = PipelineRunData(
        pipeline=pipeline,
        partition=partition,
        run_id=run_id,
        status="running",
        started_at=at(start),
    )
    events: list[Event] = [PipelineRunStarted.of(started, time=at(start))]
    if end is not None:
        failed = "failed" in outcomes.values()
        ended = started.model_copy(
            update={
                "status": "failed" if failed else "succeeded",
                "finished_at": at(end),
                "tasks": [TaskOutcome(task=k, status=v) for k, v in outcomes.items()],
            }
        )
        kind = PipelineRunFailed if failed else PipelineRunSucceeded
        events.append(kind.of(ended, time=at(end)))
    return events


def history() -> list[Event]:
    """Three partitions of pipeline p, oldest activity first, and one of pipeline q.

    - k1: an older run where every task succeeded, then a run where t2 emitted nothing and t3
      was skipped;
    - k2: t1 failed twice, t2 never ran (upstream failed);
    - k3: t1 still running.
    """
    everything: dict[str, Outcome] = {"t1": "succeeded", "t2": "succeeded", "t3": "succeeded"}
    return [
        *run("r0", "k1", 0, 9, everything),
        *attempt("t1", "k1", "r0", 0),
        *attempt("t2", "k1", "r0", 3),
        *attempt("t3", "k1", "r0", 6),
        *run("r1", "k1", 10, 19, {"t1": "succeeded", "t2": "succeeded", "t3": "skipped"}),
        *attempt("t1", "k1", "r1", 10, salt="rerun"),
        *attempt("t2", "k1", "r1", 13, salt="rerun", skipped="no rows today"),
        *run("r2", "k2", 20, 29, {"t1": "failed", "t2": "upstream_failed", "t3": "skipped"}),
        *attempt("t1", "k2", "r2", 20, end="failed"),
        *attempt("t1", "k2", "r2", 23, n=2, end="failed"),
        *run("r3", "k3", 30, None, {}),
        *attempt("t1", "k3", "r3", 30, end=None),
        *run("q1", "k1", 40, 49, {"t1": "succeeded"}, pipeline="q"),
        *attempt("t1", "k1", "q1", 40, pipeline="q"),
    ]


def cells(row: GridRow) -> dict[str, tuple[str, int, int]]:
    return {task: (c.status, c.attempt, c.attempts) for task, c in row.cells.items()}


async def test_the_grid_shows_each_tasks_last_attempt_and_skipped_branches(
    store: HistoryStore,
) -> None:
    await store.apply(history())
    page = await store.grid("p")
    assert page.total == 3 and page.next_cursor is None
    k3, k2, k1 = page.items
    assert [r.partition for r in page.items] == ["k3", "k2", "k1"]
    assert (k3.last_activity, k2.last_activity, k1.last_activity) == (at(30), at(23), at(13))

    assert cells(k3) == {"t1": ("running", 1, 1)}
    assert cells(k2) == {
        "t1": ("failed", 2, 2),
        "t2": ("upstream_failed", 0, 0),
        "t3": ("skipped", 0, 0),
    }
    assert k2.cells["t1"].detail == "t1 broke" and k2.cells["t1"].pipeline_run_id == "r2"
    assert k2.cells["t2"].pipeline_run_id == "r2" and k2.cells["t2"].run_id is None
    # the last run of k1 skipped t3, which had succeeded in the run before
    assert cells(k1) == {
        "t1": ("succeeded", 1, 2),
        "t2": ("succeeded", 1, 2),
        "t3": ("skipped", 0, 1),
    }
    assert k1.cells["t1"].run_id == "t1:k1:rerun:1"
    assert k1.cells["t2"].detail == "no rows today"
    assert k1.cells["t3"].pipeline_run_id == "r1"

    assert [r.partition for r in (await store.grid("q")).items] == ["k1"]
    assert (await store.grid("nope")).items == []


async def test_the_grid_pages_by_cursor_while_partitions_are_added(store: HistoryStore) -> None:
    await store.apply(history())
    first = await store.grid("p", limit=2)
    assert [r.partition for r in first.items] == ["k3", "k2"] and first.total == 3
    assert first.next_cursor is not None
    await store.apply([*run("r4", "k4", 60, None, {}), *attempt("t1", "k4", "r4", 60, end=None)])
    second = await store.grid("p", limit=2, cursor=first.next_cursor)
    assert [r.partition for r in second.items] == ["k1"] and second.total == 4
    assert second.next_cursor is None
    assert cells(second.items[0])["t3"] == ("skipped", 0, 1)


async def test_partitions_of_equal_activity_page_by_key(store: HistoryStore) -> None:
    events: list[Event] = []
    for key in ("a", "b", "c", "d", "e"):
        events += run(f"r-{key}", key, 0, None, {})
    await store.apply(events)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await store.grid("p", limit=2, cursor=cursor)
        seen += [r.partition for r in page.items]
        assert all(r.cells == {} for r in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ["e", "d", "c", "b", "a"]


async def test_pipeline_summaries_count_runs_and_name_the_newest(store: HistoryStore) -> None:
    await store.apply(history())
    p, q = await store.pipeline_summaries()
    assert (p.pipeline, p.runs, p.running, p.failed) == ("p", 4, 1, 1)
    assert p.last is not None and p.last.run_id == "r3"
    assert (q.pipeline, q.runs, q.running, q.failed) == ("q", 1, 0, 0)
    assert q.last is not None and q.last.status == "succeeded"
