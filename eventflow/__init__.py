"""eventflow: data-aware pipeline orchestration where the event is the trigger."""

from .clients import Publisher, Subscriber, publish
from .context import CheckContext, Input, TaskContext
from .definitions import App, Check, Dataset, Pipeline, Pool, Retry, Schedule, Task, check
from .embedded import EmbeddedRuntime
from .errors import (
    BrokerError,
    ConfigurationError,
    DefinitionError,
    EventError,
    EventflowError,
    MetadataTooLarge,
    NotRunning,
    Skip,
    StorageError,
)
from .loader import load_app
from .partitions import daily, hourly, static
from .settings import Settings

__all__ = [
    "App",
    "BrokerError",
    "Check",
    "CheckContext",
    "ConfigurationError",
    "Dataset",
    "DefinitionError",
    "EmbeddedRuntime",
    "EventError",
    "EventflowError",
    "Input",
    "MetadataTooLarge",
    "NotRunning",
    "Pipeline",
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
    "check",
    "daily",
    "hourly",
    "load_app",
    "publish",
    "static",
]
