"""The router's decisions: a dataset version in, routed inputs (or check requests) out.

State is one `DatasetState` per (dataset, partition). A version not newer than the newest seen is
dropped here, which is what makes replays, duplicates and late arrivals harmless. A dataset with
checks is held back until every check has reported; a failed blocking check routes the version as
rejected, so consumers never run on it and a run that was waiting for it fails with the reason.
"""

from __future__ import annotations

import hashlib

from ..definitions import App
from ..errors import EventError
from ..events import (
    CheckCompletedData,
    CheckRequested,
    CheckRequestedData,
    DatasetProducedData,
    DatasetReset,
    DatasetResetData,
    DatasetVersion,
    Event,
    Payload,
    PipelineInput,
    PipelineInputData,
)
from .state import DatasetState, Decision, PendingVersion, Publish


def check_run_id(check: str, target: DatasetVersion) -> str:
    canonical = f"{check}|{target.dataset}|{target.partition}|{target.version}"
    return f"{check}:{hashlib.blake2b(canonical.encode(), digest_size=6).hexdigest()}"


class Router:
    def __init__(self, app: App, *, default_timeout_s: float = 3600.0, source: str = "eventflow"):
        self.app = app
        self.default_timeout_s = default_timeout_s
        self.source = source

    def validate(self, data: DatasetProducedData) -> DatasetProducedData:
        """Refuse what no pipeline can use: unknown datasets and malformed partition keys."""
        dataset = self.app.datasets.get(data.dataset)
        if dataset is None:
            raise EventError(f"unknown dataset {data.dataset!r}")
        key = dataset.partitions.validate(data.partition)
        return data if key == data.partition else data.model_copy(update={"partition": key})

    def validate_check(self, data: CheckCompletedData) -> DatasetVersion:
        """A check result must name a check of its target dataset, and the run id the router
        derived for that check and version."""
        chk = self.app.checks.get(data.check)
        if chk is None or chk.dataset != data.target.dataset:
            raise EventError(f"{data.target.dataset!r} has no check {data.check!r}")
        self._key(data.target.dataset, data.target.partition)
        if data.run_id != check_run_id(data.check, data.target):
            raise EventError(f"check run {data.run_id!r} is not the run of this check and version")
        return data.target

    def validate_routed(self, dataset: str, partition: str, pipeline: str | None) -> None:
        """A routed input (or reset) must name a dataset `pipeline` consumes, in canonical form."""
        self._key(dataset, partition)
        if pipeline is not None and pipeline not in self.app.pipeline_consumers.get(dataset, ()):
            raise EventError(f"pipeline {pipeline!r} does not consume {dataset!r}")

    def _key(self, dataset: str, partition: str) -> None:
        found = self.app.datasets.get(dataset)
        if found is None:
            raise EventError(f"unknown dataset {dataset!r}")
        if found.partitions.validate(partition) != partition:
            raise EventError(f"partition {partition!r} of {dataset!r} is not in canonical form")

    def on_reset(
        self, st: DatasetState, data: DatasetResetData, correlation: str | None = None
    ) -> Decision:
        """An operator sets the newest-version mark back (after a bogus huge version froze the
        dataset) and every consuming pipeline forgets versions above it."""
        d = Decision()
        st.seen = min(st.seen, data.version)
        for version in [v for v in st.pending if v > data.version]:
            del st.pending[version]
        d.dirty.add(data.partition)
        for pipeline in self.app.pipeline_consumers.get(data.dataset, ()):
            routed = data.model_copy(update={"pipeline": pipeline})
            d.commands.append(Publish(self._event(DatasetReset, routed, correlation)))
        return d

    def on_produced(
        self, st: DatasetState, data: DatasetProducedData, correlation: str | None = None
    ) -> Decision:
        d = Decision()
        if data.version <= st.seen:
            if data.producer is not None:
                # A task's output must reach the run waiting for it, even as a refusal.
                reason = f"version {data.version} is not newer than {st.seen}, already seen"
                self._route(data, False, reason, correlation, d)
            return d
        st.seen = data.version
        d.dirty.add(data.partition)
        checks = self.app.checks_of.get(data.dataset, [])
        if not checks:
            self._route(data, True, "", correlation, d)
            return d
        st.pending[data.version] = PendingVersion(
            metadata=data.metadata, producer=data.producer, results={c.name: None for c in checks}
        )
        target = DatasetVersion(
            dataset=data.dataset,
            partition=data.partition,
            version=data.version,
            metadata=data.metadata,
        )
        for chk in checks:
            request = CheckRequestedData(
                run_id=check_run_id(chk.name, target),
                check=chk.name,
                target=target,
                timeout_s=self.app.timeout_of(chk, self.default_timeout_s),
            )
            d.commands.append(Publish(self._event(CheckRequested, request, correlation)))
        return d

    def on_check(
        self, st: DatasetState, data: CheckCompletedData, correlation: str | None = None
    ) -> Decision:
        d = Decision()
        pending = st.pending.get(data.target.version)
        if pending is None or pending.results.get(data.check, ()) is not None:
            return d  # a repeated result, or a check this version never asked for
        # Blocking as the definition says: the worker's word is not needed for that.
        blocking = self.app.checks[data.check].blocking
        pending.results[data.check] = (data.passed, blocking, data.message)
        d.dirty.add(data.target.partition)
        if any(result is None for result in pending.results.values()):
            return d
        del st.pending[data.target.version]
        refusals = []
        for name, result in pending.results.items():
            passed, blocking, message = result or (True, False, "")
            if blocking and not passed:
                refusals.append(f"check {name!r} failed" + (f": {message}" if message else ""))
        produced = DatasetProducedData(
            dataset=data.target.dataset,
            partition=data.target.partition,
            version=data.target.version,
            metadata=pending.metadata,
            producer=pending.producer,
        )
        self._route(produced, not refusals, "; ".join(refusals), correlation, d)
        return d

    def pending_checks(
        self, st: DatasetState, dataset: str, partition: str
    ) -> list[CheckRequested]:
        """Check requests without a result, to send again after a restart."""
        events: list[CheckRequested] = []
        for version, pending in sorted(st.pending.items()):
            target = DatasetVersion(
                dataset=dataset, partition=partition, version=version, metadata=pending.metadata
            )
            for name, result in pending.results.items():
                if result is None:
                    chk = self.app.checks[name]
                    request = CheckRequestedData(
                        run_id=check_run_id(name, target),
                        check=name,
                        target=target,
                        timeout_s=self.app.timeout_of(chk, self.default_timeout_s),
                    )
                    events.append(CheckRequested.of(request, source=self.source))
        return events

    def _route(
        self,
        data: DatasetProducedData,
        accepted: bool,
        reason: str,
        correlation: str | None,
        d: Decision,
    ) -> None:
        if accepted:
            d.accepted = data
        for pipeline in self.app.pipeline_consumers.get(data.dataset, ()):
            routed = PipelineInputData(
                **data.model_dump(), pipeline=pipeline, accepted=accepted, reason=reason
            )
            d.commands.append(Publish(self._event(PipelineInput, routed, correlation)))

    def _event(self, kind: type[Event], data: Payload, correlation: str | None) -> Event:
        return kind.of(data, source=self.source, correlationid=correlation)
