"""Prometheus metrics of the coordinator and workers, served over HTTP when a port is set.

They answer the operator's first questions: is the coordinator keeping up (events decided, time
spent deciding and committing per step, consumer lag on Kafka), and are tasks succeeding (runs by
outcome); and whether group membership is stable (assignments) and what a coordinator owns and
restores.
"""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from .errors import ConfigurationError
from .settings import Settings

EVENTS = Counter(
    "eventflow_events_decided", "Events the coordinator applied to its state, by type.", ["type"]
)
DEAD_LETTERS = Counter("eventflow_dead_letters", "Events refused to the dead-letter log or topic.")
STEP = Histogram(
    "eventflow_coordinator_step_seconds",
    "One coordinator step over a batch of events: `decide` (in memory) and `commit` (the SQLite "
    "transaction, or the Kafka sends and transaction commit).",
    ["phase"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)
TASK_RUNS = Counter(
    "eventflow_task_runs", "Task attempts a worker finished, by outcome.", ["outcome"]
)
LAG = Gauge(
    "eventflow_consumer_lag",
    "Kafka services: records not yet processed, read about once a second (a coordinator's unread "
    "input records; a worker's unread, running and unreported requests); -1 while restoring or "
    "when the broker did not answer.",
)
ASSIGNMENTS = Counter(
    "eventflow_group_assignments",
    "Partition assignments the service's consumer-group member received, one per group "
    "generation it joined: a rise without a member joining or leaving means it was expelled.",
)
STREAM_TASKS = Gauge(
    "eventflow_coordinator_stream_tasks",
    "Stream tasks of this coordinator: `owned` (processing) and `restoring`.",
    ["state"],
)
HISTORY_LAG = Gauge(
    "eventflow_history_lag",
    "Kafka mode: records of the event topics the history projector has not yet stored, read "
    "about once a second; -1 when the broker did not answer.",
)
RESTORED = Counter("eventflow_coordinator_restored_records", "Changelog records read by restores.")

DECIDE = STEP.labels("decide")
COMMIT = STEP.labels("commit")


def count(types: Tally[str]) -> None:
    """Add one step's events by type (one label lookup per type, not per event)."""
    for kind, n in types.items():
        EVENTS.labels(kind).inc(n)


def serve(settings: Settings) -> None:
    """Serve /metrics from a background thread if `metrics_port` is set."""
    if settings.metrics_port is None:
        return
    try:
        start_http_server(settings.metrics_port, addr=settings.metrics_address)
    except OSError as e:
        raise ConfigurationError(
            f"cannot serve metrics on {settings.metrics_address}:{settings.metrics_port}: "
            f"{e.strerror or e}"
        ) from None
