"""The `eventflow` command. User mistakes end in one line on stderr, never a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import getpass
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import click
import orjson

from . import operator
from .api.client import ApiClient, ApiError
from .api.models import AlertRule
from .backfill_cli import backfill
from .capture import setup_logging
from .clients import Publisher, Subscriber
from .core import Explanation
from .embedded import ControlClient
from .embedded.subscriptions import SubscriptionLog
from .errors import ConfigurationError, EventflowError, NotRunning
from .events import (
    MAX_VERSION,
    PIPELINE_RUN_EVENTS,
    DatasetProduced,
    DatasetProducedData,
    DatasetReset,
    DatasetResetData,
    Event,
    encode,
    version_now,
)
from .fate import announce
from .graph import graph_dot, graph_text
from .history.models import (
    Freshness,
    FreshnessViolation,
    Lineage,
    LogLine,
    Page,
    PipelineRun,
    RunDetail,
    TaskAttempt,
)
from .lifecycle import NOTHING
from .loader import load_app
from .settings import Settings
from .summary import run_line

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
@click.option("--ui", is_flag=True, help="Serve the web UI beside the API, and print its address.")
def dev(
    file: str,
    emits: tuple[str, ...],
    meta: tuple[str, ...],
    until_idle: bool,
    home: Path | None,
    metrics_port: int | None,
    port: int | None,
    ui: bool,
) -> None:
    """Run coordinator, workers, schedules and the HTTP API of FILE in this process (Ctrl-C
    stops)."""
    settings = _settings(home, metrics_port=metrics_port, api_port=port)
    metadata = _parse_meta(meta)
    targets = []
    for spec in emits:
        dataset, _, partition = spec.partition("@")
        targets.append((dataset, partition))
    from . import serving  # the services' modules: FastAPI, SQLAlchemy, the runtimes

    sys.exit(
        serving.dev(file, settings, emits=targets, metadata=metadata, until_idle=until_idle, ui=ui)
    )


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
        sys.exit(NOTHING)


@cli.command()
@click.argument("pipeline", required=False)
@click.option("--dataset", "datasets", multiple=True, help="Only events of this dataset.")
@click.option("--partition", "partitions", multiple=True, help="Only events of this partition.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(["running", "succeeded", "failed", "passed"]),
    help="Only this status: a run's or task's (running, succeeded, failed), a check's (passed, "
    "failed).",
)
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    help="run (the default), task, check, dataset, deadletter, freshness, or an event type "
    "(prefix).",
)
@click.option("--all", "everything", is_flag=True, help="Every event, not only run outcomes.")
@click.option("--json", "as_json", is_flag=True, help="Print each event as CloudEvents JSON.")
@click.option("--from-beginning", is_flag=True, help="Replay what the log still holds first.")
@click.option("--since", metavar="TIME|AGE", help="Replay from an ISO time or an age (90s, 2h).")
@click.option(
    "--until-caught-up", is_flag=True, help="Stop once the replay has reached the present."
)
@click.option(
    "--app",
    "target",
    metavar="FILE.py|module:obj",
    help="Kafka: the App, to check the names given (a dev instance knows its own).",
)
@home_option
@bootstrap_option
def watch(
    pipeline: str | None,
    datasets: tuple[str, ...],
    partitions: tuple[str, ...],
    statuses: tuple[str, ...],
    kinds: tuple[str, ...],
    everything: bool,
    as_json: bool,
    from_beginning: bool,
    since: str | None,
    until_caught_up: bool,
    target: str | None,
    home: Path | None,
    bootstrap: str | None,
) -> None:
    """Stream pipeline-run outcomes (or other events) from a running `eventflow dev`, or Kafka,
    until Ctrl-C. A replay (`--from-beginning`, `--since`) prints what it finds in event-time
    order, then goes on live, or stops with `--until-caught-up`."""
    settings = _settings(home, bootstrap)
    replay = from_beginning or since is not None
    if everything and kinds:
        raise click.UsageError("--all is every kind already; give --all or --kind")
    try:
        start = datetime.fromisoformat(_since(since) or "") if since is not None else None
    except ValueError:
        raise click.BadParameter(
            f"{since!r} is neither a time nor an age", param_hint="--since"
        ) from None
    if start is not None and start.tzinfo is None:
        start = start.astimezone()
    subscriber = Subscriber(
        settings,
        kinds=("eventflow",) if everything else (kinds or ("run",)),
        pipelines=[pipeline] if pipeline else None,
        datasets=datasets,
        partitions=partitions,
        statuses=statuses,
        finished_only=False,
        from_beginning=from_beginning,
        since=start,
        until="now" if replay or until_caught_up else None,
    )

    def show(event: Event) -> None:
        if as_json:
            click.echo(encode(event).decode())
        elif isinstance(event, PIPELINE_RUN_EVENTS):
            click.echo(f"{event.time:%H:%M:%S}  {run_line(event.data)}")
        else:
            click.echo(f"{event.time:%H:%M:%S}  {event.type}  {event.subject or ''}")

    async def stream() -> None:
        await _check_names(settings, target, pipeline, datasets)
        async with subscriber:
            click.echo(f"watching {settings.kafka_bootstrap or settings.control_socket}", err=True)
            if replay or until_caught_up:
                replayed = [event async for event in subscriber.events()]
                for event in sorted(replayed, key=lambda e: e.time):
                    show(event)
                if until_caught_up:
                    return
            async for event in subscriber.events():
                show(event)

    with contextlib.suppress(KeyboardInterrupt):
        _run(stream())


async def _check_names(
    settings: Settings, target: str | None, pipeline: str | None, datasets: tuple[str, ...]
) -> None:
    """Refuse a pipeline or dataset the App does not have, with the closest names: a typo
    would otherwise wait silently forever."""
    if not pipeline and not datasets:
        return
    if target is not None:
        app = load_app(target)
        known = {"pipeline": sorted(app.pipelines), "dataset": sorted(app.datasets)}
    elif settings.kafka_bootstrap:
        click.echo("names not checked: give --app FILE to check them", err=True)
        return
    else:
        async with ControlClient(settings.control_socket) as client:
            reply = await client.ping()
        known = {"pipeline": reply.get("pipelines", []), "dataset": reply.get("datasets", [])}
    for kind, names in (("pipeline", [pipeline] if pipeline else []), ("dataset", datasets)):
        for name in names:
            if name not in known[kind]:
                close = difflib.get_close_matches(name, known[kind], n=1)
                listed = ", ".join(known[kind]) or "none"
                hint = f"did you mean {close[0]}?" if close else f"{kind}s: {listed}"
                raise ConfigurationError(f"no {kind} {name!r}; {hint}")


# -- the operator's commands, through the API ---------------------------------------------------
json_option = click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")


def _ask(settings: Settings, call: Callable[[ApiClient], Awaitable[T]]) -> T:
    async def ask() -> T:
        async with ApiClient(settings) as client:
            return await call(client)

    return _run(ask())


def _echo_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def _partition(value: str) -> str:
    """`-` (as runs print it) or nothing: no partition."""
    return "" if value == "-" else value


def _since(value: str | None) -> str | None:
    """An ISO time as it is, or an age (`90s`, `30m`, `2h`, `7d`) as the time that long ago."""
    if value is None:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", value)
    if match is None:
        return value
    size = {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
    return (datetime.now(UTC) - timedelta(seconds=float(match[1]) * size)).isoformat()


@cli.command()
@click.option(
    "--runs",
    type=click.IntRange(0, 1000),
    default=10,
    show_default=True,
    help="Recent runs to list (0: none).",
)
@json_option
@home_option
def status(runs: int, as_json: bool, home: Path | None) -> None:
    """Dataset freshness per partition and recent runs, from a running instance's API."""
    settings = _settings(home)

    async def read(client: ApiClient) -> tuple[Any, Any, Any]:
        fresh = await client.get("/api/datasets")
        late = await client.get("/api/freshness")
        return fresh, late, (await client.get("/api/runs", limit=runs) if runs else None)

    fresh, report, recent = _ask(settings, read)
    if as_json:
        found = {"datasets": fresh, "late": report["violations"]}
        _echo_json(found | ({"runs": recent["items"]} if recent else {}))
        return
    page = Page[PipelineRun].model_validate(recent) if recent is not None else None
    datasets = [Freshness.model_validate(row) for row in fresh]
    late = [FreshnessViolation.model_validate(v) for v in report["violations"]]
    shown = late if report["policies"] else None
    click.echo(operator.status(datasets, page.items if page is not None else None, shown))


