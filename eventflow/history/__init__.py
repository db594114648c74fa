"""The history store: a projection of the event log that answers an operator's questions (runs,
attempts, freshness, lineage, checks, dead letters, events, task logs), on SQLite or PostgreSQL.

The projectors that feed it live with their runtimes (`embedded.history`, `kafka.history`).
"""

import typing

from .. import lazy
from .models import (
    CheckOutcome,
    Consumer,
    DatasetVersionRecord,
    DeadLetterRecord,
    EventRecord,
    Freshness,
    FreshnessViolation,
    GridCell,
    GridRow,
    Lineage,
    LogLine,
    Page,
    PipelineRun,
    PipelineSummary,
    RunDetail,
    TaskAttempt,
    VersionRef,
)
from .projection import TASK_LOG, project

if typing.TYPE_CHECKING:
    from .alerts import AlertDelivery, DeliveryState
    from .store import HistoryStore

__all__ = [
    "TASK_LOG",
    "AlertDelivery",
    "CheckOutcome",
    "Consumer",
    "DatasetVersionRecord",
    "DeadLetterRecord",
    "DeliveryState",
    "EventRecord",
    "Freshness",
    "FreshnessViolation",
    "GridCell",
    "GridRow",
    "HistoryStore",
    "Lineage",
    "LogLine",
    "Page",
    "PipelineRun",
    "PipelineSummary",
    "RunDetail",
    "TaskAttempt",
    "VersionRef",
    "project",
]
# The store and the alerts' records are SQLAlchemy's: loaded when first used.
lazy.exports(
    globals(),
    {"AlertDelivery": ".alerts", "DeliveryState": ".alerts", "HistoryStore": ".store"},
)
