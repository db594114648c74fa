"""Events of a small history, built by hand: a three-step chain a -> t1 -> b -> t2 -> c -> t3 -> d
in one pipeline run, with a retried attempt, a check and a dead letter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import Field

from eventflow.events import (
    CheckCompleted,
    CheckCompletedData,
    DatasetProduced,
    DatasetProducedData,
    DatasetVersion,
    Event,
    Payload,
    PipelineRunData,
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
    dead_letter,
)
from eventflow.history import TASK_LOG

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
PART = "2026-11-01"
RUN = "p:2026-11-01:1"


class LogLineData(Payload):
    time: datetime
    level: str
    message: str


class TaskLogData(Payload):
    """The shape of a task log event's payload."""

    run_id: str
    task: str
    pipeline: str
    partition: str = ""
    attempt: int = 1
    seq: int
    lines: list[LogLineData] = Field(default_factory=list)
    truncated: bool = False


class TaskLog(Event[TaskLogData]):
    type: Literal["eventflow.task.log"] = "eventflow.task.log"


assert TaskLog.event_type == TASK_LOG


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def version(dataset: str, v: int, partition: str = PART) -> DatasetVersion:
    return DatasetVersion(dataset=dataset, partition=partition, version=v)


def produced(
    dataset: str, v: int, t: float, producer: str | None = None, partition: str = PART
) -> DatasetProduced:
    data = DatasetProducedData(
        dataset=dataset, partition=partition, version=v, producer=producer, metadata={"n": v}
    )
    return DatasetProduced.of(data, time=at(t))


def task_run(
    task: str,
    inputs: list[DatasetVersion],
    outputs: list[DatasetVersion],
    t: float,
    *,
    attempt: int = 1,
    fail: str | None = None,
    pipeline: str = "p",
    run: str = RUN,
    partition: str = PART,
) -> list[Event]:
    """Requested at `t`, started at t+1, ended at t+2."""
    run_id = f"{task}:{partition}:h:{attempt}"
    ref: dict[str, Any] = {
        "run_id": run_id,
        "task": task,
        "pipeline": pipeline,
        "partition": partition,
        "attempt": attempt,
    }
    request = TaskRequestedData(**ref, pipeline_run_id=run, inputs=inputs, timeout_s=60)
    events: list[Event] = [
        TaskRequested.of(request, time=at(t), correlationid=run),
        TaskStarted.of(TaskProgressData(**ref, worker="w1"), time=at(t + 1), correlationid=run),
    ]
    if fail is not None:
        failed = TaskFailedData(**ref, worker="w1", error=fail, kind="error", duration_ms=5)
        events.append(TaskFailed.of(failed, time=at(t + 2), correlationid=run))
    else:
        done = TaskSucceededData(**ref, worker="w1", outputs=outputs, duration_ms=5)
        events.append(TaskSucceeded.of(done, time=at(t + 2), correlationid=run))
        events += [produced(o.dataset, o.version, t + 2, run_id, o.partition) for o in outputs]
    return events


def pipeline_run(
    run: str,
    pipeline: str,
    partition: str,
    start: float,
    end: float | None,
    status: str = "succeeded",
) -> list[Event]:
    started = PipelineRunData(
        pipeline=pipeline, partition=partition, run_id=run, status="running", started_at=at(start)
    )
    events: list[Event] = [PipelineRunStarted.of(started, time=at(start))]
    if end is not None:
        ended = started.model_copy(
            update={
                "status": status,
                "finished_at": at(end),
                "tasks": [TaskOutcome(task="t1", status="succeeded", attempts=1)],
                "reason": "" if status == "succeeded" else "t1 failed",
            }
        )
        events.append(PipelineRunSucceeded.of(ended, time=at(end)))
    return events


def chain() -> list[Event]:
    """The whole small history, in the order it happened."""
    a, b, c, d = version("a", 1), version("b", 2), version("c", 3), version("d", 4)
    check = CheckCompletedData(
        run_id="c1:a:1", check="c1", target=a, passed=True, blocking=True, message="ok", worker="w1"
    )
    log = TaskLogData(
        run_id="t1:2026-11-01:h:2",
        task="t1",
        pipeline="p",
        partition=PART,
        attempt=2,
        seq=0,
        lines=[
            LogLineData(time=at(13), level="INFO", message="reading a"),
            LogLineData(time=at(13.5), level="WARNING", message="slow\x00disk"),
        ],
    )
    return [
        produced("a", 1, 0),
        CheckCompleted.of(check, time=at(1)),
        *pipeline_run(RUN, "p", PART, 2, None),
        *task_run("t1", [a], [], 2, fail="boom"),
        *task_run("t1", [a], [b], 12, attempt=2),
        TaskLog.of(log, time=at(14)),
        *task_run("t2", [b], [c], 20),
        *task_run("t3", [c], [d], 30),
        *pipeline_run(RUN, "p", PART, 2, 40)[1:],
        dead_letter(b"\xff not json", "not JSON: bad", origin="publish").model_copy(
            update={"time": at(50)}
        ),
    ]