@cli.command("runs")
@click.option("--pipeline", default=None, help="Runs of this pipeline.")
@click.option("--partition", default=None, help="Runs of this partition.")
@click.option(
    "--status", type=click.Choice(["running", "succeeded", "failed"]), default=None, help="Status."
)
@click.option("--since", default=None, metavar="TIME|AGE", help="Started at or after (ISO or 2h).")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--cursor", default=None, help="The next page, as the last page said.")
@json_option
@home_option
def runs_command(
    pipeline: str | None,
    partition: str | None,
    status: str | None,
    since: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
    home: Path | None,
) -> None:
    """Pipeline runs, newest first, a page at a time."""
    query = {
        "pipeline": pipeline,
        "partition": _partition(partition) if partition is not None else None,
        "status": status,
        "since": _since(since),
        "limit": limit,
        "cursor": cursor,
    }
    found = _ask(_settings(home), lambda client: client.get("/api/runs", **query))
    if as_json:
        _echo_json(found)
    else:
        click.echo(operator.runs(Page[PipelineRun].model_validate(found)))


@cli.command("alerts")
@click.option("--rule", default=None, help="Deliveries of this rule.")
@click.option(
    "--state",
    type=click.Choice(["pending", "retrying", "delivered", "given_up"]),
    default=None,
    help="Deliveries in this state.",
)
@click.option("--pipeline", default=None, help="Deliveries of this pipeline's events.")
@click.option("--since", default=None, metavar="TIME|AGE", help="Recorded at or after (ISO or 2h).")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@json_option
@home_option
def alerts_command(
    rule: str | None,
    state: str | None,
    pipeline: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
    home: Path | None,
) -> None:
    """Alert rules and their deliveries (newest first): attempts, last answer, state."""
    query = {
        "rule": rule,
        "state": state,
        "pipeline": pipeline,
        "since": _since(since),
        "limit": limit,
    }

    async def read(client: ApiClient) -> tuple[Any, Any]:
        return await client.get("/api/alerts"), await client.get("/api/alerts/deliveries", **query)

    rules, deliveries = _ask(_settings(home), read)
    if as_json:
        _echo_json({"rules": rules, "deliveries": deliveries})
        return
    from .history import AlertDelivery  # SQLAlchemy's module, for this command only

    click.echo(
        operator.alerts(
            [AlertRule.model_validate(r) for r in rules],
            [AlertDelivery.model_validate(d) for d in deliveries],
        )
    )


