"""Coordinators and workers as real processes on a real broker, for fault tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from pydantic import SecretStr

import eventflow as ef
from eventflow.errors import EventError
from eventflow.events import Event, decode
from eventflow.kafka import admin
from eventflow.kafka.config import KafkaConfig
from eventflow.kafka.signing import Signer

#: The services' shared secret in tests (`EVENTFLOW_SIGNING_KEY`).
SIGNING_KEY = "test-signing-key-0123456789abcdef"

ALL_TOPICS = [
    "eventflow.datasets",
    "eventflow.pipeline-inputs",
    "eventflow.task-requests",
    "eventflow.task-events",
    "eventflow.pools",
    "eventflow.pipeline-runs",
    "eventflow.deadletter",
]


def wait_for(
    condition: Callable[[], bool],
    timeout: float = 60.0,
    what: str = "",
    explain: Callable[[], str] | None = None,
) -> None:
    """Until `condition()`; on timeout an AssertionError naming `what`, with `explain()`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    details = f"\n{explain()}" if explain is not None else ""
    raise AssertionError(f"timed out waiting for {what or condition}{details}")


class Service:
    def __init__(self, kind: str, app: Path, env: dict[str, str], folder: Path, n: int) -> None:
        self.kind = kind
        self.health = folder / f"{kind}-{n}.health"
        self.log = folder / f"{kind}-{n}.log"
        args = [
            sys.executable,
            "-m",
            "eventflow",
            kind,
            "--app",
            str(app),
            "--health-file",
            str(self.health),
        ]
        if kind == "worker":
            args += ["--concurrency", "4"]
        self.health.unlink(missing_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                args, env=env, stdout=log, stderr=log, start_new_session=True
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def up_or_gone(self) -> bool:
        """Healthy, or exited (for `ready` to report why)."""
        return self.health.exists() or self.proc.poll() is not None

    def owns(self) -> list[int]:
        try:
            state = orjson.loads(self.health.read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return []
        return list(state["owns"])

    def alive(self) -> bool:
        """Running; if it exited, an AssertionError with the end of its log says why."""
        if self.proc.poll() is None:
            return True
        raise AssertionError(
            f"{self.kind} {self.pid} exited with status {self.proc.returncode}:\n{self.tail()}"
        )

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def describe(self) -> str:
        """What the service reports of itself, for a test that waited in vain."""
        try:
            health = self.health.read_text()
            age = f"{time.time() - self.health.stat().st_mtime:.1f}s old"
        except FileNotFoundError:
            health, age = "none", ""
        return (
            f"{self.kind} {self.pid} (status {self.proc.poll()}): health {health} {age}\n"
            f"{self.tail(1500)}"
        )

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


class Cluster:
    """Services under a topic prefix of their own; `events()` reads back what was committed."""

    def __init__(self, bootstrap: str, app: Path, folder: Path) -> None:
        self.app = app
        self.folder = folder
        self.settings = ef.Settings(
            kafka_bootstrap=bootstrap,
            topic_prefix=f"f{uuid.uuid4().hex[:10]}.",
            kafka_session_timeout_ms=2000,
            signing_key=SecretStr(SIGNING_KEY),
        )
        clean = {k: v for k, v in os.environ.items() if not k.startswith("EVENTFLOW_")}
        self.env = {
            **clean,
            "EVENTFLOW_KAFKA_BOOTSTRAP": bootstrap,
            "EVENTFLOW_TOPIC_PREFIX": self.settings.topic_prefix,
            "EVENTFLOW_KAFKA_SESSION_TIMEOUT_MS": "2000",
            "EVENTFLOW_LOG_LEVEL": "INFO",
            "EVENTFLOW_SIGNING_KEY": SIGNING_KEY,
        }
        self.services: list[Service] = []
        asyncio.run(admin.apply(KafkaConfig(self.settings)))

    def start(self, kind: str) -> Service:
        service = Service(kind, self.app, self.env, self.folder, len(self.services))
        self.services.append(service)
        return service

    def ready(self, *services: Service, timeout: float = 60) -> None:
        for service in services:
            wait_for(service.up_or_gone, timeout, f"{service.kind} ready")
            assert service.proc.poll() is None, service.log.read_text()[-3000:]

    def stop(self) -> None:
        for service in self.services:
            service.stop()

    def publish(self, dataset: str, partition: str, version: int, **meta: Any) -> None:
        ef.publish(dataset, partition, version=version, metadata=meta, settings=self.settings)

    def publish_raw(
        self,
        raw: bytes,
        topic: str = "eventflow.datasets",
        key: bytes = b"x",
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        async def send() -> None:
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(**KafkaConfig(self.settings).client())
            await producer.start()
            try:
                await producer.send_and_wait(
                    self.settings.topic_prefix + topic, raw, key=key, headers=headers or []
                )
            finally:
                await producer.stop()

        asyncio.run(send())

    def records(self, *topics: str) -> list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]]:
        """(topic, key, value, headers) of every record committed to the topics when called,
        read up to the end offsets seen at the start (so a slow read never stops early)."""

        async def read() -> list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]]:
            from aiokafka import AIOKafkaConsumer, TopicPartition

            config = KafkaConfig(self.settings)
            reader = AIOKafkaConsumer(isolation_level="read_committed", **config.client())
            await reader.start()
            try:
                tps = [
                    TopicPartition(config.topic(t), p)
                    for t in topics
                    for p in range(config.partitions(t))
                ]
                reader.assign(tps)
                await reader.seek_to_beginning(*tps)
                ends = await reader.end_offsets(tps)
                found = []
                while [tp for tp in tps if await reader.position(tp) < ends[tp]]:
                    for batch in (await reader.getmany(timeout_ms=1000)).values():
                        found += [
                            (config.unprefixed(r.topic), r.key, r.value, list(r.headers))
                            for r in batch
                        ]
                return found
            finally:
                await reader.stop()

        return asyncio.run(read())

    def events(self, topics: list[str] | None = None) -> list[Event]:
        """Every committed event on the topics that carries a valid signature (or needs none)."""
        signer = Signer.of(self.settings)
        found = []
        for topic, _, value, headers in self.records(*(topics or ALL_TOPICS)):
            try:
                event = decode(value, max_metadata_bytes=1 << 30)
                signer.check(topic, event, value, headers)
            except EventError:
                continue
            found.append(event)
        return found

    def count(self, kind: str, topics: list[str] | None = None) -> int:
        """How many `kind` events are committed; -1 while the broker cannot tell (it is still
        electing leaders after a restart), for `wait_for` to ask again."""
        from aiokafka.errors import KafkaError

        try:
            return sum(e.type == kind for e in self.events(topics))
        except KafkaError:
            return -1
