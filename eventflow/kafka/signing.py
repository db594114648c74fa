"""Who may write eventflow's own events on Kafka: the holders of the signing key.

Outside systems announce datasets; task, check, pool, run and routed events come only from
eventflow's services. On Kafka anyone with write access to a topic could produce such an event,
and run ids are derived from public facts, so every record a service produces carries an
HMAC-SHA256 of its topic (without prefix) and value, keyed by `Settings.signing_key`, in the
`eventflow-signature` header. Every consumer verifies it and dead-letters an internal event that
lacks a valid one. Binding the topic stops a signed event from being replayed onto another topic;
a replay onto the same topic is harmless because decisions ignore repeats. Topic ACLs (see
docs/operations.md) keep outside principals off the internal topics in the first place.

An echo (an event a coordinator step decided itself, published for the record) also carries
`eventflow-decided`, an HMAC of the same value under another label: the stream task reading it
back skips it, and nobody without the signing key (eventflow's services and operator tools hold
it) can make a record be skipped.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from ..errors import ConfigurationError, EventError
from ..events import Event, is_external
from ..settings import Settings

HEADER = "eventflow-signature"
DECIDED = "eventflow-decided"
Headers = list[tuple[str, bytes]]


class Signer:
    """Signs what a service produces and checks what it consumes. Without a key (a subscriber
    that only reads outcomes) nothing is signed and nothing checked: topic ACLs must do it."""

    def __init__(self, key: bytes | None) -> None:
        self._key = key

    @classmethod
    def of(cls, settings: Settings, *, required_by: str | None = None) -> Signer:
        """The settings' key; `required_by` names a service that cannot run without one."""
        key = settings.signing_key
        if key is None and required_by is not None:
            raise ConfigurationError(
                f"{required_by} needs EVENTFLOW_SIGNING_KEY (32+ characters, the same for every "
                "coordinator, worker and operator tool) to sign and verify eventflow's events"
            )
        return cls(key.get_secret_value().encode() if key is not None else None)

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def headers(self, topic: str, value: bytes) -> Headers:
        """Headers of a record produced to `topic` (unprefixed name)."""
        if self._key is None:
            return []
        return [(HEADER, self._mac(topic, value))]

    def echo_headers(self, topic: str, value: bytes) -> Headers:
        """Headers of an echo produced to `topic`: signed, and marked as decided."""
        assert self._key is not None, "a coordinator, which echoes, always has a key"
        return [(HEADER, self._mac(topic, value)), (DECIDED, self._mac(f"decided:{topic}", value))]

    def decided(self, topic: str, value: bytes, headers: Sequence[tuple[str, bytes]]) -> bool:
        """Whether a record is an echo a coordinator wrote (a mark without the key is not)."""
        if self._key is None:
            return False
        marks = [mark for name, mark in headers if name == DECIDED]
        if not marks:
            return False
        expected = self._mac(f"decided:{topic}", value)
        return any(hmac.compare_digest(mark, expected) for mark in marks)

    def verify(self, topic: str, value: bytes, headers: Sequence[tuple[str, bytes]]) -> bool:
        if self._key is None:
            return True
        expected = self._mac(topic, value)
        return any(name == HEADER and hmac.compare_digest(sig, expected) for name, sig in headers)

    def check(
        self, topic: str, event: Event, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        """Raise `EventError` for an internal event without a valid signature."""
        if is_external(event) or self.verify(topic, value, headers):
            return
        raise EventError(
            f"{event.type} on {topic} without a valid signature: only eventflow's services "
            "(holding the signing key) may emit it"
        )

    def _mac(self, topic: str, value: bytes) -> bytes:
        assert self._key is not None
        return hmac.new(self._key, topic.encode() + b"\x00" + value, hashlib.sha256).digest()
