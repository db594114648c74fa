"""What a runtime plugs into the shared step: where its outcome becomes durable, and where
messages go once it is.

The embedded runtime adapts both to one process: a SQLite file (`embedded.store.Store`) and its
own workers. The Kafka coordinator's state log is a transaction per stream task that also is its
bus: the messages, the changelog records and the input offsets commit together.
"""

from __future__ import annotations

from typing import Protocol

from ..core.codec import Record
from .step import Message, Outcome


class StateLog(Protocol):
    async def commit(self, outcome: Outcome, records: list[Record]) -> None:
        """Make a step's events and the state records it changed durable together, or raise
        (`StorageError`, `BrokerError`) having made none of it durable."""


class Bus(Protocol):
    def deliver(self, messages: list[Message]) -> None:
        """Hand committed messages to their destination (`Message` names the topic)."""
