"""What became of an announcement: publish it and follow the decisions it gets.

The router and then each consuming pipeline publish a decision note (`eventflow.decision`) tied
to the announcement by its correlation; a refusal is a dead letter. `announce` subscribes before
it publishes, so it cannot miss them, and waits until every stage has spoken or `timeout`
passes. Used by `eventflow emit`, on a dev instance (its control socket) and on Kafka alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import orjson

from .embedded.control import ControlClient
from .events import DeadLetter, Decided, DecisionData, Event
from .settings import Settings


@dataclass
class Fate:
    """The answer for one announcement."""

    id: str
    dead_letter: str | None = None
    #: The router's note, then each pipeline's, as they came.
    notes: list[DecisionData] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Refused, or decided by the router and by every pipeline it was routed to."""
        if self.dead_letter is not None:
            return True
        router = next((n for n in self.notes if n.stage == "router"), None)
        if router is None:
            return False
        answered = {n.pipeline for n in self.notes if n.stage == "pipeline"}
        return set(router.pipelines) <= answered

    @property
    def triggered(self) -> bool:
        return any(n.outcome == "triggered" for n in self.notes)

    @property
    def pending(self) -> bool:
        """Held for checks: the pipelines decide once the checks have reported."""
        return any(n.outcome == "held" for n in self.notes)

    def lines(self) -> list[str]:
        """The decisions, one line each: `router: ...`, then `PIPELINE: ...`."""
        if self.dead_letter is not None:
            return [f"dead-lettered: {self.dead_letter}"]
        return [f"{n.pipeline or n.stage}: {n.detail}" for n in self.notes]


async def announce(settings: Settings, raw: bytes, key: str | None, timeout: float) -> Fate:
    """Publish `raw` (a CloudEvent, keyed by `key` on Kafka) and follow what becomes of it."""
    try:
        envelope = orjson.loads(raw)
        sent_id = str(envelope.get("id", ""))
        correlation = str(envelope.get("correlationid") or sent_id)
    except (orjson.JSONDecodeError, AttributeError):
        sent_id = correlation = ""  # not an event: it can only be refused
    fate = Fate(sent_id)
    digest = hashlib.sha256(raw).hexdigest()
    async with contextlib.AsyncExitStack() as stack:
        if settings.kafka_bootstrap:
            events = await _kafka(settings, raw, key, stack)
        else:
            events, refused = await _dev(settings, raw, stack)
            if refused is not None:
                fate.dead_letter = refused
                return fate
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                async for event in events:
                    if isinstance(event, DeadLetter) and event.data.sha256 == digest:
                        fate.dead_letter = event.data.reason
                    elif isinstance(event, Decided) and event.data.correlation == correlation:
                        fate.notes.append(event.data)
                    if fate.complete:
                        break
    return fate


async def _dev(
    settings: Settings, raw: bytes, stack: contextlib.AsyncExitStack
) -> tuple[AsyncIterator[Event], str | None]:
    watcher = await stack.enter_async_context(ControlClient(settings.control_socket))
    events = await watcher.watch()
    publisher = await stack.enter_async_context(ControlClient(settings.control_socket))
    reply = await publisher.publish_raw(raw)
    if not reply.get("ok", False) and not reply.get("dead_letter"):
        from .errors import BrokerError

        raise BrokerError(f"not published: {reply.get('error', 'no reason given')}")
    return events, reply.get("dead_letter")


async def _kafka(
    settings: Settings, raw: bytes, key: str | None, stack: contextlib.AsyncExitStack
) -> AsyncIterator[Event]:
    from .kafka.clients import KafkaPublisher, KafkaSubscriber

    reader = KafkaSubscriber(settings, topic=["eventflow.decisions", "eventflow.deadletter"])
    await reader.start()  # positioned at the end: whatever comes after is in it
    stack.push_async_callback(reader.stop)
    publisher = KafkaPublisher(settings)
    await publisher.start()
    stack.push_async_callback(publisher.stop)
    await publisher.send(raw, key)
    return reader.events()