async def _run_detail(client: ApiClient, run_id: str) -> Any:
    """The pipeline run `run_id`, or the one a task attempt of that id belongs to."""
    try:
        return await client.get(f"/api/runs/{quote(run_id, safe='')}")
    except ApiError as e:
        if e.status != 404:
            raise
    try:
        attempt = await client.get(f"/api/attempts/{quote(run_id, safe='')}")
    except ApiError as e:
        if e.status != 404:
            raise
        raise ApiError(404, f"no pipeline run or task attempt {run_id!r}") from None
    if attempt.get("pipeline_run_id") is None:
        raise ApiError(404, f"task attempt {run_id!r} belongs to no pipeline run")
    return await client.get(f"/api/runs/{quote(attempt['pipeline_run_id'], safe='')}")


@cli.command("run")
@click.argument("run_id")
@json_option
@home_option
def run_command(run_id: str, as_json: bool, home: Path | None) -> None:
    """A pipeline run (or the run of a task attempt) with every attempt and what it consumed."""
    found = _ask(_settings(home), lambda client: _run_detail(client, run_id))
    if as_json:
        _echo_json(found)
    else:
        click.echo(operator.run(RunDetail.model_validate(found)))


@cli.command()
@click.argument("run_id")
@click.option("--follow", "-f", is_flag=True, help="Print lines as they come, until it ends.")
@json_option
@home_option
def logs(run_id: str, follow: bool, as_json: bool, home: Path | None) -> None:
    """What a task attempt logged (RUN_ID of the attempt); given a pipeline run, every
    attempt's log. With --follow and --json, one JSON line per log line."""

    async def show(client: ApiClient) -> None:
        key = quote(run_id, safe="")
        try:
            found = [TaskAttempt.model_validate(await client.get(f"/api/attempts/{key}"))]
        except ApiError as e:
            if e.status != 404:
                raise
            try:
                detail = RunDetail.model_validate(await client.get(f"/api/runs/{key}"))
            except ApiError as e:
                if e.status != 404:
                    raise
                raise ApiError(404, f"no task attempt or pipeline run {run_id!r}") from None
            found = detail.attempts
        if follow and [a.run_id for a in found] != [run_id]:
            raise click.UsageError("--follow takes the run id of a task attempt")
        if follow:
            async for line in operator.follow(client, found[0]):
                click.echo(line.model_dump_json() if as_json else operator.log_line(line))
            return
        logged = {
            a.run_id: [
                LogLine.model_validate(line)
                for line in await client.get(f"/api/attempts/{quote(a.run_id, safe='')}/logs")
            ]
            for a in found
        }
        if as_json:
            _echo_json({k: [line.model_dump(mode="json") for line in v] for k, v in logged.items()})
            return
        click.echo("\n\n".join(operator.logs(a, logged[a.run_id]) for a in found))

    with contextlib.suppress(KeyboardInterrupt):
        _ask(_settings(home), show)


