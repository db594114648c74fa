"""Running services as a process: logging, signals, the health file and the exit status.

`eventflow dev`, `eventflow coordinator` and `eventflow worker` all run through `Supervisor`:
SIGINT and SIGTERM stop the services gracefully (in the reverse of the order they started), and
a service that fails (one of its loops died) ends the process, so that a supervisor restarts it.
Exit status:

    0   stopped by SIGINT or SIGTERM; `dev --until-idle`: every run succeeded
    1   a service failed (one line on stderr, its traceback logged above it); `dev --until-idle`:
        a run failed, an `--emit` was refused, or a signal came before the work was done
    2   a user mistake, in one line: a bad setting, an unreadable state file, a missing topic
    3   `dev --until-idle`: nothing failed, but no pipeline run started either
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import secrets
import signal
from collections.abc import Awaitable, Coroutine, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import click
import orjson
import uvloop

from . import metrics, tracing
from .alerts.service import AlertService
from .api import ApiServer
from .capture import JsonFormatter, setup_logging
from .definitions import App
from .embedded import ControlServer, EmbeddedRuntime
from .errors import BrokerError, ConfigurationError
from .events import (
    PIPELINE_RUN_EVENTS,
    CheckCompleted,
    DeadLetter,
    Event,
    FreshnessRecovered,
    FreshnessViolated,
    PipelineRunData,
)
from .execution import one_line
from .lifecycle import FAILED, NOTHING, Service
from .loader import load_app
from .operations import Operations
from .operations.embedded import EmbeddedOperations
from .settings import Settings
from .summary import run_line, run_summary
from .tracing import Tracer

if TYPE_CHECKING:
    from .kafka.config import KafkaConfig
    from .kafka.coordinator import KafkaCoordinator
    from .kafka.worker import KafkaWorker

T = TypeVar("T")

log = logging.getLogger(__name__)

#: Seconds between two beats of the health file.
BEAT_S = 1.0


def say(message: str) -> None:
    """A service's own line on stderr (started, ready, stopped, why it failed): as it is, or
    as a JSON log line (logger `eventflow`) when the log is JSON, whatever the level."""
    handler = next(
        (h for h in logging.getLogger().handlers if isinstance(h.formatter, JsonFormatter)),
        None,
    )
    if handler is None or handler.formatter is None:
        click.echo(message, err=True)
        return
    record = logging.LogRecord("eventflow", logging.INFO, "", 0, message, None, None)
    click.echo(handler.formatter.format(record), err=True)


class Supervisor:
    """Services run as one process: started in order, stopped in reverse, on the way out of
    `async with` or when one fails to start. SIGINT and SIGTERM set `stopping`."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, *services: Service) -> None:
        self.services = services
        self.stopping = asyncio.Event()
        self._started: list[Service] = []

    @property
    def failure(self) -> Service | None:
        """The first service that failed, if one did."""
        return next((s for s in self.services if s.failed.is_set()), None)

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        for sig in self.SIGNALS:
            loop.add_signal_handler(sig, self.stopping.set)
        try:
            for service in self.services:
                await service.start()
                self._started.append(service)
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop()

    async def _stop(self) -> None:
        try:
            while self._started:
                await self._started.pop().stop()
        finally:
            loop = asyncio.get_running_loop()
            for sig in self.SIGNALS:
                loop.remove_signal_handler(sig)

    async def run(self, work: Awaitable[T] | None = None) -> T | None:
        """Until a signal, a failed service, or `work` is done: its result, or None if a signal
        or a failure came first (what `work` raised because of a failure is dropped)."""
        waits: set[asyncio.Future[Any]] = {
            asyncio.ensure_future(self.stopping.wait()),
            *(asyncio.ensure_future(s.failed.wait()) for s in self.services),
        }
        job = asyncio.ensure_future(work) if work is not None else None
        dropped: set[asyncio.Future[Any]] = set(waits)
        try:
            await asyncio.wait(
                waits | ({job} if job is not None else set()), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if job is not None and (
                not job.done() or self.stopping.is_set() or self.failure is not None
            ):
                dropped.add(job)
            for future in dropped:
                future.cancel()
            await asyncio.gather(*dropped, return_exceptions=True)
        if job is None or job in dropped:
            return None
        return job.result()


def failed(service: Service) -> int:
    """Say in one line why `service` failed; the exit status for it."""
    why = one_line(service.error) if service.error is not None else "no reason given"
    say(f"error: {service.name} failed: {why}")
    return FAILED


@contextlib.contextmanager
def traced(settings: Settings, service: str) -> Iterator[Tracer | None]:
    """The process's tracer as `settings` say (None: off); what it recorded is exported
    before the process ends."""
    tracer = tracing.from_settings(settings, service)
    try:
        yield tracer
    finally:
        if tracer is not None:
            tracer.shutdown()


#: Young collections between two middle ones in a Kafka service (Python's default is 10). Full
#: collections come after ten middle ones, so they become about ten times rarer too.
MIDDLE_COLLECTIONS = 100


def _run(
    main: Coroutine[Any, Any, int], settings: Settings, *, middle_collections: int | None = None
) -> int:
    """A service's main on the event loop the settings name: uvloop's took a seventh off the
    embedded trigger's median latency (`docs/benchmarks.md`).

    What the process loaded to get here (modules, the App) lives as long as it does, so it is
    frozen out of the collector first: a Kafka worker's full collections walked it each time,
    about 100 ms each (`docs/benchmarks.md`, "What the garbage collector walked").

    `middle_collections` (Kafka services: `MIDDLE_COLLECTIONS`) spaces the middle and full
    collections out: under load a coordinator at Python's defaults made a full collection,
    50 to 100 ms walking every state it had made, about every second, and spent a quarter of its
    CPU collecting. `eventflow dev` measured no gain from it, and keeps the defaults."""
    gc.collect()
    gc.freeze()
    if middle_collections is not None:
        young, _, old = gc.get_threshold()
        gc.set_threshold(young, middle_collections, old)
    if settings.event_loop == "uvloop":
        return uvloop.run(main)
    return asyncio.run(main)


# -- eventflow dev -------------------------------------------------------------------------------
def dev(
    target: str,
    settings: Settings,
    *,
    emits: list[tuple[str, str]],
    metadata: dict[str, Any],
    until_idle: bool,
    ui: bool = False,
) -> int:
    """Run the App of `target` embedded until a signal, or with `until_idle` until nothing is
    left to do; the exit status. `ui`: serve the web UI beside the API."""
    setup_logging(settings.log_level, settings.log_format)
    app = load_app(target)
    metrics.serve(settings)
    with traced(settings, "dev") as tracer:
        return _run(_dev(app, settings, emits, metadata, until_idle, ui, tracer), settings)


async def _dev(
    app: App,
    settings: Settings,
    emits: list[tuple[str, str]],
    metadata: dict[str, Any],
    until_idle: bool,
    ui: bool,
    tracer: Tracer | None,
) -> int:
    if "history_process" not in settings.model_fields_set:
        settings = settings.model_copy(update={"history_process": True})
    runtime = EmbeddedRuntime(app, settings, tracer=tracer)
    # The socket first: a second instance on the same folder stops before opening the store.
    control = ControlServer(runtime, settings.control_socket)
    ops = EmbeddedOperations(runtime)
    api = _api(ops, ui=ui)
    finished: list[PipelineRunData] = []  # every finished run, with --until-idle
    refused: list[str] = []

    async def work() -> bool:
        for dataset, partition in emits:
            accepted = await runtime.emit(dataset, partition, metadata=metadata)
            if accepted.dead_letter:
                refused.append(f"--emit {dataset}: {accepted.dead_letter}")
        if until_idle:
            await runtime.wait_idle()
        else:
            await asyncio.Event().wait()  # until a signal or a failure
        return True

    async with Supervisor(control, runtime, ops, api, *_alerts(app, settings)) as supervisor:
        printer = asyncio.create_task(_report(runtime.subscribe(), finished, quiet=until_idle))
        try:
            with _announced(api, settings):
                if not until_idle:
                    click.echo(
                        f"eventflow dev: {len(app.pipelines)} pipelines, {len(app.tasks)} tasks; "
                        f"state in {settings.database}; API at {api.url}; emit with "
                        "`eventflow emit DATASET`. Ctrl-C stops."
                    )
                    if ui:
                        click.echo(f"web UI: {ui_address(api)}")
                done = await supervisor.run(work())
                await asyncio.sleep(0)  # let the printer take the last events
        finally:
            await Service.cancel(printer)
    if (failure := supervisor.failure) is not None:
        return failed(failure)
    for line in refused:
        say(f"error: {line}")
    if until_idle:
        click.echo(run_summary(finished))
        if done is None:
            say("stopped before the work was done")
            return 1
        if not finished and not refused:
            return NOTHING
        return 0 if not refused and all(r.status == "succeeded" for r in finished) else 1
    return 1 if refused else 0  # stopped by a signal: failed runs are history, not an error


def _alerts(app: App, settings: Settings) -> list[Service]:
    """The alerts service, when the App has alert rules, and the OpenLineage emitter, when
    `settings.openlineage_url` is set: beside the runtime (reading its log through the control
    socket) or beside a Kafka deployment's API (reading the topics)."""
    found: list[Service] = [AlertService(app, settings)] if app.alerts else []
    if settings.openlineage_url:
        from .openlineage.emitter import LineageEmitter

        found.append(LineageEmitter(app, settings))
    return found


def ui_address(api: ApiServer) -> str:
    """Where to open the web UI. A token this instance made up is put in a link that signs
    in (after `#`, which browsers keep out of requests); the operator's own token is never
    printed (a terminal's scrollback or a CI log would keep it): the sign-in page asks for it."""
    if api.settings.api_open_reads:
        return f"{api.url}/ui/"
    if api.settings.api_token is None:
        return f"{api.url}/ui/login#token={api.token}"
    return f"{api.url}/ui/login (sign in with EVENTFLOW_API_TOKEN)"


def _api(ops: Operations, *, ui: bool = False) -> ApiServer:
    """The API server of `ops`, with the settings' token or, for a dev instance, a new one."""
    settings = ops.settings
    token = settings.api_token.get_secret_value() if settings.api_token else None
    if token is None:
        if settings.kafka_bootstrap:
            raise ConfigurationError(
                "eventflow server needs EVENTFLOW_API_TOKEN (16+ characters): its API takes "
                "operators' actions"
            )
        token = secrets.token_urlsafe(32)
    return ApiServer(ops, token=token, ui=ui)


@contextlib.contextmanager
def _announced(api: ApiServer, settings: Settings) -> Iterator[None]:
    """While serving: the API's address and token in `HOME/api.json`, readable by the owner
    only, where the operator's commands on this machine find them."""
    path = settings.api_file
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed: a reader never finds it half written.
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        found = {"url": api.url, "token": api.token, "pid": os.getpid()}
        if api.ui:
            found["ui"] = f"{api.url}/ui/"
        out.write(orjson.dumps(found))
    os.replace(partial, path)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


async def _report(
    events: asyncio.Queue[Event], finished: list[PipelineRunData], *, quiet: bool
) -> None:
    while True:
        event = await events.get()
        if isinstance(event, PIPELINE_RUN_EVENTS):
            run = event.data
            assert isinstance(run, PipelineRunData)
            # A long-running instance keeps no run: a failed one is not its exit status.
            if quiet and run.status != "running":
                finished.append(run)
            if not quiet:
                click.echo(run_line(run))
        elif isinstance(event, DeadLetter) and not quiet:
            say(f"dead letter: {event.data.reason}")
        elif isinstance(event, FreshnessViolated | FreshnessRecovered) and not quiet:
            said = "late" if isinstance(event, FreshnessViolated) else "on time again"
            say(f"{said}: {event.data.message}")
        elif isinstance(event, CheckCompleted) and not event.data.passed:
            d = event.data
            kind = "blocked" if d.blocking else "warning"
            say(f"check {d.check} {kind}: {d.target.dataset}@{d.target.version} {d.message}")


# -- eventflow coordinator, eventflow worker -----------------------------------------------------
def coordinator(target: str, settings: Settings, *, health_file: Path | None) -> int:
    """Run a Kafka coordinator instance until a signal or its failure; the exit status."""
    from .kafka.coordinator import KafkaCoordinator

    setup_logging(settings.log_level, settings.log_format)
    app = load_app(target)
    metrics.serve(settings)
    with traced(settings, "coordinator") as tracer:
        service = KafkaCoordinator(app, settings, tracer=tracer)
        return _run(
            _kafka(service, "coordinator", health_file),
            settings,
            middle_collections=MIDDLE_COLLECTIONS,
        )


def worker(
    target: str, settings: Settings, *, concurrency: int | None, health_file: Path | None
) -> int:
    """Run a Kafka worker until a signal or its failure; the exit status."""
    from .kafka.worker import KafkaWorker

    setup_logging(settings.log_level, settings.log_format)
    app = load_app(target)
    metrics.serve(settings)
    with traced(settings, "worker") as tracer:
        service = KafkaWorker(app, settings, concurrency=concurrency, tracer=tracer)
        return _run(
            _kafka(service, "worker", health_file), settings, middle_collections=MIDDLE_COLLECTIONS
        )


def server(target: str, settings: Settings) -> int:
    """Run the operations plane of a Kafka deployment (the HTTP API, and the alerts service
    when the App has alert rules) until a signal or its failure; the exit status."""
    from .operations.kafka import KafkaOperations

    setup_logging(settings.log_level, settings.log_format)
    app = load_app(target)
    metrics.serve(settings)
    ops = KafkaOperations(app, settings)
    api = _api(ops, ui=True)
    return _run(_server(ops, api), settings)


async def _server(ops: Operations, api: ApiServer) -> int:
    from .kafka.config import KafkaConfig

    await _topics_exist(KafkaConfig(ops.settings))
    intake: list[Service] = []
    if ops.app.lineage:
        from .openlineage.kafka import LineageConsumer

        intake.append(LineageConsumer(ops))
    async with Supervisor(ops, api, *intake, *_alerts(ops.app, ops.settings)) as supervisor:
        say(f"eventflow server: API at {api.url}, web UI at {api.url}/ui/; SIGTERM stops")
        await supervisor.run()
    if (failure := supervisor.failure) is not None:
        return failed(failure)
    say("eventflow server: stopped")
    return 0


async def _topics_exist(config: KafkaConfig) -> None:
    from .kafka import admin

    missing = [d.topic for d in await admin.check(config) if d.problem == "missing"]
    if missing:
        raise ConfigurationError(
            f"topic {missing[0]} does not exist: run `eventflow topics apply` first"
        )


async def _kafka(
    service: KafkaCoordinator | KafkaWorker, kind: str, health_file: Path | None
) -> int:
    await _topics_exist(service.config)
    async with Supervisor(service) as supervisor:
        say(f"eventflow {service.name}: joining its group; SIGTERM stops")
        beat = asyncio.create_task(_beat(service, kind, health_file))
        ready = asyncio.create_task(_ready(service))
        try:
            await supervisor.run()
        finally:
            await Service.cancel(beat, ready)
    if (failure := supervisor.failure) is not None:
        return failed(failure)
    say(f"eventflow {service.name}: stopped")
    return 0


async def _ready(service: KafkaCoordinator | KafkaWorker) -> None:
    """Say "ready" once the service owns what it was assigned (taken over: a coordinator's
    stream tasks restored, a worker's partitions loaded), not when it merely started."""
    await service.ready.wait()
    owned = service.owns()
    what = f"partitions {', '.join(map(str, owned))}" if owned else "no partition (all taken)"
    say(f"eventflow {service.name}: ready, owns {what}")


async def _beat(service: KafkaCoordinator | KafkaWorker, kind: str, path: Path | None) -> None:
    """Every second while the service is healthy: the lag metric, and the health file with what
    the instance owns (a file that stops changing means the service is not healthy)."""
    while True:
        if service.healthy():
            try:
                # Bounded, so that a slow broker cannot hold back the health file.
                lag = await asyncio.wait_for(service.lag(), timeout=BEAT_S)
            except (BrokerError, TimeoutError):
                lag = -1
            except Exception:
                # A beat that died would freeze the file of a service that works: count it
                # unknown, say why, and beat on.
                log.warning("%s: reading the lag failed", service.name, exc_info=True)
                lag = -1
            metrics.LAG.set(lag)
            if path is not None:
                state = {
                    "service": kind,
                    "instance": service.instance,
                    "owns": service.owns(),
                    "lag": lag,
                }
                path.write_bytes(orjson.dumps(state))
        await asyncio.sleep(BEAT_S)
