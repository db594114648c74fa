"""eventflow: data-aware pipeline orchestration where the event is the trigger."""

import typing

from . import lazy
from .alerts import Alert
from .clients import Publisher, Subscriber, publish
from .context import CheckContext, Input, Inputs, Item, TaskContext, TaskInfo
from .definitions import (
    App,
    Check,
    Dataset,
    FanOut,
    Pipeline,
    Pool,
    Retry,
    Schedule,
    Task,
    check,
)
from .errors import (
    BrokerError,
    ConfigurationError,
    DefinitionError,
    EventError,
    EventflowError,
    Fail,
    MetadataTooLarge,
    NotRunning,
    Skip,
    StorageError,
)
from .events import (
    BackfillPlan,
    CheckCompleted,
    CheckCompletedData,
    DatasetProduced,
    DatasetProducedData,
    DatasetVersion,
    DeadLetter,
    DeadLetterData,
    Event,
    FreshnessData,
    FreshnessRecovered,
    FreshnessViolated,
    Payload,
    PipelineRunData,
    PipelineRunFailed,
    PipelineRunStarted,
    PipelineRunSucceeded,
    TaskFailed,
    TaskFailedData,
    TaskOutcome,
    TaskStarted,
    TaskSucceeded,
    TaskSucceededData,
)
from .freshness import Freshness
from .loader import load_app
from .openlineage import LineageMapping
from .partitions import daily, dynamic, hourly, static
from .settings import Settings
from .subscriptions import Position
from .summary import run_summary

if typing.TYPE_CHECKING:
    from .embedded import EmbeddedRuntime

__all__ = [
    "Alert",
    "App",
    "BackfillPlan",
    "BrokerError",
    "Check",
    "CheckCompleted",
    "CheckCompletedData",
    "CheckContext",
    "ConfigurationError",
    "Dataset",
    "DatasetProduced",
    "DatasetProducedData",
    "DatasetVersion",
    "DeadLetter",
    "DeadLetterData",
    "DefinitionError",
    "EmbeddedRuntime",
    "Event",
    "EventError",
    "EventflowError",
    "Fail",
    "FanOut",
    "Freshness",
    "FreshnessData",
    "FreshnessRecovered",
    "FreshnessViolated",
    "Input",
    "Inputs",
    "Item",
    "LineageMapping",
    "MetadataTooLarge",
    "NotRunning",
    "Payload",
    "Pipeline",
    "PipelineRunData",
    "PipelineRunFailed",
    "PipelineRunStarted",
    "PipelineRunSucceeded",
    "Pool",
    "Position",
    "Publisher",
    "Retry",
    "Schedule",
    "Settings",
    "Skip",
    "StorageError",
    "Subscriber",
    "Task",
    "TaskContext",
    "TaskFailed",
    "TaskFailedData",
    "TaskInfo",
    "TaskOutcome",
    "TaskStarted",
    "TaskSucceeded",
    "TaskSucceededData",
    "check",
    "daily",
    "dynamic",
    "hourly",
    "load_app",
    "publish",
    "run_summary",
    "static",
]
# The runtime brings the history store and SQLAlchemy with it: loaded when first used.
lazy.exports(globals(), {"EmbeddedRuntime": ".embedded.runtime"})