@cli.command()
@click.argument("pipeline")
@click.argument("task")
@click.argument("partition", default="")
@json_option
@home_option
def explain(pipeline: str, task: str, partition: str, as_json: bool, home: Path | None) -> None:
    """Why TASK runs, waits or would run in PARTITION: the verdict, then a checklist."""
    path = f"/api/pipelines/{quote(pipeline, safe='')}/tasks/{quote(task, safe='')}/explain"
    found = _ask(_settings(home), lambda c: c.get(path, partition=_partition(partition)))
    if as_json:
        _echo_json(found)
    else:
        click.echo(operator.explain(Explanation.model_validate(found)))


def _operator() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in the environment or the password database
        return "operator"


reason_option = click.option("--reason", required=True, help="Why (kept in the log and the run).")
operator_option = click.option(
    "--operator", "who", default=None, help="Who acts (default: the OS user)."
)


def _act(
    home: Path | None, pipeline: str, action: str, body: dict[str, Any], as_json: bool
) -> None:
    """POST an action; print what became of it, or the refusal with exit 1."""
    path = f"/api/pipelines/{quote(pipeline, safe='')}/{action}"
    body = {k: v for k, v in body.items() if v is not None}
    body.setdefault("operator", _operator())
    try:
        done = _ask(_settings(home), lambda client: client.post(path, body))
    except ApiError as e:
        click.echo(f"refused: {e.reason}", err=True)
        sys.exit(1)
    if as_json:
        _echo_json(done)
        return
    named = [str(body[k]) for k in ("partition", "task") if body.get(k)]
    what = " ".join([action, pipeline, *named])
    result = "applied" if done["status"] == "applied" else "published, not yet decided"
    click.echo(f"{what}: {result} ({done['id']})")


@cli.command()
@click.argument("pipeline")
@click.argument("partition", default="")
@click.option("--task", default=None, help="Rerun this task only (default: the whole run).")
@reason_option
@operator_option
@json_option
@home_option
def rerun(
    pipeline: str,
    partition: str,
    task: str | None,
    reason: str,
    who: str | None,
    as_json: bool,
    home: Path | None,
) -> None:
    """Run a task (or the run's entry tasks) again in PARTITION on the input versions it last
    consumed; downstream runs again as if fresh."""
    body = {"partition": _partition(partition), "task": task, "reason": reason, "operator": who}
    _act(home, pipeline, "rerun", body, as_json)


@cli.command()
@click.argument("pipeline")
@reason_option
@operator_option
@json_option
@home_option
def pause(pipeline: str, reason: str, who: str | None, as_json: bool, home: Path | None) -> None:
    """Start no run or attempt of PIPELINE until resumed; what arrives meanwhile is kept."""
    _act(home, pipeline, "pause", {"reason": reason, "operator": who}, as_json)


@cli.command()
@click.argument("pipeline")
@reason_option
@operator_option
@json_option
@home_option
def resume(pipeline: str, reason: str, who: str | None, as_json: bool, home: Path | None) -> None:
    """Decide what arrived while PIPELINE was paused: one run per partition with newer inputs."""
    _act(home, pipeline, "resume", {"reason": reason, "operator": who}, as_json)


@cli.command()
@click.argument("pipeline")
@click.argument("partition", default="")
@reason_option
@operator_option
@json_option
@home_option
def cancel(
    pipeline: str, partition: str, reason: str, who: str | None, as_json: bool, home: Path | None
) -> None:
    """End PIPELINE's active run in PARTITION as failed; its running attempts are stopped."""
    body = {"partition": _partition(partition), "reason": reason, "operator": who}
    _act(home, pipeline, "cancel", body, as_json)


