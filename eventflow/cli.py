"""The `eventflow` command. User mistakes end in one line on stderr, never a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson

from . import serving
from .clients import Publisher
from .embedded import ControlClient, Store
from .errors import ConfigurationError, EventflowError
from .events import (
    MAX_VERSION,
    PIPELINE_RUN_EVENTS,
    DatasetProduced,
    DatasetProducedData,
    DatasetReset,
    DatasetResetData,
    encode,
    version_now,
)
from .fate import announce
from .graph import graph_dot, graph_text
from .loader import load_app
from .settings import Settings
from .summary import freshness_table, run_line

T = TypeVar("T")


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EventflowError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)


def _settings(
    home: Path | None = None,
    bootstrap: str | None = None,
    metrics_port: int | None = None,
    api_port: int | None = None,
) -> Settings:
    overrides: dict[str, Any] = {}
    if metrics_port is not None:
        overrides["metrics_port"] = metrics_port
    if api_port is not None:
        overrides["api_port"] = api_port
    if home is not None:
        overrides["home"] = home
    if bootstrap is not None:
        overrides["kafka_bootstrap"] = bootstrap
    try:
        return Settings(**overrides)
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


bootstrap_option = click.option(
    "--bootstrap",
    default=None,
    metavar="HOST:PORT",
    help="Kafka bootstrap servers (default: $EVENTFLOW_KAFKA_BOOTSTRAP; unset: a dev instance).",
)
app_option = click.option(
    "--app", "target", required=True, metavar="FILE.py|module:obj", help="The App to run."
)
metrics_option = click.option(
    "--metrics-port",
    type=int,
    default=None,
    metavar="PORT",
    help="Serve Prometheus metrics at http://127.0.0.1:PORT/metrics "
    "(default: $EVENTFLOW_METRICS_PORT; unset: none).",
)
health_option = click.option(
    "--health-file",
    type=click.Path(path_type=Path),
    default=None,
    help="Rewrite this file every second while the service is healthy (for health checks); it "
    "holds the instance, the partitions it owns and its consumer lag.",
)


@click.group(cls=_Group)
@click.version_option(package_name="eventflow")
def cli() -> None:
    """eventflow: pipelines triggered by data, not by the clock."""


@cli.command()
@click.argument("file")
@click.option(
    "--emit",
    "emits",
    multiple=True,
    metavar="DATASET[@PARTITION]",
    help="Publish a version of DATASET once started (repeatable).",
)
@click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Metadata of --emit events.")
@click.option(
    "--until-idle",
    is_flag=True,
    help="Exit when nothing is left to do; status 0 if every run succeeded.",
)
@home_option
@metrics_option
@click.option(
    "--port",
    type=int,
    default=None,
    help="Port of the HTTP API (default: $EVENTFLOW_API_PORT or 8787; 0: any free one).",
)
def dev(
    file: str,
    emits: tuple[str, ...],
    meta: tuple[str, ...],
    until_idle: bool,
    home: Path | None,
    metrics_port: int | None,
    port: int | None,
) -> None:
    """Run coordinator, workers, schedules and the HTTP API of FILE in this process (Ctrl-C
    stops)."""
    settings = _settings(home, metrics_port=metrics_port, api_port=port)
    metadata = _parse_meta(meta)
    targets = []
    for spec in emits:
        dataset, _, partition = spec.partition("@")
        targets.append((dataset, partition))
    sys.exit(serving.dev(file, settings, emits=targets, metadata=metadata, until_idle=until_idle))


@cli.command()
@click.argument("dataset", required=False)
@click.option("--partition", "-p", default="", help="Partition key, e.g. 2026-11-22.")
@click.option(
    "--version",
    "-v",
    "version",
    type=int,
    default=None,
    help="Version number (default: now, in microseconds).",
)
@click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Metadata (repeatable).")
@click.option(
    "--raw",
    type=click.File("rb"),
    default=None,
    help="Send this file's bytes (a CloudEvent as JSON; '-' for stdin) as they are.",
)
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the decisions it gets (0: publish only).",
)
@home_option
@bootstrap_option
def emit(
    dataset: str | None,
    partition: str,
    version: int | None,
    meta: tuple[str, ...],
    raw: Any,
    wait: float,
    home: Path | None,
    bootstrap: str | None,
) -> None:
    """Publish a dataset version to a running `eventflow dev`, or to Kafka, and say what became
    of it: the runs it triggered, or why none (exit 3), or why it was refused (exit 1)."""
    settings = _settings(home, bootstrap)
    if raw is not None:
        payload = raw.read()
    elif dataset:
        # Not validated here: the instance decides, and dead-letters what it refuses.
        data = DatasetProducedData.model_construct(
            dataset=dataset,
            partition=partition,
            producer=None,
            version=version if version is not None else version_now(),
            metadata=_parse_meta(meta),
        )
        payload = encode(DatasetProduced.of(data, source=settings.source))
    else:
        raise click.UsageError("give a DATASET or --raw FILE")

    fate = _run(announce(settings, payload, dataset, wait))
    if fate.dead_letter is not None:
        click.echo(f"error: dead-lettered: {fate.dead_letter}", err=True)
        sys.exit(1)
    click.echo(f"published {fate.id}".rstrip())
    for line in fate.lines():
        click.echo(f"  {line}")
    if wait and not fate.complete:
        click.echo(f"no decision seen within {wait:g}s: is a coordinator running?", err=True)
    elif wait and not fate.triggered and not fate.pending:
        sys.exit(serving.NOTHING)


@cli.command()
@click.argument("pipeline", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print each event as CloudEvents JSON.")
@click.option("--all", "everything", is_flag=True, help="Every event, not only run outcomes.")
@click.option("--from-beginning", is_flag=True, help="Kafka: replay what the topics still hold.")
@home_option
@bootstrap_option
def watch(
    pipeline: str | None,
    as_json: bool,
    everything: bool,
    from_beginning: bool,
    home: Path | None,
    bootstrap: str | None,
) -> None:
    """Stream pipeline-run outcomes from a running `eventflow dev`, or Kafka, until Ctrl-C."""
    settings = _settings(home, bootstrap)

    async def stream() -> None:
        async with contextlib.AsyncExitStack() as stack:
            if settings.kafka_bootstrap:
                from .kafka.clients import KafkaSubscriber

                topics = (
                    [
                        "eventflow.datasets",
                        "eventflow.task-events",
                        "eventflow.deadletter",
                        "eventflow.pipeline-runs",
                    ]
                    if everything
                    else ["eventflow.pipeline-runs"]
                )
                reader = KafkaSubscriber(settings, topic=topics, from_beginning=from_beginning)
                await reader.start()
                stack.push_async_callback(reader.stop)
                events = reader.events()
                where = settings.kafka_bootstrap
            else:
                client = await stack.enter_async_context(ControlClient(settings.control_socket))
                events = await client.watch()
                where = str(settings.control_socket)
            click.echo(f"watching {where}", err=True)
            async for event in events:
                run = event.data if isinstance(event, PIPELINE_RUN_EVENTS) else None
                if not everything and run is None:
                    continue
                if pipeline and run is not None and run.pipeline != pipeline:
                    continue
                if as_json:
                    click.echo(encode(event).decode())
                elif run is not None:
                    click.echo(f"{event.time:%H:%M:%S}  {run_line(run)}")
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
            return await store.read(runs)

    fresh, recent = _run(read())
    click.echo("Datasets")
    click.echo(freshness_table(fresh))
    click.echo("")
    click.echo("Recent runs")
    if not recent:
        click.echo("No pipeline run yet.")
    for event in recent:
        click.echo(run_line(event.data))


@cli.group()
def datasets() -> None:
    """Operators' commands on datasets."""


