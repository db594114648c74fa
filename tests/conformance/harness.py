"""`eventflow.testing`'s harnesses, plus what only our trust-boundary scenarios need: sending an
event as an outsider would (`forge`) or as one of eventflow's own services would (`inject`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import eventflow as ef
from eventflow import testing
from eventflow.embedded.control import ControlServer, control_allows
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
    """With the control socket of `eventflow dev`, which `ef.Subscriber` and `ef.Publisher`
    (in this process or another, given `env()`) talk to."""

    control: ControlServer | None = None

    async def start(self) -> None:
        await super().start()
        if self.control is None:
            self.control = ControlServer(self.runtime, self.settings.control_socket)
            await self.control.start()

    async def _stop_runtime(self) -> None:
        if self.control is not None:
            await self.control.stop()
            self.control = None
        await super()._stop_runtime()

    def env(self) -> dict[str, str]:
        """What a process of its own needs to reach this instance."""
        return {"EVENTFLOW_HOME": str(self.settings.home)}

    async def forge(self, event: Event) -> bytes:
        """Send `event` over the control socket's door; returns the bytes sent."""
        raw = encode(event)
        await self.runtime.publish_raw(raw, origin="control", allowed=control_allows)
        return raw

    async def inject(self, event: Event) -> None:
        """Send `event` as eventflow's own workers do (trusted)."""
        await self.runtime.publish(event)


class KafkaHarness(testing.KafkaHarness):
    def env(self) -> dict[str, str]:
        """What a process of its own needs to reach this broker, under this test's prefix."""
        key = self.settings.signing_key
        return {
            "EVENTFLOW_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap or "",
            "EVENTFLOW_TOPIC_PREFIX": self.settings.topic_prefix,
            **({"EVENTFLOW_SIGNING_KEY": key.get_secret_value()} if key is not None else {}),
        }

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