@cli.command()
@click.argument("dataset")
@click.argument("partition", default="")
@click.option("--version", "-v", "version", type=int, default=None, help="Default: the newest.")
@click.option("--depth", type=click.IntRange(0, 10), default=3, show_default=True)
@json_option
@home_option
def lineage(
    dataset: str, partition: str, version: int | None, depth: int, as_json: bool, home: Path | None
) -> None:
    """Where a version of DATASET in PARTITION came from, and what was made of it."""
    key = _partition(partition)
    name = quote(dataset, safe="")

    async def read(client: ApiClient) -> Any:
        at = version
        if at is None:
            found = await client.get(f"/api/datasets/{name}", partition=key, limit=1)
            newest = [f for f in found["freshness"] if f["partition"] == key]
            if not newest:
                raise ApiError(404, f"no version of {dataset!r} in partition {key!r} yet")
            at = newest[0]["version"]
        return await client.get(
            f"/api/datasets/{name}/lineage", version=at, partition=key, depth=depth
        )

    found = _ask(_settings(home), read)
    if as_json:
        _echo_json(found)
    else:
        click.echo(operator.lineage(Lineage.model_validate(found)))


@cli.group()
def history() -> None:
    """The history store that the operator's commands and the API read."""


@history.command("rebuild")
@click.option(
    "--app",
    "target",
    default=None,
    metavar="FILE.py|module:obj",
    help="Kafka: the App `eventflow server` serves, so that outside announcements it would "
    "refuse are left out as it leaves them out.",
)
@home_option
@bootstrap_option
def history_rebuild(target: str | None, home: Path | None, bootstrap: str | None) -> None:
    """Empty the history store and replay the event log into it (embedded: the state file's
    log; Kafka: the event topics, with `eventflow server` stopped)."""
    from .history import HistoryStore

    settings = _settings(home, bootstrap)
    store = HistoryStore.of(settings)
    if settings.kafka_bootstrap:
        from .kafka.history import rebuild

        app = load_app(target) if target else None
        _run(rebuild(settings, store, app=app))
        click.echo(f"history rebuilt from the topics into {store.url}")
        return
    from .embedded.history import rebuild as rebuild_embedded

    if not settings.database.exists():
        raise ConfigurationError(f"no state in {settings.home}: no event log to rebuild from")

    async def running() -> bool:
        try:
            async with ControlClient(settings.control_socket) as client:
                await client.ping()
        except NotRunning:
            return False
        return True

    if _run(running()):
        raise ConfigurationError(
            f"an eventflow dev instance is running in {settings.home} and feeds this history "
            "store: stop it first"
        )
    read = _run(rebuild_embedded(settings.database, store))
    click.echo(f"history rebuilt from {read} events of {settings.database}")


@cli.group()
def subscriptions() -> None:
    """Durable subscriptions of a dev instance (`ef.Subscriber(name=...)`), which hold the
    event log's retention back until they have read it. On Kafka they are consumer groups
    `PREFIXeventflow.subscriber.NAME`, which Kafka drops once empty for
    `offsets.retention.minutes`."""


@subscriptions.command("list")
@home_option
def subscriptions_list(home: Path | None) -> None:
    """Each durable subscription: where it reads, how far behind the log it is, since when."""
    settings = _settings(home)

    async def read() -> tuple[list[tuple[str, int, str]], int]:
        async with _subscription_log(settings) as log:
            return await log.named(), (await log.bounds())[1]

    named, last = _run(read())
    if not named:
        click.echo("No durable subscription.")
        return
    rows = [[n, str(p), str(max(0, last + 1 - p)), u] for n, p, u in named]
    click.echo(operator.table(["name", "next seq", "behind", "moved at"], rows))


@subscriptions.command("forget")
@click.argument("name")
@home_option
def subscriptions_forget(name: str, home: Path | None) -> None:
    """Drop an abandoned durable subscription: the log's retention no longer waits for it, and
    a subscriber of that name starts afresh (as its request says)."""
    settings = _settings(home)

    async def forget() -> bool:
        async with _subscription_log(settings) as log:
            return await log.forget(name)

    if not _run(forget()):
        raise ConfigurationError(f"no durable subscription {name!r} in {settings.home}")
    click.echo(f"forgot the subscription {name!r}")


@contextlib.asynccontextmanager
async def _subscription_log(settings: Settings) -> AsyncIterator[SubscriptionLog]:
    if settings.kafka_bootstrap:
        raise ConfigurationError(
            "on Kafka a durable subscription is the consumer group "
            f"{settings.topic_prefix}eventflow.subscriber.NAME: see kafka-consumer-groups.sh"
        )
    if not settings.database.exists():
        raise ConfigurationError(f"no state in {settings.home}")
    log = SubscriptionLog(settings.database)
    await log.start()
    try:
        yield log
    finally:
        await log.stop()


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
    from . import serving

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
    from . import serving

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
    from . import serving

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


cli.add_command(backfill)


def main() -> None:
    setup_logging()
    cli(prog_name="eventflow")