@datasets.command("reset")
@click.argument("dataset")
@click.option("--partition", "-p", default="", help="Partition key, e.g. 2026-11-22.")
@click.option(
    "--to",
    "version",
    type=click.IntRange(0, MAX_VERSION),
    default=0,
    show_default=True,
    help="The newest version still counted as seen; versions above it count again.",
)
@click.option("--reason", required=True, help="Why (kept in the event log).")
@home_option
@bootstrap_option
def datasets_reset(
    dataset: str,
    partition: str,
    version: int,
    reason: str,
    home: Path | None,
    bootstrap: str | None,
) -> None:
    """Set DATASET's newest-version mark back after a bogus huge version froze it."""
    settings = _settings(home, bootstrap)
    if settings.kafka_bootstrap and settings.signing_key is None:
        raise ConfigurationError("a reset on Kafka is signed: set EVENTFLOW_SIGNING_KEY")
    data = DatasetResetData(dataset=dataset, partition=partition, version=version, reason=reason)
    event = DatasetReset.of(data, source=settings.source)

    async def send() -> dict[str, Any]:
        async with Publisher(settings) as publisher:
            return await publisher.publish_raw(encode(event), key=dataset)

    reply = _run(send())
    if reply.get("dead_letter") or not reply.get("ok", False):
        click.echo(f"error: refused: {reply.get('dead_letter') or reply.get('error')}", err=True)
        sys.exit(1)
    click.echo(f"reset {dataset}{'@' + partition if partition else ''} to version {version}")


