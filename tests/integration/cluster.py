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

import eventflow as ef
from eventflow.events import Event
from eventflow.kafka import admin
from eventflow.kafka.clients import KafkaSubscriber
from eventflow.kafka.config import KafkaConfig

ALL_TOPICS = [
    "eventflow.datasets", "eventflow.pipeline-inputs", "eventflow.task-requests",
    "eventflow.task-events", "eventflow.pools", "eventflow.pipeline-runs", "eventflow.deadletter",
]  # fmt: skip


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or condition}")


class Service:
    def __init__(self, kind: str, app: Path, env: dict[str, str], folder: Path, n: int) -> None:
        self.kind = kind
        self.health = folder / f"{kind}-{n}.health"
        self.log = folder / f"{kind}-{n}.log"
        args = [sys.executable, "-m", "eventflow", kind, "--app", str(app),
                "--health-file", str(self.health)]  # fmt: skip
        if kind == "worker":
            args += ["--concurrency", "4"]
        self.health.unlink(missing_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=log,
                                         start_new_session=True)  # fmt: skip

    @property
    def pid(self) -> int:
        return self.proc.pid

    def owns(self) -> list[int]:
        try:
            state = orjson.loads(self.health.read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return []
        return list(state["owns"])

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
            kafka_bootstrap=bootstrap, topic_prefix=f"f{uuid.uuid4().hex[:10]}.",
            kafka_session_timeout_ms=2000,
        )  # fmt: skip
        clean = {k: v for k, v in os.environ.items() if not k.startswith("EVENTFLOW_")}
        self.env = {
            **clean,
            "EVENTFLOW_KAFKA_BOOTSTRAP": bootstrap,
            "EVENTFLOW_TOPIC_PREFIX": self.settings.topic_prefix,
            "EVENTFLOW_KAFKA_SESSION_TIMEOUT_MS": "2000",
            "EVENTFLOW_LOG_LEVEL": "INFO",
        }
        self.services: list[Service] = []
        asyncio.run(admin.apply(KafkaConfig(self.settings)))

    def start(self, kind: str) -> Service:
        service = Service(kind, self.app, self.env, self.folder, len(self.services))
        self.services.append(service)
        return service

    def ready(self, *services: Service, timeout: float = 60) -> None:
        for service in services:
            wait_for(lambda s=service: s.health.exists() or s.proc.poll() is not None,  # type: ignore[misc]
                     timeout, f"{service.kind} ready")  # fmt: skip
            assert service.proc.poll() is None, service.log.read_text()[-3000:]

    def stop(self) -> None:
        for service in self.services:
            service.stop()

    def publish(self, dataset: str, partition: str, version: int, **meta: Any) -> None:
        ef.publish(dataset, partition, version=version, metadata=meta, settings=self.settings)

    def publish_raw(
        self, raw: bytes, topic: str = "eventflow.datasets", key: bytes = b"x"
    ) -> None:
        async def send() -> None:
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(**KafkaConfig(self.settings).client())
            await producer.start()
            try:
                await producer.send_and_wait(self.settings.topic_prefix + topic, raw, key=key)
            finally:
                await producer.stop()

        asyncio.run(send())

    def events(self, topics: list[str] | None = None, settle: float = 1.0) -> list[Event]:
        """Every committed event on the topics, read until nothing new comes for `settle` s."""

        async def read() -> list[Event]:
            reader = KafkaSubscriber(self.settings, topic=topics or ALL_TOPICS,
                                     from_beginning=True)  # fmt: skip
            await reader.start()
            found: list[Event] = []
            stream = reader.events()
            try:
                while True:
                    found.append(await asyncio.wait_for(anext(stream), settle))
            except (TimeoutError, StopAsyncIteration):
                pass
            finally:
                await stream.aclose()
                await reader.stop()
            return found

        return asyncio.run(read())

    def count(self, kind: str, topics: list[str] | None = None) -> int:
        return sum(e.type == kind for e in self.events(topics, settle=0.3))
