"""An App running as services in other processes, and this process as the outside client.

Embedded: `eventflow dev` in a subprocess; events go in over its control socket and come back
through `watch`. Kafka: `eventflow coordinator` and `eventflow worker` subprocesses on a broker;
events go in with the Kafka `Publisher` and come back from `eventflow.datasets`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any

import eventflow as ef
from eventflow.embedded import ControlClient
from eventflow.events import DatasetProduced, DatasetProducedData, Event, encode

ROOT = Path(__file__).parents[1]
APPS = ROOT / "bench" / "apps.py"


class Deployment:
    """`async with Deployment("latency", "embedded") as d:` publish with `d.publish`, read
    produced datasets with `d.produced()`."""

    def __init__(self, app: str, runtime: str, *, bootstrap: str | None = None,
                 concurrency: int = 8) -> None:  # fmt: skip
        self.app = f"{APPS}:{app}"
        self.runtime = runtime
        self.bootstrap = bootstrap
        self.concurrency = concurrency
        self.folder = Path(tempfile.mkdtemp(prefix="eventflow-bench-"))
        clean = {k: v for k, v in os.environ.items() if not k.startswith("EVENTFLOW_")}
        self.env = {**clean, "EVENTFLOW_HOME": str(self.folder / "home"),
                    "EVENTFLOW_CONCURRENCY": str(concurrency)}  # fmt: skip
        if runtime == "kafka":
            assert bootstrap, "the Kafka runtime needs a bootstrap address"
            self.env.update(EVENTFLOW_KAFKA_BOOTSTRAP=bootstrap,
                            EVENTFLOW_TOPIC_PREFIX=f"b{uuid.uuid4().hex[:8]}.")  # fmt: skip
        self.settings = ef.Settings(**{k[10:].lower(): v for k, v in self.env.items()
                                       if k.startswith("EVENTFLOW_")})  # fmt: skip
        self.processes: list[subprocess.Popen[bytes]] = []
        self._client: ControlClient | None = None
        self._publisher: ef.Publisher | None = None
        self._events: AsyncIterator[Event] | None = None
        self._reader: Any = None

    def _spawn(self, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.folder / f"{args[0]}-{len(self.processes)}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "eventflow", *args], env=self.env,
                                stdout=log, stderr=log, cwd=ROOT)  # fmt: skip
        self.processes.append(proc)
        return proc

    async def __aenter__(self) -> Deployment:
        if self.runtime == "embedded":
            self._spawn("dev", self.app)
            socket = self.settings.control_socket
            while not socket.exists():
                await asyncio.sleep(0.05)
            self._client = ControlClient(socket)
            await self._client.start()
            watcher = ControlClient(socket)
            await watcher.start()
            self._reader = watcher
            self._events = await watcher.watch()
        else:
            from eventflow.kafka import admin
            from eventflow.kafka.clients import KafkaSubscriber
            from eventflow.kafka.config import KafkaConfig

            await admin.apply(KafkaConfig(self.settings))
            health = [self.folder / "coordinator.health", self.folder / "worker.health"]
            self._spawn("coordinator", "--app", self.app, "--health-file", str(health[0]))
            self._spawn("worker", "--app", self.app, "--concurrency", str(self.concurrency),
                        "--health-file", str(health[1]))  # fmt: skip
            while not all(h.exists() for h in health):
                if any(p.poll() is not None for p in self.processes):
                    raise RuntimeError(f"a service exited; logs in {self.folder}")
                await asyncio.sleep(0.1)
            self._publisher = ef.Publisher(self.settings)
            await self._publisher.start()
            self._reader = KafkaSubscriber(self.settings, topic="eventflow.datasets")
            await self._reader.start()
            self._events = self._reader.events()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._events is not None and hasattr(self._events, "aclose"):
            await self._events.aclose()
        for client in (self._client, self._reader, self._publisher):
            if client is not None:
                await client.stop()
        for proc in self.processes:
            proc.send_signal(signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    async def publish(self, dataset: str, partition: str = "", version: int | None = None,
                      **metadata: Any) -> float:  # fmt: skip
        """Publish like an outside system; returns the wall-clock time just before sending."""
        data = DatasetProducedData(
            dataset=dataset, partition=partition,
            version=version if version is not None else time.time_ns() // 1000,
            metadata=metadata,
        )  # fmt: skip
        raw = encode(DatasetProduced.of(data, source="bench"))
        sent = time.time()
        if self._client is not None:
            await self._client.publish_raw(raw)
        else:
            assert self._publisher is not None
            await self._publisher.publish_raw(raw, key=dataset)
        return sent

    async def produced(self) -> AsyncIterator[tuple[DatasetProducedData, float]]:
        """Task outputs as they reach this process, with their arrival time."""
        assert self._events is not None
        async for event in self._events:
            if event.type == "eventflow.dataset.produced":
                data = event.data
                assert isinstance(data, DatasetProducedData)
                if data.producer is not None:
                    yield data, time.time()
