"""eventflow: data-aware pipeline orchestration where the event is the trigger."""

from .clients import Publisher, Subscriber, publish
from .context import CheckContext, Input, Inputs, TaskContext, TaskInfo
from .definitions import App, Check, Dataset, Pipeline, Pool, Retry, Schedule, Task, check
from .embedded import EmbeddedRuntime
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
from .events import CheckCompleted, DatasetProduced, Event, PipelineRunData, TaskStarted
from .freshness import Freshness
from .loader import load_app
from .partitions import daily, hourly, static
from .settings import Settings
from .summary import run_summary

__all__ = [
    "App",
    "BrokerError",
    "Check",
    "CheckCompleted",
    "CheckContext",
    "ConfigurationError",
    "Dataset",
    "DatasetProduced",
    "DefinitionError",
    "EmbeddedRuntime",
    "Event",
    "EventError",
    "EventflowError",
    "Fail",
    "Freshness",
    "Input",
    "Inputs",
    "MetadataTooLarge",
    "NotRunning",
    "Pipeline",
    "PipelineRunData",
    "Pool",
    "Publisher",
    "Retry",
    "Schedule",
    "Settings",
    "Skip",
    "StorageError",
    "Subscriber",
    "Task",
    "TaskContext",
    "TaskInfo",
    "TaskStarted",
    "check",
    "daily",
    "hourly",
    "load_app",
    "publish",
    "run_summary",
    "static",
]
