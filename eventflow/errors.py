"""The exception tree of eventflow.

    EventflowError
    ├── ConfigurationError      settings or command-line values that cannot work
    ├── DefinitionError         a pipeline definition that fails to load (names the task), or a
    │                           body acting against it (emitting an undeclared output)
    ├── EventError              bytes or values that are not a valid event (carries `reason`)
    │   └── MetadataTooLarge    dataset metadata over the configured limit
    ├── BrokerError             the bus or broker failed; `retriable` says whether to try again
    │   └── NotRunning          no running instance answers at the given address
    ├── StorageError            the state store failed
    └── DbtError                dbt ended without saying which node failed (`eventflow.dbt`)

Control flow for task bodies (not errors):

    Skip                        a task chose to emit none of its outputs
    Fail                        a task chose to fail its run; no retry
"""

from __future__ import annotations


class EventflowError(Exception):
    """Base class of every error eventflow raises on purpose."""

    retriable: bool = False


class ConfigurationError(EventflowError):
    """A setting or command-line value that cannot work."""


class DefinitionError(EventflowError):
    """A pipeline definition that cannot be loaded, or a body breaking it at run time (emitting an
    output it does not declare, which fails the run without a retry); the message names the task
    and the problem."""


class EventError(EventflowError):
    """Input that is not a valid event; `reason` is what a dead letter records."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MetadataTooLarge(EventError):
    """Dataset metadata above the limit: events carry paths and counts, never data."""


class BrokerError(EventflowError):
    """The bus failed; retry loops read `retriable`."""

    def __init__(self, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


class NotRunning(BrokerError):
    """Nothing listens at the address a client was given."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=False)


class StorageError(EventflowError):
    """The state store could not read or write."""


class DbtError(EventflowError):
    """dbt ended in error before reporting its nodes (no `run_results.json`): a profile it
    cannot connect with, a project it cannot parse. Retried as the task's policy says, since
    a warehouse that was away may be back; a node that failed is a `Fail` instead."""

    retriable = True


class Skip(Exception):
    """Raised by a task body to finish without emitting any output; downstream is skipped."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class Fail(Exception):
    """Raised by a task body to fail its run at once: no retry, downstream is upstream_failed.

    For failures no retry can fix (bad input data, a broken contract); any other exception is
    taken as transient and retried as the task's policy says.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
