"""`eventflow backfill`: start a backfill (or print its dry run) and follow its progress, list,
show and cancel backfills; all through the API, as the other operator's commands."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import operator
from .api.client import ApiClient, ApiError
from .api.models import Backfill, BackfillStarted
from .events import PipelineRunFailed, PipelineRunSucceeded
from .settings import Settings

#: Subcommands; any other first word is a pipeline to backfill.
COMMANDS = ("start", "list", "show", "cancel")


class BackfillGroup(click.Group):
    """`backfill PIPELINE ...` is `backfill start PIPELINE ...`: a group whose first word is
    a pipeline unless it names a subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in COMMANDS and args[0] not in ("--help", "-h"):
            args = ["start", *args]
        return super().parse_args(ctx, args)


def _cli() -> Any:
    from . import cli  # the command line's helpers; it adds this group to itself

    return cli


@click.group(cls=BackfillGroup)
def backfill() -> None:
    """Run a pipeline over past partitions, through the same run decisions as any run:
    `eventflow backfill PIPELINE --from P1 --to P2` (or `--partitions a,b`, or
    `--from-dataset D` for its consumers downward); `list`, `show ID`, `cancel ID`."""


@backfill.command("start")
@click.argument("pipeline", required=False)
@click.option("--from", "first", default=None, metavar="PARTITION", help="First partition.")
@click.option("--to", "last", default=None, metavar="PARTITION", help="Last partition (included).")
@click.option("--partitions", default=None, metavar="A,B,...", help="These partitions instead.")
@click.option(
    "--from-dataset",
    "dataset",
    default=None,
    help="Start the tasks consuming this dataset (of PIPELINE, or of every pipeline "
    "consuming it); what they feed follows as usual.",
)
@click.option(
    "--mode",
    type=click.Choice(["missing", "failed", "all"]),
    default="missing",
    show_default=True,
    help="Partitions never run, whose last run failed, or both and those run on older inputs.",
)
@click.option("--max-active", type=click.IntRange(1, 10_000), default=4, show_default=True)
@click.option("--reverse", is_flag=True, help="Newest partition first.")
@click.option("--dry-run", is_flag=True, help="Print the runs it would start, and why; start none.")
@click.option("--no-wait", is_flag=True, help="Return once started; no progress bar.")
@click.option("--reason", default="backfill", show_default=True, help="Why (kept in each run).")
@click.option("--operator", "who", default=None, help="Who acts (default: the OS user).")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.option("--home", type=click.Path(path_type=Path, file_okay=False), default=None)
def start(
    pipeline: str | None,
    first: str | None,
    last: str | None,
    partitions: str | None,
    dataset: str | None,
    mode: str,
    max_active: int,
    reverse: bool,
    dry_run: bool,
    no_wait: bool,
    reason: str,
    who: str | None,
    as_json: bool,
    home: Path | None,
) -> None:
    """Backfill PIPELINE over a range (`--from`, `--to`) or a list (`--partitions`)."""
    cli = _cli()
    if pipeline is None and dataset is None:
        raise click.UsageError("give a PIPELINE, or --from-dataset")
    if (partitions is None) == (first is None and last is None):
        raise click.UsageError("give --from and --to, or --partitions")
    if partitions is None and (first is None or last is None):
        raise click.UsageError("a range needs both --from and --to")
    body: dict[str, Any] = {
        "pipeline": pipeline,
        "dataset": dataset,
        "start": first,
        "end": last,
        "partitions": [p.strip() for p in partitions.split(",")] if partitions else None,
        "mode": mode,
        "max_active": max_active,
        "reverse": reverse,
        "dry_run": dry_run,
        "reason": reason,
        "operator": who or cli._operator(),
    }
    body = {k: v for k, v in body.items() if v is not None}
    settings: Settings = cli._settings(home)
    try:
        found = cli._ask(settings, lambda client: client.post("/api/backfills", body))
    except ApiError as e:
        click.echo(f"refused: {e.reason}", err=True)
        sys.exit(1)
    started = BackfillStarted.model_validate(found)
    if as_json:
        cli._echo_json(found)
        return
    if dry_run:
        click.echo(plan_text(started))
        return
    click.echo(f"backfill {started.id} of {', '.join(started.pipelines)}: started")
    if no_wait:
        return
    try:
        done = cli._run(follow(settings, started.id))
    except ApiError as e:
        click.echo(f"error: {e.reason}", err=True)
        sys.exit(1)
    click.echo(progress_line(done))
    sys.exit(1 if done.failed or done.status == "cancelled" else 0)


