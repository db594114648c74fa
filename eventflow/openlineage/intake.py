"""OpenLineage in: RunEvents of other tools become dataset announcements.

`Intake` is the decision, with no I/O: the outputs of one run are merged by `runId` over its
events (Spark, for one, names some outputs only on START or RUNNING), and announced once, when
the run COMPLETEs, as `DatasetProduced` events, so checks and triggers apply as to any other
announcement. The version is the COMPLETE's `eventTime` in microseconds: a COMPLETE delivered
twice announces a version the router already holds, which it drops. What is not a trigger is
recorded as a dead letter with the reason (a run that FAILed or was ABORTed, an output no
mapping names, a partition the event does not hold), and a malformed event is refused.

`Receiver` hands the outcome to an `Operations`: the one path of both the HTTP endpoint and the
Kafka topic.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import ValidationError

from ..errors import EventError
from ..events import (
    DEFAULT_MAX_METADATA_BYTES,
    DatasetProduced,
    DatasetProducedData,
    check_metadata,
)
from .mapping import LineageMapping

if TYPE_CHECKING:
    from ..definitions import App
    from ..operations import Operations

EVENT_TYPES = frozenset({"START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"})
#: Runs whose outputs are held until they end, and runs remembered as ended; the oldest are
#: forgotten first (a forgotten COMPLETE's repeat is dropped by the router all the same).
MAX_RUNS = 10_000
#: The largest RunEvent taken, in bytes.
MAX_EVENT_BYTES = 1 << 20


@dataclass
class Taken:
    """What became of one RunEvent: versions to announce, facts to record (each a dead letter
    of the event with the reason), or why it was refused as malformed."""

    announce: list[DatasetProducedData] = field(default_factory=list)
    record: list[str] = field(default_factory=list)
    refused: str | None = None


class Intake:
    """The RunEvents of the App's lineage mappings, one at a time (not thread-safe)."""

    def __init__(
        self,
        app: App,
        *,
        max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES,
        max_runs: int = MAX_RUNS,
    ) -> None:
        self.app = app
        self.max_metadata_bytes = max_metadata_bytes
        self.max_runs = max_runs
        #: runId -> outputs seen so far, by (namespace, name).
        self._open: OrderedDict[str, dict[tuple[str, str], dict[str, Any]]] = OrderedDict()
        self._ended: OrderedDict[str, str] = OrderedDict()

    def take(self, raw: bytes) -> Taken:
        try:
            event = _parse(raw)
        except EventError as e:
            return Taken(refused=f"not an OpenLineage RunEvent: {e.reason}")
        run_id: str = event["run"]["runId"]
        kind: str = event.get("eventType") or "OTHER"
        job = f"{event['job']['namespace']}/{event['job']['name']}"
        where = f"OpenLineage run {run_id} of job {job}"
        if run_id in self._ended:
            ended = self._ended[run_id]
            return Taken(record=[f"{where}: {kind} after the run ended {ended}; ignored"])
        outputs = self._open.pop(run_id, {})
        for output in event.get("outputs") or ():
            key = (output["namespace"], output["name"])
            outputs[key] = _merged(outputs.get(key), output)
        if kind in ("START", "RUNNING", "OTHER"):
            self._open[run_id] = outputs
            while len(self._open) > self.max_runs:
                self._open.popitem(last=False)
            return Taken()
        self._ended[run_id] = kind
        while len(self._ended) > self.max_runs:
            self._ended.popitem(last=False)
        if kind != "COMPLETE":
            return Taken(record=[f"{where} ended {kind}: {_error(event)}; not a trigger"])
        taken = Taken()
        version = _micros(event["eventTime"])
        for (namespace, name), output in outputs.items():
            mapping = self.app.lineage.get((namespace, name))
            if mapping is None:
                taken.record.append(f"{where}: output {namespace}/{name} maps to no dataset")
                continue
            try:
                taken.announce.append(self._version(mapping, output, event, version, run_id))
            except EventError as e:
                taken.record.append(f"{where}: output {namespace}/{name}: {e.reason}")
        return taken

    def _version(
        self,
        mapping: LineageMapping,
        output: Mapping[str, Any],
        event: Mapping[str, Any],
        version: int,
        run_id: str,
    ) -> DatasetProducedData:
        dataset = self.app.datasets[mapping.dataset_name]
        partition = dataset.partitions.validate(mapping.key(output, event))
        metadata: dict[str, Any] = {
            "openlineage_run_id": run_id,
            "openlineage_job": f"{event['job']['namespace']}/{event['job']['name']}",
        }
        stats = output["outputFacets"].get("outputStatistics")
        if isinstance(stats, Mapping):
            for field_, key in (("rowCount", "row_count"), ("size", "bytes")):
                if isinstance(stats.get(field_), int):
                    metadata[key] = stats[field_]
        try:
            return DatasetProducedData(
                dataset=dataset.name,
                partition=partition,
                version=version,
                metadata=check_metadata(metadata, self.max_metadata_bytes),
            )
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in e.errors())
            raise EventError(f"not a dataset version: {problems}") from None