@cli.command()
@app_option
@bootstrap_option
@health_option
@metrics_option
def coordinator(
    target: str, bootstrap: str | None, health_file: Path | None, metrics_port: int | None
) -> None:
    """Run a coordinator instance on Kafka until SIGTERM; start several for failover."""
    settings = _settings(bootstrap=bootstrap, metrics_port=metrics_port)
    sys.exit(serving.coordinator(target, settings, health_file=health_file))


@cli.command()
@app_option
@click.option(
    "--concurrency",
    "-c",
    type=int,
    default=None,
    help="Task runs at once (default: $EVENTFLOW_CONCURRENCY).",
)
@bootstrap_option
@health_option
@metrics_option
def worker(
    target: str,
    concurrency: int | None,
    bootstrap: str | None,
    health_file: Path | None,
    metrics_port: int | None,
) -> None:
    """Run a worker on Kafka until SIGTERM; add workers to add throughput."""
    settings = _settings(bootstrap=bootstrap, metrics_port=metrics_port)
    sys.exit(serving.worker(target, settings, concurrency=concurrency, health_file=health_file))


@cli.command()
@app_option
@bootstrap_option
@metrics_option
@click.option(
    "--port", type=int, default=None, help="Port of the HTTP API (default: $EVENTFLOW_API_PORT)."
)
def server(target: str, bootstrap: str | None, metrics_port: int | None, port: int | None) -> None:
    """Serve the HTTP API of a Kafka deployment until SIGTERM (needs EVENTFLOW_API_TOKEN)."""
    settings = _settings(bootstrap=bootstrap, metrics_port=metrics_port, api_port=port)
    if not settings.kafka_bootstrap:
        raise click.UsageError("eventflow server runs on Kafka: set EVENTFLOW_KAFKA_BOOTSTRAP")
    sys.exit(serving.server(target, settings))


@cli.group()
def topics() -> None:
    """Kafka topics as specified in topics/."""


@topics.command("apply")
@bootstrap_option
def topics_apply(bootstrap: str | None) -> None:
    """Create missing topics, add partitions, set retention and compaction."""
    from .kafka import admin
    from .kafka.config import KafkaConfig

    done = _run(admin.apply(KafkaConfig(_settings(bootstrap=bootstrap))))
    for line in done:
        click.echo(line)
    click.echo("topics are up to date" if not done else f"{len(done)} changes applied")


@topics.command("check")
@bootstrap_option
def topics_check(bootstrap: str | None) -> None:
    """Report drift between the cluster and topics/; exit 1 if any."""
    from .kafka import admin
    from .kafka.config import KafkaConfig

    drift = _run(admin.check(KafkaConfig(_settings(bootstrap=bootstrap))))
    for item in drift:
        click.echo(str(item))
    if drift:
        sys.exit(1)
    click.echo("no drift")


@cli.command()
@click.argument("file")
@click.option("--dot", is_flag=True, help="Graphviz output instead of text.")
def graph(file: str, dot: bool) -> None:
    """Print the pipelines of FILE: datasets, tasks, checks and schedules."""
    app = load_app(file)
    click.echo(graph_dot(app) if dot else graph_text(app), nl=False)


def main() -> None:
    serving.setup_logging()
    cli(prog_name="eventflow")
