"""What the operator's commands print: the API's answers as plain text, in fixed columns that
read the same on a dev instance and a Kafka deployment (`--json` prints the answers as they are).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from .core import Explanation
from .events import TaskFailed, TaskLog, TaskLogData, TaskSucceeded
from .history.models import (
    Freshness,
    FreshnessViolation,
    Lineage,
    LogLine,
    Page,
    PipelineRun,
    RunDetail,
    TaskAttempt,
    VersionRef,
)
from .summary import MARKS

if TYPE_CHECKING:
    from .api.client import ApiClient
    from .api.models import AlertRule
    from .history import AlertDelivery

#: The mark of a checklist line that holds, and of one that holds the task back.
OK, NOT_OK = "✓", "✗"


def when(at: datetime | None) -> str:
    """A time as UTC to the second; `-` when unknown."""
    if at is None:
        return "-"
    return at.strftime("%Y-%m-%d %H:%M:%S")


def seconds(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    return f"{(end - start).total_seconds():.2f}s"


def age(value: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.1f}s"


def version(ref: VersionRef) -> str:
    """`dataset@partition:version`, or `dataset:version` unpartitioned."""
    where = f"@{ref.partition}" if ref.partition else ""
    return f"{ref.dataset}{where}:{ref.version}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns as wide as their widest cell, two spaces apart; the last one unpadded."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [f"{cell:<{w}}" for cell, w in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


# -- status, runs ----------------------------------------------------------------------------------
def freshness_table(rows: Sequence[Freshness], late: Sequence[FreshnessViolation] = ()) -> str:
    """The newest version of each dataset partition and its age, `LATE` where a freshness
    violation of the partition (or of the dataset's age) is open."""
    if not rows:
        return "No dataset has been produced yet."
    marked = {(v.name, v.partition) for v in late if v.kind == "dataset"}
    out = [f"{'dataset':<28} {'partition':<14} {'version':>17}  age"]
    for row in rows:
        line = f"{row.dataset:<28} {row.partition or '-':<14} {row.version:>17}  {age(row.age_s)}"
        lagging = (row.dataset, row.partition) in marked or (row.dataset, "") in marked
        out.append(f"{line}  LATE" if lagging else line)
    return "\n".join(out)


def violations_table(late: Sequence[FreshnessViolation]) -> str:
    """Freshness violations open now: what is late, by which policy, due when, since when."""
    if not late:
        return "Nothing is late."
    out = [f"{'dataset or task':<28} {'partition':<14} {'policy':<9} {'due':<20} since"]
    for v in late:
        name = v.name if v.kind == "dataset" else f"{v.pipeline}.{v.name}"
        out.append(
            f"{name:<28} {v.partition or '-':<14} {v.policy:<9} {when(v.expected_by):<20} "
            f"{when(v.violated_at)}"
        )
    return "\n".join(out)


def run_line(run: PipelineRun) -> str:
    """Pipeline, partition, outcome, duration, id, and why it failed: as `eventflow dev`
    prints each run."""
    took = seconds(run.started_at, run.finished_at)
    line = f"{run.pipeline}  {run.partition or '-'}  {MARKS[run.status]}  {took}  ({run.run_id})"
    return f"{line}  {run.reason}" if run.reason else line


def status(
    fresh: Sequence[Freshness],
    runs: Sequence[PipelineRun] | None,
    late: Sequence[FreshnessViolation] | None = None,
) -> str:
    """What `eventflow status` prints; `runs` None: none asked for (`--runs 0`); `late`: the
    freshness violations open now (None: the App has no freshness policy)."""
    lines = ["Datasets", freshness_table(fresh, late or ())]
    if late is not None:
        lines += ["", "Late", violations_table(late)]
    if runs is not None:
        recent = [run_line(run) for run in runs] or ["No pipeline run yet."]
        lines += ["", "Recent runs", *recent]
    return "\n".join(lines)


def runs(page: Page[PipelineRun]) -> str:
    """A page of runs, newest first, and how to get the next one."""
    if not page.items:
        return "No pipeline run matches."
    rows = [
        [
            when(r.started_at),
            r.pipeline,
            r.partition or "-",
            MARKS[r.status],
            seconds(r.started_at, r.finished_at),
            r.run_id,
            r.reason,
        ]
        for r in page.items
    ]
    header = ["started", "pipeline", "partition", "status", "took", "run id", "reason"]
    out = [table(header, rows), "", f"{len(page.items)} of {page.total} runs"]
    if page.next_cursor:
        out[-1] += f"; next page: --cursor {page.next_cursor}"
    return "\n".join(out)


# -- one run, its logs -----------------------------------------------------------------------------
def run(detail: RunDetail) -> str:
    """A run, its attempts in the order they were requested, and the versions each consumed."""
    r = detail.run
    out = [
        f"run {r.run_id}",
        f"  pipeline   {r.pipeline}",
        f"  partition  {r.partition or '-'}",
        f"  status     {MARKS[r.status]}",
        f"  started    {when(r.started_at)}",
        f"  finished   {when(r.finished_at)}",
    ]
    if r.reason:
        out.append(f"  reason     {r.reason}")
    out += ["", "Attempts"]
    if detail.attempts:
        out.append(attempts(detail.attempts))
    else:
        out.append("No task attempt yet.")
    consumed = [
        [f"{a.task} #{a.attempt}", ", ".join(version(v) for v in a.inputs) or "-"]
        for a in detail.attempts
    ]
    if consumed:
        out += ["", "Inputs consumed", table(["task", "versions"], consumed)]
    return "\n".join(out)


def attempts(found: Sequence[TaskAttempt]) -> str:
    rows = [
        [
            a.task,
            str(a.attempt),
            a.status,
            a.worker or "-",
            when(a.started_at),
            _duration(a),
            a.run_id,
            _first_line(a.error or a.skipped or ""),
        ]
        for a in found
    ]
    header = ["task", "attempt", "status", "worker", "started", "took", "run id", "error"]
    return table(header, rows)


def _duration(a: TaskAttempt) -> str:
    if a.duration_ms is not None:
        return f"{a.duration_ms / 1000:.2f}s"
    return seconds(a.started_at, a.ended_at)


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def log_line(line: LogLine) -> str:
    return f"{line.time:%H:%M:%S.%f}"[:-3] + f"  {line.level:<7}  {line.message}"


def logs(attempt: TaskAttempt, lines: Sequence[LogLine]) -> str:
    """An attempt's log with a header naming it."""
    head = f"== {attempt.task} #{attempt.attempt} ({attempt.status})  {attempt.run_id}"
    body = [log_line(line) for line in lines] or ["(nothing logged)"]
    return "\n".join([head, *body])


# -- explain ---------------------------------------------------------------------------------------
def explain(found: Explanation) -> str:
    """The verdict first, then the checklist: one line per item, ✓ or ✗."""
    where = f" in {found.partition}" if found.partition else ""
    out = [f"{found.pipeline}.{found.task}{where}: {found.status}: {found.verdict}"]
    for item in found.items:
        mark = OK if item.ok else NOT_OK
        out.append(f"  {mark} {item.title}" + (f": {item.detail}" if item.detail else ""))
    return "\n".join(out)


# -- lineage ---------------------------------------------------------------------------------------
def lineage(found: Lineage) -> str:
    """The version, then the versions it came from (up) and what was made of it (down), as
    trees."""
    out = [f"{version(found)}  {_made_by(found)}"]
    out.append("upstream")
    out += _up(found, "  ") or ["  (none)"]
    out.append("downstream")
    out += _down(found, "  ") or ["  (none)"]
    return "\n".join(out)


def _made_by(node: Lineage) -> str:
    made = f"at {when(node.time)}" if node.time is not None else ""
    if node.producer is not None:
        p = node.producer
        made += f" by {p.task} #{p.attempt} ({p.run_id})"
    else:
        made += " from outside"
    return made.strip()


def _up(node: Lineage, indent: str) -> list[str]:
    out = []
    for i, parent in enumerate(node.upstream):
        last = i == len(node.upstream) - 1
        out.append(f"{indent}{'└─' if last else '├─'} {version(parent)}  {_made_by(parent)}")
        out += _up(parent, indent + ("   " if last else "│  "))
    return out


def _down(node: Lineage, indent: str) -> list[str]:
    out = []
    for i, consumer in enumerate(node.downstream):
        last = i == len(node.downstream) - 1
        a = consumer.attempt
        made = ", ".join(version(o) for o in consumer.outputs) or "no output"
        out.append(
            f"{indent}{'└─' if last else '├─'} {a.task} #{a.attempt} {a.status} ({a.run_id}) "
            f"-> {made}"
        )
        inner = indent + ("   " if last else "│  ")
        for output in consumer.outputs:
            out += _down(output, inner)
    return out


# -- following a log -------------------------------------------------------------------------------
#: Events that end an attempt, for `logs --follow`.
ENDS = (TaskSucceeded.event_type, TaskFailed.event_type)


async def follow(client: ApiClient, attempt: TaskAttempt) -> AsyncIterator[LogLine]:
    """An attempt's log lines so far, then each as it is written, until the attempt ends.

    The live stream opens first and the stored lines are read after it, so no line falls
    between the two; a chunk both stored and streamed (by its `seq`) is given once.
    """
    events = client.stream(
        "/api/events/stream", type=[TaskLog.event_type, *ENDS], pipeline=attempt.pipeline
    )
    try:
        await anext(events)  # `live`: what happens from now on comes through the stream
        seen: set[int] = set()
        for found in await client.get(f"/api/attempts/{attempt.run_id}/logs"):
            line = LogLine.model_validate(found)
            seen.add(line.seq)
            yield line
        now = TaskAttempt.model_validate(await client.get(f"/api/attempts/{attempt.run_id}"))
        if now.status in ("succeeded", "failed"):
            return
        async for item in events:
            event = item.get("data")
            if not isinstance(event, dict) or event.get("data", {}).get("run_id") != attempt.run_id:
                continue
            if event["type"] in ENDS:
                return
            chunk = TaskLogData.model_validate(event["data"])
            if chunk.seq in seen:
                continue
            seen.add(chunk.seq)
            for i, written in enumerate(chunk.lines):
                yield LogLine(
                    run_id=chunk.run_id,
                    seq=chunk.seq,
                    line=i,
                    task=chunk.task,
                    pipeline=chunk.pipeline,
                    partition=chunk.partition,
                    attempt=chunk.attempt,
                    time=written.time,
                    level=written.level,
                    message=written.message,
                    truncated=chunk.truncated,
                )
    finally:
        await events.aclose()


# -- alerts --------------------------------------------------------------------------------------
def alerts(rules: Sequence[AlertRule], deliveries: Sequence[AlertDelivery]) -> str:
    """The alert rules, then the deliveries asked for, newest first."""
    if not rules:
        head = "No alert rules (App(..., alerts=[ef.Alert(...)]) adds them)."
    else:
        head = table(
            ["rule", "on", "format", "webhook", "filters"],
            [
                [
                    r.name,
                    ",".join(r.on),
                    r.format,
                    r.webhook,
                    " ".join(
                        f"{what}={','.join(names)}"
                        for what, names in (
                            ("pipelines", r.pipelines),
                            ("datasets", r.datasets),
                            ("partitions", r.partitions),
                        )
                        if names
                    )
                    or "-",
                ]
                for r in rules
            ],
        )
    if not deliveries:
        return f"{head}\n\nNo deliveries."
    rows = [
        [
            when(d.recorded_at),
            d.rule,
            d.event_type.removeprefix("eventflow."),
            " ".join(x for x in (d.pipeline or d.dataset, d.partition) if x) or "-",
            d.state,
            str(d.attempts),
            str(d.status_code) if d.status_code is not None else "-",
            d.error or (f"next {when(d.next_attempt_at)}" if d.next_attempt_at else ""),
        ]
        for d in deliveries
    ]
    header = ["recorded", "rule", "event", "where", "state", "tries", "http", "last error"]
    return f"{head}\n\n{table(header, rows)}"
