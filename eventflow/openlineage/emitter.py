"""OpenLineage out: a RunEvent for each start and end of eventflow's own task runs.

The emitter reads task events as a durable subscriber, like the alerts service, so it runs the
same beside `eventflow dev` (the embedded log, through the control socket) and `eventflow
server` (the event topics): `TaskStarted` is START, `TaskSucceeded` COMPLETE with the versions
emitted as outputs, `TaskFailed` FAIL (ABORT when an operator cancelled the run). The job is
`pipeline.task` in the configured namespace, and the OpenLineage run id is a UUID derived from
eventflow's run id, so every event of one task run (one attempt) names the same run, whichever
process sends it. Inputs are the versions the run's request named, or the task's declared
inputs when the request was not seen (on Kafka it travels on another topic).

Lineage is a view, not a duty: an event the transport refuses is logged and passed over, and
never holds back the runs it describes.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC
from typing import TYPE_CHECKING, Any

from ..clients import Intake, Subscriber
from ..definitions import App
from ..errors import ConfigurationError
from ..events import (
    DatasetVersion,
    Event,
    TaskFailed,
    TaskRequested,
    TaskStarted,
    TaskSucceeded,
)
from ..lifecycle import Service
from ..settings import Settings

if TYPE_CHECKING:
    from openlineage.client.event_v2 import RunEvent
    from openlineage.client.transport import Transport

log = logging.getLogger("eventflow.openlineage")

#: The durable subscription the emitter reads with (a consumer group's name on Kafka).
SUBSCRIPTION = "eventflow-openlineage"
#: Where an eventflow run id's OpenLineage UUID is derived from.
RUN_NAMESPACE = uuid.UUID("5c0f5d2e-8f0e-5a51-9a7d-6e8f2c1b7a40")
PRODUCER = "https://github.com/eventflow/eventflow"
PIP = "pip install 'eventflow[openlineage]'"
#: Task requests remembered for their inputs until the run starts.
MAX_REQUESTS = 10_000
TYPES = (
    TaskRequested.event_type,
    TaskStarted.event_type,
    TaskSucceeded.event_type,
    TaskFailed.event_type,
)


def require() -> None:
    """`ConfigurationError` naming the pip line when the OpenLineage client is missing."""
    try:
        import openlineage.client  # noqa: F401
    except ImportError as e:
        raise ConfigurationError(
            f"sending OpenLineage events needs the OpenLineage client: {PIP}"
        ) from e


def run_uuid(run_id: str) -> str:
    """The OpenLineage run id of an eventflow task run: the same for every event of it."""
    return str(uuid.uuid5(RUN_NAMESPACE, run_id))


def transport(settings: Settings) -> Transport:
    """The transport `settings.openlineage_url` names: an HTTP endpoint, `file:///PATH`, or
    `console`."""
    require()
    from openlineage.client.transport.console import ConsoleConfig, ConsoleTransport
    from openlineage.client.transport.file import FileConfig, FileTransport
    from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport

    url = settings.openlineage_url
    if not url:
        raise ConfigurationError("no OpenLineage transport: set EVENTFLOW_OPENLINEAGE_URL")
    if url == "console":
        return ConsoleTransport(ConsoleConfig())
    if url.startswith("file://"):
        return FileTransport(FileConfig(log_file_path=url.removeprefix("file://"), append=True))
    if url.startswith(("http://", "https://")):
        key = settings.openlineage_api_key
        auth = ApiKeyTokenProvider({"apiKey": key.get_secret_value()}) if key else None
        config = HttpConfig(url=url) if auth is None else HttpConfig(url=url, auth=auth)
        return HttpTransport(config)
    raise ConfigurationError(
        f"EVENTFLOW_OPENLINEAGE_URL {url!r} is none of an http(s) URL, file:///PATH, console"
    )


def run_event(
    app: App,
    event: Event,
    namespace: str,
    inputs: Sequence[DatasetVersion] | None = None,
) -> RunEvent | None:
    """The RunEvent telling `event` (a task's start or end), or None for any other event.
    `inputs` are the versions the run's request named, if known."""
    require()
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent
    from openlineage.client.event_v2 import RunState as State
    from openlineage.client.facet_v2 import (
        RunFacet,
        dataset_version_dataset,
        error_message_run,
        output_statistics_output_dataset,
    )

    if not isinstance(event, TaskStarted | TaskSucceeded | TaskFailed):
        return None
    data = event.data
    task = app.tasks.get(data.task)

    def version(v: DatasetVersion) -> dict[str, Any]:
        facet = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=str(v.version))
        return {"version": facet}

    if inputs is not None:
        read = [InputDataset(namespace, v.dataset, facets=version(v)) for v in inputs]
    else:
        read = [InputDataset(namespace, name) for name in (task.inputs if task else ())]
    written: list[OutputDataset] = []
    run_facets: dict[str, RunFacet] = {}
    if isinstance(event, TaskStarted):
        state = State.START
    elif isinstance(event, TaskSucceeded):
        state = State.COMPLETE
        for v in event.data.outputs:
            stats: dict[str, Any] = {}
            rows = v.metadata.get("row_count", v.metadata.get("rows"))
            if isinstance(rows, int) and not isinstance(rows, bool):
                facet = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet
                stats["outputStatistics"] = facet(rowCount=rows)
            written.append(
                OutputDataset(namespace, v.dataset, facets=version(v), outputFacets=stats)
            )
    else:
        state = State.ABORT if event.data.kind == "cancelled" else State.FAIL
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=event.data.error, programmingLanguage="python"
        )
    return RunEvent(
        eventType=state,
        eventTime=event.time.astimezone(UTC).isoformat(),
        run=Run(runId=run_uuid(data.run_id), facets=run_facets),
        job=Job(namespace=namespace, name=f"{data.pipeline}.{data.task}"),
        inputs=read,
        outputs=written,
        producer=PRODUCER,
    )


