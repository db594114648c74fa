"""The history store's tables, written once in SQLAlchemy Core for SQLite and PostgreSQL.

Every table but the alert deliveries is a projection of the event log, so any of them can be
emptied and rebuilt by replaying the events. Times are stored in UTC (`UtcDateTime`), strings
without NUL characters (`CleanText`: PostgreSQL refuses them in text), and JSON as JSON.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)


class UtcDateTime(TypeDecorator[datetime]):
    """An aware datetime in, an aware UTC datetime out, on both backends (SQLite keeps no zone,
    so values are turned to UTC before they are written: its text then sorts by time)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class CleanText(TypeDecorator[str]):
    """Text without NUL characters, which PostgreSQL cannot store (they become U+FFFD)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return value.replace("\x00", "\ufffd") if value is not None else None


#: Identifiers are short; SQLite ignores the length, PostgreSQL checks it.
Name = String(1000)
#: A 64-bit key that SQLite's rowid alias can number on its own.
Seq = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

events = Table(
    "history_events",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True, doc="Order of arrival in the store."),
    Column("id", Name, nullable=False, unique=True),
    Column("type", Name, nullable=False),
    Column("time", UtcDateTime, nullable=False),
    Column("subject", CleanText),
    Column("dataset", Name),
    Column("pipeline", Name),
    Column("partition", Name),
    Column("run_id", Name),
    Column("correlation", Name),
    Column("body", JSON, nullable=False),
)
Index("history_events_type", events.c.type, events.c.seq)
Index("history_events_dataset", events.c.dataset, events.c.seq)
Index("history_events_pipeline", events.c.pipeline, events.c.seq)
Index("history_events_time", events.c.time)

dataset_versions = Table(
    "history_dataset_versions",
    metadata,
    Column("dataset", Name, primary_key=True),
    Column("partition", Name, primary_key=True),
    Column("version", BigInteger, primary_key=True),
    Column("time", UtcDateTime, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("producer", Name),
)
Index("history_versions_producer", dataset_versions.c.producer)
Index("history_versions_time", dataset_versions.c.time)

pipeline_runs = Table(
    "history_pipeline_runs",
    metadata,
    Column("run_id", Name, primary_key=True),
    Column("pipeline", Name, nullable=False),
    Column("partition", Name, nullable=False),
    Column("status", String(20), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime),
    Column("reason", CleanText, nullable=False),
    Column("tasks", JSON, nullable=False),
)
Index("history_runs_started", pipeline_runs.c.started_at, pipeline_runs.c.run_id)
Index("history_runs_pipeline", pipeline_runs.c.pipeline, pipeline_runs.c.partition)

task_attempts = Table(
    "history_task_attempts",
    metadata,
    Column("run_id", Name, primary_key=True),
    Column("task", Name, nullable=False),
    Column("pipeline", Name, nullable=False),
    Column("partition", Name, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("pipeline_run_id", Name),
    Column("inputs", JSON, nullable=False),
    Column("requested_at", UtcDateTime),
    Column("started_at", UtcDateTime),
    Column("ended_at", UtcDateTime),
    Column("worker", CleanText),
    Column("status", String(20), nullable=False),
    Column("error", CleanText),
    Column("error_kind", String(20)),
    Column("outputs", JSON, nullable=False),
    Column("skipped", CleanText),
    Column("duration_ms", Float),
)
Index("history_attempts_task", task_attempts.c.pipeline, task_attempts.c.task)
Index("history_attempts_run", task_attempts.c.pipeline_run_id)

#: What each task attempt consumed, one row per input version, so "who consumed this version"
#: is an indexed lookup on both backends (no JSON containment queries).
attempt_inputs = Table(
    "history_attempt_inputs",
    metadata,
    Column("run_id", Name, primary_key=True),
    Column("dataset", Name, primary_key=True),
    Column("partition", Name, primary_key=True),
    Column("version", BigInteger, primary_key=True),
)
Index(
    "history_inputs_version",
    attempt_inputs.c.dataset,
    attempt_inputs.c.partition,
    attempt_inputs.c.version,
)

checks = Table(
    "history_checks",
    metadata,
    Column("run_id", Name, primary_key=True),
    Column("check", Name, nullable=False),
    Column("dataset", Name, nullable=False),
    Column("partition", Name, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("blocking", Boolean, nullable=False),
    Column("message", CleanText, nullable=False),
    Column("worker", CleanText, nullable=False),
    Column("time", UtcDateTime, nullable=False),
)
Index("history_checks_dataset", checks.c.dataset, checks.c.partition)

dead_letters = Table(
    "history_dead_letters",
    metadata,
    Column("id", Name, primary_key=True),
    Column("time", UtcDateTime, nullable=False),
    Column("reason", CleanText, nullable=False),
    Column("origin", CleanText, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("excerpt", CleanText, nullable=False),
    Column("truncated", Boolean, nullable=False),
)
Index("history_dead_letters_time", dead_letters.c.time)

task_logs = Table(
    "history_task_logs",
    metadata,
    Column("run_id", Name, primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("line", Integer, primary_key=True),
    Column("task", Name, nullable=False),
    Column("pipeline", Name, nullable=False),
    Column("partition", Name, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("time", UtcDateTime, nullable=False),
    Column("level", String(20), nullable=False),
    Column("message", CleanText, nullable=False),
    Column("truncated", Boolean, nullable=False),
)
Index("history_logs_time", task_logs.c.time)

#: One row per freshness violation, opened by `freshness.violated` and closed by
#: `freshness.recovered` (either may be stored first): open rows are what is late now.
freshness = Table(
    "history_freshness",
    metadata,
    Column("key", CleanText, primary_key=True),
    Column("kind", String(10), nullable=False),
    Column("name", Name, nullable=False),
    Column("pipeline", Name, nullable=True),
    Column("partition", Name, nullable=False),
    Column("policy", String(10), nullable=False),
    Column("expected_by", UtcDateTime, nullable=False),
    Column("violated_at", UtcDateTime, nullable=True),
    Column("newest_version", BigInteger, nullable=True),
    Column("message", CleanText, nullable=True),
    Column("recovered_at", UtcDateTime, nullable=True),
    Column("recovered_version", BigInteger, nullable=True),
)
Index("history_freshness_name", freshness.c.name, freshness.c.partition)
Index("history_freshness_open", freshness.c.recovered_at)

#: Where each projector stopped (a Kafka partition's next offset, the embedded log's last seq),
#: written in the transaction of the rows it projected.
positions = Table(
    "history_positions",
    metadata,
    Column("name", Name, primary_key=True),
    Column("position", BigInteger, nullable=False),
)

#: One row per alert delivery, (rule, event id): the alerts service's own record (the outbox its
#: deliverer works from, and what operators read), not a projection: a rebuild keeps it.
alert_deliveries = Table(
    "history_alert_deliveries",
    metadata,
    Column("rule", Name, primary_key=True),
    Column("event_id", Name, primary_key=True),
    Column("event_type", Name, nullable=False),
    Column("event_time", UtcDateTime, nullable=False),
    Column("pipeline", Name),
    Column("dataset", Name),
    Column("partition", Name),
    Column("target", CleanText, nullable=False, doc="The webhook as the API shows the rule's."),
    Column("body", CleanText, nullable=False, doc="The event, encoded: what is sent."),
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("status_code", Integer),
    Column("error", CleanText),
    Column("recorded_at", UtcDateTime, nullable=False),
    Column("last_attempt_at", UtcDateTime),
    Column("next_attempt_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
    Column("lease_owner", CleanText),
    Column("lease_until", UtcDateTime),
)
Index("history_alerts_due", alert_deliveries.c.state, alert_deliveries.c.next_attempt_at)
Index("history_alerts_recorded", alert_deliveries.c.recorded_at)

#: Emptied by a rebuild, children first.
TABLES: tuple[Table, ...] = (
    attempt_inputs,
    task_logs,
    checks,
    freshness,
    dead_letters,
    task_attempts,
    pipeline_runs,
    dataset_versions,
    events,
    positions,
)
