"""Router, runs and pool gate over in-memory state: one event in, effects out.

A runtime feeds events (and ticks) in, persists what `Effects.dirty_*` names together with the
events, then carries the effects out. Nothing here does I/O or reads the clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..definitions import App
from ..errors import EventError
from ..events import (
    CheckCompleted,
    CheckRequested,
    DatasetProduced,
    DatasetReset,
    DeadLetter,
    Event,
    PipelineAction,
    PipelineInput,
    PoolReleased,
    PoolReleasedData,
    TaskFailed,
    TaskHeartbeat,
    TaskLog,
    TaskRef,
    TaskRequested,
    TaskRequestedData,
    TaskStarted,
    TaskSucceeded,
)
from . import notes
from .actions import Actions
from .explain import Explanation, explain
from .freshness import (
    Freshness,
    FreshnessState,
    Policy,
    dataset_subject,
    is_timer,
    task_subject,
    timer_key,
)
from .pools import PoolGate
from .router import Router
from .runs import Runs
from .state import DatasetState, Decision, Dispatch, PipelineState, Publish, Release, Wake


def is_followed(event: Event) -> bool:
    """Whether the engine consumes this output of its own again (in Kafka mode it crosses a
    topic first): produced outputs, routed inputs and routed resets."""
    if isinstance(event, DatasetReset):
        return event.data.pipeline is not None
    return isinstance(event, DatasetProduced | PipelineInput)


class Refused(EventError):
    """An input refused whose refusal still has effects to carry out: a task result for a run
    not in flight frees the pool slot its run id may hold."""

    def __init__(self, reason: str, effects: Effects) -> None:
        super().__init__(reason)
        self.effects = effects


@dataclass(slots=True)
class Effects:
    """What deciding asks a runtime to carry out, and which state it changed."""

    #: Events to publish: produced outputs, routed inputs and resets, run outcomes.
    events: list[Event] = field(default_factory=list)
    #: Task requests for the workers.
    dispatch: list[TaskRequestedData] = field(default_factory=list)
    #: Check requests for the workers (they are published too: the log keeps them).
    checks: list[CheckRequested] = field(default_factory=list)
    #: Runs whose body must stop if it still runs.
    cancel: list[str] = field(default_factory=list)
    #: (at, pipeline): call `Engine.tick` for the pipeline then.
    wakes: list[tuple[float, str]] = field(default_factory=list)
    #: Pooled requests and releases for a pool stage elsewhere (`local_pools=False`).
    pool_requests: list[TaskRequestedData] = field(default_factory=list)
    pool_releases: list[tuple[str, str]] = field(default_factory=list)
    dirty_partitions: set[tuple[str, str]] = field(default_factory=set)
    dirty_datasets: set[tuple[str, str]] = field(default_factory=set)
    dirty_pools: set[str] = field(default_factory=set)
    #: Pipelines whose header record (active, waiting, paused) changed.
    dirty_headers: set[str] = field(default_factory=set)
    #: Freshness subjects whose state changed.
    dirty_freshness: set[str] = field(default_factory=set)

    def merge(self, other: Effects) -> None:
        self.events += other.events
        self.dispatch += other.dispatch
        self.checks += other.checks
        self.cancel += other.cancel
        self.wakes += other.wakes
        self.pool_requests += other.pool_requests
        self.pool_releases += other.pool_releases
        self.dirty_partitions |= other.dirty_partitions
        self.dirty_datasets |= other.dirty_datasets
        self.dirty_pools |= other.dirty_pools
        self.dirty_headers |= other.dirty_headers
        self.dirty_freshness |= other.dirty_freshness


class Engine:
    def __init__(
        self,
        app: App,
        *,
        default_timeout_s: float = 3600.0,
        heartbeat_timeout_s: float = 0.0,
        source: str = "eventflow",
        local_pools: bool = True,
    ) -> None:
        """`local_pools=False` leaves pooled requests and releases to a pool stage elsewhere
        (Kafka mode), as `Effects.pool_requests` and `Effects.pool_releases`."""
        self.app = app
        self.local_pools = local_pools
        self.runs = Runs(
            app,
            default_timeout_s=default_timeout_s,
            heartbeat_timeout_s=heartbeat_timeout_s,
            source=source,
        )
        self.actions = Actions(self.runs)
        self.router = Router(app, default_timeout_s=default_timeout_s, source=source)
        self.gate = PoolGate({p.name: p.slots for p in app.pools.values()})
        self.freshness = Freshness(app, source=source)
        self.pipelines: dict[str, PipelineState] = {}
        self.datasets: dict[tuple[str, str], DatasetState] = {}
        #: Freshness state by subject (`core.freshness`).
        self.fresh: dict[str, FreshnessState] = {}
        self.reset()
        self._task_events: dict[type[Event], Callable[[PipelineState, Any, float], Decision]] = {
            TaskStarted: self.runs.on_started,
            TaskHeartbeat: self.runs.on_heartbeat,
            TaskSucceeded: self.runs.on_succeeded,
            TaskFailed: self.runs.on_failed,
        }

    def reset(self) -> None:
        """Forget every state, to load it again from its durable copy (after a decision failed
        halfway, or a commit did not happen)."""
        self.gate = PoolGate({p.name: p.slots for p in self.app.pools.values()})
        self.pipelines = {name: PipelineState(name) for name in self.app.pipelines}
        self.datasets = {}
        self.fresh = {}

    def handle(self, event: Event, now: float) -> Effects:
        """Apply one event. Raises `EventError`, before any state changes, for an event that
        names what this App does not have or does not match the run it claims; `Refused` for
        one whose refusal has effects all the same."""
        if isinstance(event, DatasetProduced):
            data = self.router.validate(event.data)
            key = (data.dataset, data.partition)
            st = self.datasets.setdefault(key, DatasetState())
            if data.producer is not None:
                decision = self.router.on_produced(st, data, event.correlationid)
                return self._arrived(self._effects(decision, dataset=data.dataset), decision, now)
            # From outside: what it sets going carries its correlation, and a note says so.
            correlation = event.correlationid or event.id
            seen = st.seen
            decision = self.router.on_produced(st, data, correlation)
            fx = self._effects(decision, dataset=data.dataset)
            fx.events.append(notes.routed(self, data, seen, fx, correlation))
            return self._arrived(fx, decision, now)
        if isinstance(event, CheckCompleted):
            target = self.router.validate_check(event.data)
            st = self.datasets.setdefault((target.dataset, target.partition), DatasetState())
            decision = self.router.on_check(st, event.data)
            fx = self._effects(decision, dataset=target.dataset)
            return self._arrived(fx, decision, now)
        if isinstance(event, PipelineInput):
            routed = event.data
            pst = self._pipeline(routed.pipeline)
            self.router.validate_routed(routed.dataset, routed.partition, pst.name)
            if routed.producer is not None or event.correlationid is None:
                return self._effects(
                    self._run(pst, self.runs.on_input(pst, routed, now), now), pst.name
                )
            known = self.runs.known_version(pst, routed.dataset, routed.partition)
            fx = self._effects(self._run(pst, self.runs.on_input(pst, routed, now), now), pst.name)
            fx.events.append(notes.evaluated(self, routed, known, fx, event.correlationid))
            return fx
        if isinstance(event, DatasetReset):
            reset = event.data
            self.router.validate_routed(reset.dataset, reset.partition, reset.pipeline)
            if reset.pipeline is not None:
                pst = self._pipeline(reset.pipeline)
                return self._effects(self.runs.on_reset(pst, reset), pst.name)
            st = self.datasets.setdefault((reset.dataset, reset.partition), DatasetState())
            decision = self.router.on_reset(st, reset, event.correlationid)
            return self._effects(decision, dataset=reset.dataset)
        if isinstance(event, PipelineAction):
            pst = self._pipeline(event.data.pipeline)
            decision = self.actions.on_action(pst, event.data, now, event.id)
            return self._effects(self._run(pst, decision, now), pst.name)
        if isinstance(event, DeadLetter | TaskLog):
            return Effects()  # logged, not decided on
        if isinstance(event, TaskFailed) and event.data.kind == "cancelled":
            # The record a cancel made of the attempts it stopped, read back (Kafka).
            self.runs.validate(self._pipeline(event.data.pipeline), event.data)
            return Effects()
        if isinstance(event, TaskRequested | PoolReleased):
            return self._pool_stage(event.data)
        handler = self._task_events.get(type(event))
        ref = event.data
        if handler is None or not isinstance(ref, TaskRef):
            raise EventError(f"{event.type} is an output of eventflow, not an input")
        pst = self._pipeline(ref.pipeline)
        self.runs.validate(pst, ref)
        decision = self._run(pst, handler(pst, ref, now), now)
        effects = self._effects(decision, pst.name)
        if decision.refused is not None:
            raise Refused(decision.refused, effects)
        if isinstance(event, TaskSucceeded):
            self._succeeded(pst, event.data, now, effects)
        return effects

    def _arrived(self, fx: Effects, decision: Decision, now: float) -> Effects:
        """A version the router accepted counts for its dataset's freshness."""
        data = decision.accepted
        if data is not None:
            policy = self.freshness.policies.get(dataset_subject(data.dataset))
            if policy is not None:
                self._arrival(policy, data.partition, data.version, now, fx)
        return fx

    def _succeeded(self, pst: PipelineState, ref: TaskRef, now: float, fx: Effects) -> None:
        """A success the run decisions accepted counts for its task's deadline."""
        policy = self.freshness.policies.get(task_subject(pst.name, ref.task))
        part = pst.partitions.get(ref.partition)
        run = part.runs.get(ref.task) if part is not None else None
        if policy is None or run is None or run.run_id != ref.run_id or run.status != "succeeded":
            return
        self._arrival(policy, ref.partition, int(now * 1e6), now, fx)

    def _arrival(
        self, policy: Policy, partition: str, version: int, now: float, fx: Effects
    ) -> None:
        """Judge an arrival, then wake the subject again as its state now says (an age limit
        ended by this version is re-armed)."""
        st = self.fresh.get(policy.subject)
        if st is None:
            st = self.fresh[policy.subject] = self.freshness.start(policy, now)
        fx.events += self.freshness.on_arrival(policy, st, partition, version, now)
        fx.dirty_freshness.add(policy.subject)
        wake = self.freshness.next_wake(policy, st)
        if wake is not None:
            fx.wakes.append((wake, timer_key(policy.subject)))

    def _pool_stage(self, data: TaskRequestedData | PoolReleasedData) -> Effects:
        """A pooled request or a release reaching the pool stage (`local_pools=False`: the
        stream task owning the pool, in Kafka mode). A request must be one the coordinator
        could have made: its slot is freed by the result of the run it names, and only such a
        request gets a result the coordinator can read."""
        if self.local_pools or data.pool not in self.gate.slots:
            raise EventError(f"{type(data).__name__} names a pool this stage does not hold")
        out = Effects(dirty_pools={data.pool})
        if isinstance(data, TaskRequestedData):
            self.runs.validate(self._pipeline(data.pipeline), data)
            out.dispatch = self.gate.submit(data)
        else:
            out.dispatch = self.gate.release(data.run_id, data.pool)
        return out

    def _pipeline(self, name: str) -> PipelineState:
        found = self.pipelines.get(name)
        if found is None:
            raise EventError(f"unknown pipeline {name!r}")
        return found

    def tick(self, pipeline: str, now: float, heard_since: float | None = None) -> Effects:
        """Timers of one pipeline, or of a freshness subject (`core.freshness.timer_key`);
        `heard_since`: see `Runs.tick`."""
        if is_timer(pipeline):
            policy = self.freshness.policies.get(pipeline[1:])
            fx = Effects()
            if policy is not None:
                st = self.fresh.get(policy.subject)
                if st is None:
                    st = self.fresh[policy.subject] = self.freshness.start(policy, now)
                fx.events += self.freshness.tick(policy, st, now)
                fx.dirty_freshness.add(policy.subject)
                wake = self.freshness.next_wake(policy, st)
                if wake is not None:
                    fx.wakes.append((wake, pipeline))
            return fx
        pst = self.pipelines[pipeline]
        return self._effects(self._run(pst, self.runs.tick(pst, now, heard_since), now), pipeline)

    def _run(self, pst: PipelineState, decision: Decision, now: float) -> Decision:
        """Backfills go on after every decision on their pipeline: the runs it ended make room
        for the next."""
        if pst.backfills:
            self.actions.backfills.advance(pst, decision, now)
        return decision

    def freshness_wakes(
        self, owned: Callable[[str], bool] = lambda _: True
    ) -> list[tuple[float, str]]:
        """The timers of the freshness subjects `owned` selects, from their state (one with no
        state yet is due at once, to be started)."""
        wakes: list[tuple[float, str]] = []
        for subject, policy in self.freshness.policies.items():
            if owned(subject):
                wake = self.freshness.next_wake(policy, self.fresh.get(subject))
                if wake is not None:
                    wakes.append((wake, timer_key(subject)))
        return wakes

    def recover(self) -> Effects:
        """After loading state: the requests, check requests and timers that were in flight."""
        out = Effects()
        for pst in self.pipelines.values():
            for request in self.runs.in_flight(pst):
                out.dispatch += self.gate.submit(request)
            wake = self.runs.next_wake(pst)
            if wake is not None:
                out.wakes.append((wake, pst.name))
        for (dataset, partition), dst in self.datasets.items():
            out.checks += self.router.pending_checks(dst, dataset, partition)
        out.wakes += self.freshness_wakes()
        return out

    def explain(self, pipeline: str, task: str, partition: str) -> Explanation:
        """Why `task` runs, waits or would run now in `partition`, read from the state this
        engine decides on. Raises `EventError` for an unknown pipeline, task or partition."""
        return explain(self, pipeline, task, partition)

    def idle(self) -> bool:
        """No run in progress, no decision held back and no version waiting for checks."""
        if any(p.active or p.waiting or p.held for p in self.pipelines.values()):
            return False
        return not any(d.pending for d in self.datasets.values())

    def _effects(self, decision: Decision, pipeline: str = "", dataset: str = "") -> Effects:
        out = Effects()
        for command in decision.commands:
            if isinstance(command, Publish):
                if isinstance(command.event, CheckRequested):
                    out.checks.append(command.event)
                else:
                    out.events.append(command.event)
            elif isinstance(command, Dispatch):
                if command.request.pool is not None and not self.local_pools:
                    out.pool_requests.append(command.request)
                else:
                    out.dispatch += self.gate.submit(command.request)
            elif isinstance(command, Release):
                out.cancel.append(command.run_id)
                if command.pool is not None and not self.local_pools:
                    out.pool_releases.append((command.run_id, command.pool))
                else:
                    out.dispatch += self.gate.release(command.run_id, command.pool)
            elif isinstance(command, Wake):
                out.wakes.append((command.at, command.pipeline))
        if pipeline:
            out.dirty_partitions = {(pipeline, key) for key in decision.dirty}
            if decision.header:
                out.dirty_headers = {pipeline}
        if dataset:
            out.dirty_datasets = {(dataset, key) for key in decision.dirty}
        return out