@backfill.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.option("--home", type=click.Path(path_type=Path, file_okay=False), default=None)
def listed(as_json: bool, home: Path | None) -> None:
    """The backfills kept (running, and the last finished), newest first."""
    cli = _cli()
    found = cli._ask(cli._settings(home), lambda client: client.get("/api/backfills"))
    if as_json:
        cli._echo_json(found)
        return
    shown = [Backfill.model_validate(b) for b in found]
    if not shown:
        click.echo("No backfill.")
        return
    rows = [
        [
            b.id,
            ",".join(p.pipeline for p in b.pipelines),
            b.status,
            f"{b.start}..{b.end}",
            f"{b.succeeded + b.failed + b.skipped}/{b.planned}",
            f"{b.failed} failed, {b.skipped} skipped",
        ]
        for b in shown
    ]
    click.echo(operator.table(["id", "pipelines", "status", "range", "done", "of which"], rows))


@backfill.command("show")
@click.argument("backfill_id")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.option("--home", type=click.Path(path_type=Path, file_okay=False), default=None)
def show(backfill_id: str, as_json: bool, home: Path | None) -> None:
    """One backfill: its progress per pipeline, and the partitions skipped with the reason."""
    cli = _cli()
    path = f"/api/backfills/{quote(backfill_id, safe='')}"
    try:
        found = cli._ask(cli._settings(home), lambda client: client.get(path))
    except ApiError as e:
        click.echo(f"error: {e.reason}", err=True)
        sys.exit(1)
    if as_json:
        cli._echo_json(found)
        return
    click.echo(detail_text(Backfill.model_validate(found)))


@backfill.command("cancel")
@click.argument("backfill_id")
@click.option("--reason", required=True, help="Why (kept in the log).")
@click.option("--operator", "who", default=None, help="Who acts (default: the OS user).")
@click.option("--home", type=click.Path(path_type=Path, file_okay=False), default=None)
def cancel(backfill_id: str, reason: str, who: str | None, home: Path | None) -> None:
    """Start no more runs of the backfill; the runs in progress finish."""
    cli = _cli()
    path = f"/api/backfills/{quote(backfill_id, safe='')}/cancel"
    body = {"reason": reason, "operator": who or cli._operator()}
    try:
        found = cli._ask(cli._settings(home), lambda client: client.post(path, body))
    except ApiError as e:
        click.echo(f"refused: {e.reason}", err=True)
        sys.exit(1)
    done = BackfillStarted.model_validate(found)
    result = "applied" if done.status == "applied" else "published, not yet decided"
    click.echo(f"cancel backfill {backfill_id}: {result}")


async def follow(settings: Settings, bid: str) -> Backfill:
    """A progress bar of the backfill until no run of it is left: re-read when a pipeline run
    ends (the live stream opens first, so no ending falls between the two)."""
    ends = [PipelineRunSucceeded.event_type, PipelineRunFailed.event_type]
    async with ApiClient(settings) as client:
        events = client.stream("/api/events/stream", type=ends)
        try:
            await anext(events)  # `live`
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
            )
            with Progress(*columns, transient=False) as bar:
                shown = bar.add_task(bid, total=None, detail="")
                while True:
                    try:
                        now = Backfill.model_validate(await client.get(f"/api/backfills/{bid}"))
                    except ApiError as e:
                        if e.status != 404:
                            raise
                        # Published, not decided yet (Kafka): known once its first run ends,
                        # or at the stream's next keep-alive.
                        await anext(events)
                        continue
                    bar.update(
                        shown,
                        total=now.planned,
                        completed=now.succeeded + now.failed + now.skipped,
                        detail=f"{now.failed} failed, {now.skipped} skipped",
                    )
                    if now.status != "running":
                        return now
                    await anext(events)
        finally:
            await events.aclose()


def progress_line(b: Backfill) -> str:
    return (
        f"backfill {b.id} {b.status}: {b.planned} planned, {b.started} started, "
        f"{b.succeeded} succeeded, {b.failed} failed, {b.skipped} skipped"
    )


def plan_text(started: BackfillStarted) -> str:
    """The dry run: one line per partition, in the order the backfill would take them."""
    rows = [[p.pipeline, p.partition, "run" if p.run else "skip", p.why] for p in started.plan]
    runs = sum(1 for p in started.plan if p.run)
    table = operator.table(["pipeline", "partition", "verdict", "why"], rows)
    return f"{table}\n{runs} runs would start, {len(started.plan) - runs} partitions skipped"


def detail_text(b: Backfill) -> str:
    lines = [
        progress_line(b),
        f"  {b.mode} over {b.start}..{b.end}, {b.max_active} at a time"
        + (", newest first" if b.reverse else "")
        + (f", from dataset {b.dataset}" if b.dataset else ""),
        f"  by {b.operator} at {b.created_at.isoformat()}: {b.reason}",
    ]
    for part in b.pipelines:
        lines.append(
            f"  {part.pipeline}: {part.status}, {part.started}/{part.planned} started, "
            f"{part.succeeded} succeeded, {part.failed} failed, {part.skipped} skipped"
            + (f"; running: {', '.join(part.active)}" if part.active else "")
        )
        lines += _skips(part.skips)
    return "\n".join(lines)


def _skips(skips: Sequence[Any]) -> list[str]:
    return [f"    skipped {s.partition}: {s.why}" for s in skips]
