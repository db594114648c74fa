"""`eventflow.testing`'s harnesses, plus what only our trust-boundary scenarios need: sending an
event as an outsider would (`forge`) or as one of eventflow's own services would (`inject`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import eventflow as ef
from eventflow import testing
from eventflow.embedded.control import control_allows
from eventflow.events import Event, encode


@dataclass
class Recorder:
    """What task bodies did, in order; thread-safe because blocking bodies run in threads."""

    calls: list[tuple[str, str, dict[str, int]]] = field(default_factory=list)
    active: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self, ctx: ef.TaskContext, group: str = "") -> None:
        with self.lock:
            versions = {name: i.version for name, i in ctx.inputs.items()}
            self.calls.append((ctx.task.name, ctx.partition, versions))
            if group:
                self.active[group] = self.active.get(group, 0) + 1
                self.peak[group] = max(self.peak.get(group, 0), self.active[group])

    def leave(self, group: str) -> None:
        with self.lock:
            self.active[group] -= 1

    def tasks(self) -> list[str]:
        return [task for task, _, _ in self.calls]


class EmbeddedHarness(testing.EmbeddedHarness):
    async def forge(self, event: Event) -> bytes:
        """Send `event` over the control socket's door; returns the bytes sent."""
        raw = encode(event)
        await self.runtime.publish_raw(raw, origin="control", allowed=control_allows)
        return raw

    async def inject(self, event: Event) -> None:
        """Send `event` as eventflow's own workers do (trusted)."""
        await self.runtime.publish(event)


class KafkaHarness(testing.KafkaHarness):
    async def forge(self, event: Event) -> bytes:
        """Send `event` unsigned onto the topic it belongs on; returns the bytes sent."""
        raw = encode(event)
        await self._produce(event, raw, signed=False)
        return raw

    async def inject(self, event: Event) -> None:
        """Send `event` signed, as eventflow's own services do."""
        await self._produce(event, encode(event), signed=True)

    async def _produce(self, event: Event, raw: bytes, *, signed: bool) -> None:
        from aiokafka import AIOKafkaProducer

        from eventflow.kafka.config import KafkaConfig
        from eventflow.kafka.signing import Signer
        from eventflow.topics import destination

        topic, key = destination(event)
        headers = Signer.of(self.settings).headers(topic, raw) if signed else []
        producer = AIOKafkaProducer(**KafkaConfig(self.settings).client())
        await producer.start()
        try:
            await producer.send_and_wait(
                self.settings.topic_prefix + topic, raw, key=key.encode() or None, headers=headers
            )
        finally:
            await producer.stop()


Harness = EmbeddedHarness | KafkaHarness
