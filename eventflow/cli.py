"""The `eventflow` command. User mistakes end in one line on stderr, never a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson

from .embedded import ControlClient, ControlServer, EmbeddedRuntime, Store
from .errors import EventflowError
from .events import (
    PIPELINE_RUN_EVENTS,
    CheckCompleted,
    DatasetProduced,
    DatasetProducedData,
    DeadLetter,
    PipelineRunData,
    encode,
)
from .loader import load_app
from .settings import Settings
from .summary import freshness_table, graph_dot, graph_text, run_line, run_summary

T = TypeVar("T")


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EventflowError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)


def _settings(home: Path | None) -> Settings:
    try:
        return Settings(home=home) if home is not None else Settings()
    except ValueError as e:
        raise click.UsageError(f"bad EVENTFLOW_ setting: {e}") from None


def _run(main: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(main)


def _parse_meta(pairs: tuple[str, ...]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="--meta")
        try:
            meta[key] = orjson.loads(value)
        except orjson.JSONDecodeError:
            meta[key] = value
    return meta


home_option = click.option(
    "--home",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="State folder (default: $EVENTFLOW_HOME or ./.eventflow).",
)


@click.group(cls=_Group)
@click.version_option(package_name="eventflow")
def cli() -> None:
    """eventflow: pipelines triggered by data, not by the clock."""


@cli.command()
@click.argument("file")
@click.option("--emit", "emits", multiple=True, metavar="DATASET[@PARTITION]",
              help="Publish a version of DATASET once started (repeatable).")  # fmt: skip
@click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Metadata of --emit events.")
@click.option("--until-idle", is_flag=True,
              help="Exit when nothing is left to do; status 0 if every run succeeded.")  # fmt: skip
@home_option
def dev(
    file: str, emits: tuple[str, ...], meta: tuple[str, ...], until_idle: bool, home: Path | None
) -> None:
    """Run coordinator, workers and schedules of FILE in this process (Ctrl-C stops)."""
    settings = _settings(home)
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    app = load_app(file)
    metadata = _parse_meta(meta)
    targets = []
    for spec in emits:
        dataset, _, partition = spec.partition("@")
        targets.append((dataset, partition))
    sys.exit(_run(_dev(app, settings, targets, metadata, until_idle)))


async def _dev(
    app: Any,
    settings: Settings,
    emits: list[tuple[str, str]],
    metadata: dict[str, Any],
    until_idle: bool,
) -> int:
    runtime = EmbeddedRuntime(app, settings)
    control = ControlServer(runtime, settings.control_socket)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    finished: list[PipelineRunData] = []
    refused: list[str] = []
    await control.start()
    try:
        async with runtime:
            events = runtime.subscribe()
            printer = asyncio.create_task(_report(events, finished, quiet=until_idle))
            if not until_idle:
                tasks = len(app.tasks)
                click.echo(
                    f"eventflow dev: {len(app.pipelines)} pipelines, {tasks} tasks; "
                    f"state in {settings.database}; emit with `eventflow emit DATASET`. "
                    "Ctrl-C stops."
                )
            for dataset, partition in emits:
                accepted = await runtime.emit(dataset, partition, metadata=metadata)
                if accepted.dead_letter:
                    refused.append(f"--emit {dataset}: {accepted.dead_letter}")
            if until_idle:
                idle = asyncio.create_task(runtime.wait_idle())
                stopped = asyncio.create_task(stop.wait())
                await asyncio.wait({idle, stopped}, return_when=asyncio.FIRST_COMPLETED)
                idle.cancel()
                stopped.cancel()
            else:
                await stop.wait()
            await asyncio.sleep(0)  # let the printer take the last events
            printer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await printer
    finally:
        await control.stop()
    for line in refused:
        click.echo(f"error: {line}", err=True)
    if until_idle:
        click.echo(run_summary(finished))
        if stop.is_set():
            click.echo("stopped before the work was done", err=True)
            return 1
    return 0 if not refused and all(r.status == "succeeded" for r in finished) else 1


async def _report(
    events: asyncio.Queue[Any], finished: list[PipelineRunData], *, quiet: bool
) -> None:
    while True:
        event = await events.get()
        if isinstance(event, PIPELINE_RUN_EVENTS):
            run = event.data
            assert isinstance(run, PipelineRunData)
            if run.status != "running":
                finished.append(run)
            if not quiet:
                click.echo(run_line(run))
        elif isinstance(event, DeadLetter) and not quiet:
            click.echo(f"dead letter: {event.data.reason}", err=True)
        elif isinstance(event, CheckCompleted) and not event.data.passed:
            d = event.data
            kind = "blocked" if d.blocking else "warning"
            click.echo(
                f"check {d.check} {kind}: {d.target.dataset}@{d.target.version} {d.message}",
                err=True,
            )


@cli.command()
@click.argument("dataset", required=False)
@click.option("--partition", "-p", default="", help="Partition key, e.g. 2026-11-22.")
@click.option("--version", "-v", "version", type=int, default=None,
              help="Version number (default: now, in microseconds).")  # fmt: skip
@click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Metadata (repeatable).")
@click.option("--raw", type=click.File("rb"), default=None,
              help="Send this file's bytes (a CloudEvent as JSON; '-' for stdin) as they are.")  # fmt: skip
@home_option
def emit(
    dataset: str | None,
    partition: str,
    version: int | None,
    meta: tuple[str, ...],
    raw: Any,
    home: Path | None,
) -> None:
    """Publish a dataset version to a running `eventflow dev`."""
    settings = _settings(home)
    if raw is not None:
        payload = raw.read()
    elif dataset:
        # Not validated here: the instance decides, and dead-letters what it refuses.
        data = DatasetProducedData.model_construct(
            dataset=dataset, partition=partition, producer=None,
            version=version if version is not None else time.time_ns() // 1000,
            metadata=_parse_meta(meta),
        )  # fmt: skip
        payload = encode(DatasetProduced.of(data, source=settings.source))
    else:
        raise click.UsageError("give a DATASET or --raw FILE")

    async def send() -> dict[str, Any]:
        async with ControlClient(settings.control_socket) as client:
            return await client.publish_raw(payload)

    reply = _run(send())
    if reply.get("dead_letter"):
        click.echo(f"error: dead-lettered: {reply['dead_letter']}", err=True)
        sys.exit(1)
    click.echo(f"published {reply['id']}")


@cli.command()
@click.argument("pipeline", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print each event as CloudEvents JSON.")
@click.option("--all", "everything", is_flag=True, help="Every event, not only run outcomes.")
@home_option
def watch(pipeline: str | None, as_json: bool, everything: bool, home: Path | None) -> None:
    """Stream pipeline-run outcomes from a running `eventflow dev` until Ctrl-C."""
    settings = _settings(home)

    async def stream() -> None:
        async with ControlClient(settings.control_socket) as client:
            stream = await client.watch()
            click.echo(f"watching {settings.control_socket}", err=True)
            async for event in stream:
                is_run = isinstance(event, PIPELINE_RUN_EVENTS)
                if not everything and not is_run:
                    continue
                if pipeline and is_run and event.data.pipeline != pipeline:  # type: ignore[attr-defined]
                    continue
                if as_json:
                    click.echo(encode(event).decode())
                elif is_run:
                    click.echo(f"{event.time:%H:%M:%S}  {run_line(event.data)}")  # type: ignore[arg-type]
                else:
                    click.echo(f"{event.time:%H:%M:%S}  {event.type}  {event.subject or ''}")

    with contextlib.suppress(KeyboardInterrupt):
        _run(stream())


@cli.command()
@click.option("--runs", default=10, show_default=True, help="Recent runs to list.")
@home_option
def status(runs: int, home: Path | None) -> None:
    """Dataset freshness and recent runs, from the state folder."""
    settings = _settings(home)
    if not settings.database.exists():
        click.echo(f"No state in {settings.home} yet: nothing has run here.")
        return

    async def read() -> tuple[list[dict[str, Any]], list[Any]]:
        async with Store(settings.database) as store:
            return await store.freshness(), await store.runs(runs)

    fresh, recent = _run(read())
    click.echo("Datasets")
    click.echo(freshness_table(fresh))
    click.echo("")
    click.echo("Recent runs")
    if not recent:
        click.echo("No pipeline run yet.")
    for event in recent:
        click.echo(run_line(event.data))


@cli.command()
@click.argument("file")
@click.option("--dot", is_flag=True, help="Graphviz output instead of text.")
def graph(file: str, dot: bool) -> None:
    """Print the pipelines of FILE: datasets, tasks, checks and schedules."""
    app = load_app(file)
    click.echo(graph_dot(app) if dot else graph_text(app), nl=False)


def main() -> None:
    cli(prog_name="eventflow")