class LineageEmitter(Service):
    """Sends RunEvents of the App's task runs to the transport `settings.openlineage_url`
    names (or `transport`, for tests)."""

    name = "eventflow openlineage"

    def __init__(
        self,
        app: App,
        settings: Settings,
        *,
        transport: Transport | None = None,
        subscription: str = SUBSCRIPTION,
    ) -> None:
        super().__init__()
        self.app = app
        self.settings = settings
        self.subscription = subscription
        self._transport = transport
        self._intake = Intake(self._subscribe, "openlineage")
        self._requests: OrderedDict[str, list[DatasetVersion]] = OrderedDict()
        self._sent = asyncio.Condition()
        #: RunEvents handed to the transport since the start.
        self.sent = 0

    async def _open(self) -> None:
        require()
        if self._transport is None:
            self._transport = transport(self.settings)
        await self._intake.start()
        self.spawn(self._intake.run(self._take), "openlineage emitter")
        self.ready.set()

    async def _close(self) -> None:
        await self._stop_loops()
        await self._intake.stop()

    def _subscribe(self) -> Subscriber:
        return Subscriber(
            self.settings, kinds=list(TYPES), name=self.subscription, finished_only=False
        )

    async def until(self, sent: int, timeout: float = 30) -> None:
        """Until `sent` RunEvents went out in all (for tests and tools that wait on them)."""
        async with asyncio.timeout(timeout), self._sent:
            while self.sent < sent:
                if self.error is not None:
                    raise self.error
                await self._sent.wait()

    async def _take(self, event: Event) -> None:
        if isinstance(event, TaskRequested):
            self._requests[event.data.run_id] = list(event.data.inputs)
            while len(self._requests) > MAX_REQUESTS:
                self._requests.popitem(last=False)
            return
        run_id = getattr(event.data, "run_id", None)
        inputs = self._requests.get(run_id) if isinstance(run_id, str) else None
        if isinstance(event, TaskSucceeded | TaskFailed) and isinstance(run_id, str):
            self._requests.pop(run_id, None)
        lineage = run_event(self.app, event, self.settings.openlineage_namespace, inputs)
        if lineage is None:
            return
        assert self._transport is not None
        try:
            await asyncio.to_thread(self._transport.emit, lineage)
        except Exception as e:
            log.warning("openlineage: the transport refused the event of %s: %s", run_id, e)
        async with self._sent:
            self.sent += 1
            self._sent.notify_all()