def _merged(before: dict[str, Any] | None, now: Mapping[str, Any]) -> dict[str, Any]:
    """A later event's facets win over an earlier one's, facet by facet."""
    merged = dict(before or {})
    for key, value in now.items():
        if key in ("facets", "outputFacets") and isinstance(value, Mapping):
            merged[key] = {**(merged.get(key) or {}), **value}
        else:
            merged[key] = value
    return merged


def _error(event: Mapping[str, Any]) -> str:
    facet = event["run"]["facets"].get("errorMessage")
    if isinstance(facet, Mapping) and isinstance(facet.get("message"), str):
        return str(facet["message"])[:500]
    return "no error message"


def _micros(when: str) -> int:
    try:
        moment = datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError as e:
        raise EventError(f"eventTime {when!r} is not an ISO 8601 time") from e
    if moment.tzinfo is None:
        raise EventError(f"eventTime {when!r} has no time zone")
    return int(moment.timestamp() * 1_000_000)


def _parse(raw: bytes) -> dict[str, Any]:
    """The event if it is a RunEvent eventflow can read; `EventError` with the reason if not."""
    if len(raw) > MAX_EVENT_BYTES:
        raise EventError(f"{len(raw)} bytes, over the {MAX_EVENT_BYTES} taken")
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise EventError(f"not JSON: {e}") from e
    if not isinstance(event, dict):
        raise EventError("not a JSON object")
    kind = event.get("eventType")
    if kind is not None and kind not in EVENT_TYPES:
        raise EventError(f"eventType {kind!r} is none of {', '.join(sorted(EVENT_TYPES))}")
    run, job = event.get("run"), event.get("job")
    if not isinstance(run, dict) or not isinstance(run.get("runId"), str) or not run["runId"]:
        raise EventError("no run.runId")
    if not isinstance(job, dict) or not all(
        isinstance(job.get(k), str) and job[k] for k in ("namespace", "name")
    ):
        raise EventError("no job.namespace and job.name")
    run.setdefault("facets", {})
    if not isinstance(run["facets"], dict):
        raise EventError("run.facets is not an object")
    if not isinstance(event.get("eventTime"), str):
        raise EventError("no eventTime")
    _micros(event["eventTime"])
    for side in ("inputs", "outputs"):
        datasets = event.get(side)
        if datasets is None:
            continue
        if not isinstance(datasets, list):
            raise EventError(f"{side} is not a list")
        for dataset in datasets:
            if not isinstance(dataset, dict) or not all(
                isinstance(dataset.get(k), str) and dataset[k] for k in ("namespace", "name")
            ):
                raise EventError(f"an entry of {side} has no namespace and name")
            for facets in ("facets", "inputFacets" if side == "inputs" else "outputFacets"):
                dataset.setdefault(facets, {})
                if not isinstance(dataset[facets], dict):
                    name = dataset["name"]
                    raise EventError(f"{facets} of {side} entry {name!r} is not an object")
    return event


@dataclass
class Received:
    """What the receiver did with one RunEvent: the ids of the versions announced, the reasons
    recorded, or why it was refused."""

    announced: list[str] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)
    refused: str | None = None


class Receiver:
    """RunEvents into `ops`: versions submitted as any announcement is, the rest recorded."""

    def __init__(self, ops: Operations) -> None:
        self.ops = ops
        self.intake = Intake(ops.app, max_metadata_bytes=ops.settings.max_metadata_bytes)

    async def take(self, raw: bytes, origin: str) -> Received:
        taken = self.intake.take(raw)
        if taken.refused is not None:
            await self.ops.refuse(raw, taken.refused, origin)
            return Received(refused=taken.refused)
        received = Received(recorded=list(taken.record))
        for data in taken.announce:
            done = await self.ops.submit(DatasetProduced.of(data, source=self.ops.settings.source))
            if done.dead_letter is not None:
                # Dead-lettered by the router already: the reason is in the history.
                received.recorded.append(f"{data.dataset}: {done.dead_letter}")
            else:
                received.announced.append(done.id)
        for reason in taken.record:
            await self.ops.refuse(raw, reason, origin)
        return received
