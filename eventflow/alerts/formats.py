"""What a delivery posts: the CloudEvent as it is (`json`), or a Slack message (`slack`) saying
what happened, where and why, with a link to the UI page that shows it when a UI address is
configured (`Settings.ui_url`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from ..events import (
    CheckCompletedData,
    DeadLetterData,
    Event,
    FreshnessData,
    PipelineRunData,
    TaskFailedData,
    encode,
)

#: Characters (escaped) of an error or reason a Slack message keeps.
WHY_MAX = 2000
#: The most characters Slack takes in a section block's text.
SECTION_MAX = 3000


@dataclass(frozen=True)
class Summary:
    """An event told in words: `title` (what), `where`, `why`, and the UI path that shows it."""

    title: str
    where: str
    why: str
    path: str | None
    failed: bool


def body(event: Event, format: str, ui_url: str | None) -> tuple[bytes, str]:
    """The request body for `event` in `format`, and its content type."""
    if format == "slack":
        return orjson.dumps(slack(event, ui_url)), "application/json"
    return encode(event), "application/cloudevents+json"


def slack(event: Event, ui_url: str | None) -> dict[str, Any]:
    """A Slack-compatible message (`text` for notifications, `blocks` for the layout)."""
    said = summary(event)
    mark = ":red_circle:" if said.failed else ":large_green_circle:"
    lines = [f"{mark} *{_escape(said.title)}*", _escape(said.where)]
    link = None
    if ui_url and said.path:
        link = ui_url.rstrip("/") + said.path
    # Slack refuses a section whose text is over `SECTION_MAX` characters, as sent: escaping
    # makes `<` four, so the reason gets what the rest leaves, counted once escaped.
    if said.why:
        room = SECTION_MAX - len("\n".join(lines)) - len("\n``````")
        if link and room - len(f"\n<{link}|Open in eventflow>") >= 100:
            room -= len(f"\n<{link}|Open in eventflow>")
        else:
            link = None  # a link as long as the message (a run id of odd characters) is left out
        lines.append(f"```{_escaped_cut(said.why, min(room, WHY_MAX))}```")
    if link:
        lines.append(f"<{link}|Open in eventflow>")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}},
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": _escape(f"{event.type} · {event.time.isoformat()} · id {event.id}"),
                }
            ],
        },
    ]
    text = _escape(f"{said.title}: {said.where}")
    if said.why:
        text += ": " + _escaped_cut(said.why, 300)
    return {"text": text, "blocks": blocks}


def summary(event: Event) -> Summary:
    """What `event` says, for a person."""
    data = event.data
    if isinstance(data, PipelineRunData):
        failed = data.status == "failed"
        why = data.reason
        if failed and not why:
            why = "; ".join(
                f"{t.task}: {t.error or t.status}" for t in data.tasks if t.status == "failed"
            )
        return Summary(
            title=f"Run of {data.pipeline} {'failed' if failed else data.status}",
            where=_where(pipeline=data.pipeline, partition=data.partition),
            why=why,
            path=f"/ui/runs/{quote(data.run_id, safe='')}",
            failed=failed,
        )
    if isinstance(data, TaskFailedData):
        query = urlencode({"partition": data.partition}) if data.partition else ""
        return Summary(
            title=f"Task {data.task} failed (attempt {data.attempt}, {data.kind})",
            where=_where(pipeline=data.pipeline, partition=data.partition),
            why=data.error,
            path=f"/ui/pipelines/{quote(data.pipeline, safe='')}/tasks/"
            f"{quote(data.task, safe='')}/why" + (f"?{query}" if query else ""),
            failed=True,
        )
    if isinstance(data, CheckCompletedData):
        target = data.target
        return Summary(
            title=f"Check {data.check} {'passed' if data.passed else 'failed'}"
            + ("" if data.passed or data.blocking else " (warning)"),
            where=_where(dataset=target.dataset, partition=target.partition)
            + f", version {target.version}",
            why=data.message,
            path=f"/ui/datasets/{quote(target.dataset, safe='')}",
            failed=not data.passed,
        )
    if isinstance(data, FreshnessData):
        late = event.type.endswith(".violated")
        if data.kind == "dataset":
            where = _where(dataset=data.name, partition=data.partition)
            path = f"/ui/datasets/{quote(data.name, safe='')}"
        else:
            where = _where(pipeline=data.pipeline, partition=data.partition) + f", task {data.name}"
            path = f"/ui/pipelines/{quote(data.pipeline or '', safe='')}"
        return Summary(
            title=f"{data.name} is late" if late else f"{data.name} is on time again",
            where=where,
            why=data.message,
            path=path,
            failed=late,
        )
    if isinstance(data, DeadLetterData):
        return Summary(
            title="Input refused (dead letter)",
            where=f"arrived on {data.origin or 'an entry point'}, {data.size} bytes",
            why=data.reason,
            path="/ui/deadletters",
            failed=True,
        )
    return Summary(title=event.type, where=event.source, why="", path=None, failed=False)


def _where(*, pipeline: str | None = None, dataset: str | None = None, partition: str = "") -> str:
    said = f"pipeline {pipeline}" if pipeline else f"dataset {dataset}"
    return said + (f", partition {partition}" if partition else "")


def _escaped_cut(text: str, limit: int) -> str:
    """`text` escaped, cut to at most `limit` characters (an entity is never cut in two)."""
    escaped = _escape(text)
    if len(escaped) <= limit:
        return escaped
    cut, used = [], 1  # the ellipsis
    for c in text:
        e = _escape(c)
        if used + len(e) > limit:
            break
        cut.append(e)
        used += len(e)
    return "".join(cut) + "…"


def _escape(text: str) -> str:
    """Slack's mrkdwn reads `&`, `<` and `>` as markup; these are escaped as Slack asks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
