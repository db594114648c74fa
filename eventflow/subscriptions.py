"""What a subscriber asks for, the same in both modes: which events (kinds and filters), where
to start (live, a durable name, a replay) and where to stop (`until="now"`).

Kinds name event types, so an event type added later is subscribable by its type (or a prefix
of it) without a change here; `KINDS` only gives the common ones short names. Filters read the
fields an event's payload carries, so they apply to new payloads that carry the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from .errors import ConfigurationError
from .events import (
    BY_TYPE,
    CheckCompleted,
    DatasetProduced,
    DeadLetter,
    Event,
    FreshnessRecovered,
    FreshnessViolated,
    PipelineRunFailed,
    PipelineRunStarted,
    PipelineRunSucceeded,
    TaskFailed,
    TaskSucceeded,
)

#: Short names of what a subscriber may ask for, each the event types it stands for. Any event
#: type (or a dotted prefix of types, such as `eventflow.task`) is a kind too.
KINDS: dict[str, tuple[str, ...]] = {
    "run": tuple(
        c.event_type for c in (PipelineRunStarted, PipelineRunSucceeded, PipelineRunFailed)
    ),
    "task": (TaskSucceeded.event_type, TaskFailed.event_type),
    "check": (CheckCompleted.event_type,),
    "dataset": (DatasetProduced.event_type,),
    "deadletter": (DeadLetter.event_type,),
    "freshness": (FreshnessViolated.event_type, FreshnessRecovered.event_type),
}

#: Where a subscription stands: the next offset to read per stream (`"log"` in embedded mode,
#: `"topic/partition"` on Kafka). `Subscriber.position` gives one back to start from later.
Position = dict[str, int]


def event_types(kinds: tuple[str, ...]) -> frozenset[str]:
    """The event types `kinds` stand for; an unknown kind is a `ConfigurationError` naming the
    short names and saying that event types are accepted."""
    types: set[str] = set()
    for kind in kinds:
        if kind in KINDS:
            types.update(KINDS[kind])
            continue
        found = {t for t in BY_TYPE if t == kind or t.startswith(kind + ".")}
        if not found:
            raise ConfigurationError(
                f"unknown kind {kind!r}: one of {', '.join(sorted(KINDS))}, or an event type "
                "(such as eventflow.task.started) or a prefix of event types"
            )
        types.update(found)
    return frozenset(types)


def facts(event: Event) -> dict[str, str]:
    """What filters read from an event: its pipeline, dataset (a freshness event's, if of a
    dataset), partition and status, where its payload says. A status is the payload's own, or
    for checks `passed`/`failed`, or the last word of the type (`eventflow.task.failed` is
    `failed`)."""
    data = event.data
    found: dict[str, str] = {}
    target = getattr(data, "target", None)
    for name in ("pipeline", "dataset", "partition"):
        value = getattr(data, name, None)
        if value is None and target is not None:
            value = getattr(target, name, None)
        if isinstance(value, str):
            found[name] = value
    if "dataset" not in found and getattr(data, "kind", None) == "dataset":
        subject = getattr(data, "name", None)  # a dataset's freshness names it `name`
        if isinstance(subject, str):
            found["dataset"] = subject
    status = getattr(data, "status", None)
    if isinstance(status, str):
        found["status"] = status
    elif isinstance(passed := getattr(data, "passed", None), bool):
        found["status"] = "passed" if passed else "failed"
    else:
        found["status"] = event.type.rsplit(".", 1)[-1]
    return found


@dataclass(frozen=True)
class Selection:
    """Which events a subscriber receives. An empty filter lets every value through; a given
    one keeps only events whose payload carries that field with one of its values (so
    `pipelines=` drops dataset versions, which name no pipeline)."""

    kinds: tuple[str, ...] = ("run",)
    pipelines: frozenset[str] = frozenset()
    datasets: frozenset[str] = frozenset()
    partitions: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()
    types: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "types", event_types(self.kinds))

    def wants(self, event: Event) -> bool:
        if event.type not in self.types:
            return False
        have = facts(event)
        for name, wanted in (
            ("pipeline", self.pipelines),
            ("dataset", self.datasets),
            ("partition", self.partitions),
            ("status", self.statuses),
        ):
            if wanted and have.get(name) not in wanted:
                return False
        return True


@dataclass(frozen=True)
class Start:
    """Where a subscription starts and stops. `name` makes it durable: it resumes after the
    last event it handled (a consumer group on Kafka, a stored position in embedded mode), or,
    the first time, at the end of the log, or at its beginning with `from_beginning`. Without a
    name it starts at the end, or replays `from_beginning`, `since` a time, or from a
    `position`. `until="now"` ends the iteration once it has caught up with the log as it was
    when the subscriber started."""

    name: str | None = None
    from_beginning: bool = False
    since: datetime | None = None
    position: Position | None = None
    until: Literal["now"] | None = None

    def __post_init__(self) -> None:
        starts = [n for n, v in self.replays().items() if v]
        if len(starts) > 1:
            raise ConfigurationError(f"choose one place to start, not {' and '.join(starts)}")
        if self.name is not None:
            if not self.name or len(self.name) > 200 or not self.name.isprintable():
                raise ConfigurationError(
                    f"a subscription name is 1-200 printable characters: {self.name!r}"
                )
            if self.since is not None or self.position is not None:
                raise ConfigurationError(
                    "a durable subscription (`name`) resumes where it left off: it takes "
                    "`from_beginning` for its first start, not `since` or `position`"
                )
        if self.since is not None and self.since.tzinfo is None:
            raise ConfigurationError("`since` needs a timezone (e.g. datetime.now(UTC))")
        if self.until not in (None, "now"):
            raise ConfigurationError(f'`until` is "now" or None, not {self.until!r}')

    def replays(self) -> dict[str, object]:
        return {
            "from_beginning": self.from_beginning,
            "since": self.since,
            "position": self.position,
        }
