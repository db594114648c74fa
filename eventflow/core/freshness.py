"""Freshness decisions: a policy's deadline ticks and age limit judged from state and `now`.

A subject is a dataset with a `Freshness` policy or a task with a `deadline`. Its state lives
with its owner's state (the dataset's router, the task's pipeline), so on Kafka the stream task
that sees the versions (or the task's successes) also judges them, in the same transaction. Its
timer is an ordinary wake, named `timer_key(subject)`. A violation is kept in the state until the
missing version arrives, so a replayed tick or a restarted coordinator finds it already decided;
the events carry ids derived from what they say, so copies of one collapse.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import orjson
from pydantic import TypeAdapter

from .. import freshness as arithmetic
from ..definitions import App
from ..events import Event, FreshnessData, FreshnessRecovered, FreshnessViolated
from ..partitions import Partitioning

SEP = "\x00"
PolicyKind = Literal["deadline", "max_age"]


@dataclass(frozen=True)
class Policy:
    """One subject's policy, as the App declares it."""

    subject: str
    kind: Literal["dataset", "task"]
    name: str
    partitions: Partitioning
    deadline: str | None
    max_age_s: float | None
    pipeline: str | None = None


@dataclass(slots=True)
class Violation:
    policy: PolicyKind
    partition: str
    expected_by: float
    since: float
    newest_version: int | None = None


@dataclass(slots=True)
class FreshnessState:
    """What judging a subject needs: when it started being judged, the next deadline tick,
    the newest version (or success) and when it came, arrivals of partitions not yet judged,
    and the violations open."""

    started: float
    next_deadline: float | None = None
    newest_version: int | None = None
    newest_at: float | None = None
    #: Newest partition a deadline tick judged; arrivals at or before it are not kept.
    judged: str | None = None
    arrived: dict[str, int] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)


_state = TypeAdapter(FreshnessState)


def dump(state: FreshnessState) -> bytes:
    return orjson.dumps(state)


def load(raw: bytes) -> FreshnessState:
    return _state.validate_json(raw)


def dataset_subject(dataset: str) -> str:
    return f"d{SEP}{dataset}"


def task_subject(pipeline: str, task: str) -> str:
    return f"t{SEP}{pipeline}{SEP}{task}"


def timer_key(subject: str) -> str:
    """The wake of a subject; a leading NUL keeps it apart from every pipeline's."""
    return SEP + subject


def is_timer(key: str) -> bool:
    return key.startswith(SEP)


def of_dataset(key: str) -> bool:
    """Whether a timer (or subject) is a dataset's, whose `owner_of` is a dataset name."""
    subject = key[1:] if is_timer(key) else key
    return subject.startswith("d" + SEP)


def owner_of(key: str) -> str:
    """Whose state a timer's (or a subject's) lives with: the pipeline for a pipeline's timer
    or a task's subject, the dataset for a dataset's (on Kafka, in its home's stream task:
    `TaskStates.owner_task`)."""
    subject = key[1:] if is_timer(key) else key
    kind, _, rest = subject.partition(SEP)
    if kind not in ("d", "t") or not rest:
        return key
    return rest.partition(SEP)[0]


def policies(app: App) -> dict[str, Policy]:
    """Every subject of the App with its policy."""
    found: dict[str, Policy] = {}
    for ds in app.datasets.values():
        if ds.freshness is not None:
            subject = dataset_subject(ds.name)
            found[subject] = Policy(
                subject,
                "dataset",
                ds.name,
                ds.partitions,
                ds.freshness.deadline,
                ds.freshness.max_age_s,
            )
    for task in app.tasks.values():
        if task.deadline is not None:
            subject = task_subject(task.pipeline, task.name)
            found[subject] = Policy(
                subject,
                "task",
                task.name,
                task.partitioning,
                task.deadline,
                None,
                pipeline=task.pipeline,
            )
    return found


class Freshness:
    """The decisions; state is passed in and changed in place, events come out."""

    def __init__(self, app: App, *, source: str = "eventflow") -> None:
        self.policies = policies(app)
        self.source = source

    def start(self, policy: Policy, now: float) -> FreshnessState:
        """A subject judged from `now` on: its first deadline is the next tick."""
        nxt = arithmetic.next_tick(policy.deadline, now) if policy.deadline else None
        return FreshnessState(started=now, next_deadline=nxt)

    def next_wake(self, policy: Policy, st: FreshnessState | None) -> float | None:
        """When to judge again; a subject with no state yet is started at once."""
        if st is None:
            return 0.0
        wakes: list[float] = []
        if st.next_deadline is not None:
            wakes.append(st.next_deadline)
        if policy.max_age_s is not None and not any(v.policy == "max_age" for v in st.violations):
            wakes.append((st.newest_at or st.started) + policy.max_age_s)
        return min(wakes) if wakes else None

    def on_arrival(
        self, policy: Policy, st: FreshnessState, partition: str, version: int, now: float
    ) -> list[Event]:
        """A version accepted (a dataset's) or a run succeeded (a task's): violations it
        ends are recovered, once."""
        if st.newest_version is None or version >= st.newest_version:
            st.newest_version = version
        st.newest_at = now
        timed = policy.deadline is not None and policy.partitions.period is not None
        if timed and (st.judged is None or partition > st.judged):
            st.arrived[partition] = version
        out: list[Event] = []
        kept: list[Violation] = []
        for v in st.violations:
            ends = v.policy == "max_age" or v.partition == partition
            if ends:
                v.newest_version = version
                out.append(self._event(FreshnessRecovered, policy, v, now, partition))
            else:
                kept.append(v)
        st.violations = kept
        return out

    def tick(self, policy: Policy, st: FreshnessState, now: float) -> list[Event]:
        """Judge every deadline tick due by `now` (the last `CATCH_UP` of them) and the age."""
        out: list[Event] = []
        cron = policy.deadline
        if cron is not None and st.next_deadline is not None and st.next_deadline <= now:
            due = [st.next_deadline, *arithmetic.ticks_between(cron, st.next_deadline, now)]
            for at in due[-arithmetic.CATCH_UP :]:
                out += self._judge(policy, st, at, now)
            st.next_deadline = arithmetic.next_tick(cron, now)
        limit = policy.max_age_s
        if limit is not None and not any(v.policy == "max_age" for v in st.violations):
            expected = (st.newest_at or st.started) + limit
            if expected <= now:
                v = Violation("max_age", "", expected, now, st.newest_version)
                st.violations.append(v)
                out.append(self._event(FreshnessViolated, policy, v, now, ""))
        return out

    def _judge(self, policy: Policy, st: FreshnessState, at: float, now: float) -> list[Event]:
        if policy.partitions.period is None:
            key = policy.partitions.key_for(datetime.fromtimestamp(at, UTC))
            assert policy.deadline is not None
            met = st.newest_at is not None and st.newest_at > arithmetic.previous_tick(
                policy.deadline, at
            )
        else:
            key = arithmetic.expected_partition(policy.partitions, at)
            if st.judged is not None and key <= st.judged:
                return []  # judged at an earlier tick (arrivals before it are not kept)
            met = key in st.arrived
            st.judged = key if st.judged is None or key > st.judged else st.judged
            st.arrived = {k: v for k, v in st.arrived.items() if k > st.judged}
        if met or any(v.policy == "deadline" and v.partition == key for v in st.violations):
            return []
        v = Violation("deadline", key, at, now, st.newest_version)
        st.violations.append(v)
        return [self._event(FreshnessViolated, policy, v, now, key)]

    def _event(
        self,
        kind: type[FreshnessViolated] | type[FreshnessRecovered],
        policy: Policy,
        v: Violation,
        now: float,
        partition: str,
    ) -> Event:
        what = policy.name if policy.kind == "dataset" else f"task {policy.name!r}"
        where = f" partition {v.partition}" if v.partition else ""
        due = arithmetic.since_text(v.expected_by)
        if kind is FreshnessViolated:
            if v.policy == "deadline":
                message = f"{what}{where} has no {_word(policy)} by its deadline {due}"
            else:
                message = f"{what} has had no new {_word(policy)} since before {due}"
        else:
            message = (
                f"{what}{where} is fresh again (the {_word(policy)} of {partition or 'it'} came)"
            )
        data = FreshnessData(
            kind=policy.kind,
            name=policy.name,
            pipeline=policy.pipeline,
            partition=v.partition,
            policy=v.policy,
            expected_by=datetime.fromtimestamp(v.expected_by, UTC),
            since=datetime.fromtimestamp(v.since, UTC),
            newest_version=v.newest_version if policy.kind == "dataset" else None,
            message=message,
        )
        canonical = f"{kind.event_type}|{policy.subject}|{v.partition}|{v.policy}|{v.expected_by}"
        digest = hashlib.blake2b(canonical.encode(), digest_size=12).hexdigest()
        return kind.of(
            data,
            id=f"freshness-{digest}",
            source=self.source,
            time=datetime.fromtimestamp(now, UTC),
        )


def _word(policy: Policy) -> str:
    return "version" if policy.kind == "dataset" else "successful run"
