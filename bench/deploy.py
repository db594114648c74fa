"""An App running as services in other processes, and this process as the outside client.

Embedded: `eventflow dev` in a subprocess; events go in over its control socket and come back
through `watch`. Kafka: `eventflow coordinator` and `eventflow worker` subprocesses on a broker;
events go in with the Kafka `Publisher` and come back from `eventflow.datasets`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.request import urlopen

import orjson
from prometheus_client.parser import text_string_to_metric_families

import eventflow as ef
from eventflow.embedded import ControlClient
from eventflow.errors import NotRunning
from eventflow.events import DatasetProduced, DatasetProducedData, Event, encode

ROOT = Path(__file__).parents[1]
APPS = ROOT / "bench" / "apps.py"


class Deployment:
    """`async with Deployment("latency", "embedded") as d:` publish with `d.publish`, read
    produced datasets with `d.produced()`."""

    def __init__(
        self,
        app: str,
        runtime: str,
        *,
        bootstrap: str | None = None,
        concurrency: int = 8,
        lanes: int = 1,
        watch: bool = True,
        profile: Path | None = None,
        prepare: Callable[[ef.Settings], Awaitable[object]] | None = None,
        session_timeout_ms: int | None = None,
        coordinators: int = 1,
    ) -> None:
        """`lanes`: how many `publish` calls may be under way at once; `watch=False` leaves
        out `produced()` and the load of reading every event; `profile`: where pyinstrument
        writes a profile of the coordinator process; `prepare` runs before the services start
        (topics exist by then); `session_timeout_ms`: the services' consumer-group session
        timeout, if not the default; `coordinators`: coordinator processes on Kafka (`coordinator`,
        `coordinator-2`, ...), ready once together they own every stream task."""
        self.app = f"{APPS}:{app}"
        self.runtime = runtime
        self.bootstrap = bootstrap
        self.concurrency = concurrency
        self.lanes = lanes
        self.watch = watch
        self.profile = profile
        self.prepare = prepare
        self.coordinators = [
            "coordinator" if i == 0 else f"coordinator-{i + 1}" for i in range(coordinators)
        ]
        self.ready_s = 0.0
        self.ports: dict[str, int] = {}
        self.services: dict[str, subprocess.Popen[bytes]] = {}
        self.folder = Path(tempfile.mkdtemp(prefix="eventflow-bench-"))
        clean = {k: v for k, v in os.environ.items() if not k.startswith("EVENTFLOW_")}
        self.env = {
            **clean,
            "EVENTFLOW_HOME": str(self.folder / "home"),
            "EVENTFLOW_CONCURRENCY": str(concurrency),
        }
        if session_timeout_ms is not None:
            self.env["EVENTFLOW_KAFKA_SESSION_TIMEOUT_MS"] = str(session_timeout_ms)
        if runtime == "kafka":
            assert bootstrap, "the Kafka runtime needs a bootstrap address"
            self.env.update(
                EVENTFLOW_KAFKA_BOOTSTRAP=bootstrap,
                EVENTFLOW_TOPIC_PREFIX=f"b{uuid.uuid4().hex[:8]}.",
                EVENTFLOW_SIGNING_KEY=uuid.uuid4().hex,
            )
        self.settings = ef.Settings.model_validate(
            {k[10:].lower(): v for k, v in self.env.items() if k.startswith("EVENTFLOW_")}
        )
        self.processes: list[subprocess.Popen[bytes]] = []
        self._clients: asyncio.Queue[ControlClient] = asyncio.Queue()
        self._publisher: ef.Publisher | None = None
        self._events: AsyncIterator[Event] | None = None
        self._reader: Any = None

    def _spawn(self, *args: str, name: str | None = None) -> subprocess.Popen[bytes]:
        log = open(self.folder / f"{args[0]}-{len(self.processes)}.log", "ab")  # noqa: SIM115 - the child keeps it
        name = name or args[0]
        self.ports[name] = port = free_port()
        command = [sys.executable, "-m", "eventflow", *args, "--metrics-port", str(port)]
        if self.profile is not None and args[0] in ("dev", "coordinator"):
            command[1:1] = [
                "-m",
                "pyinstrument",
                "-r",
                "pyisession",
                "-o",
                str(self.profile.with_suffix(".pyisession")),
            ]
        proc = subprocess.Popen(command, env=self.env, stdout=log, stderr=log, cwd=ROOT)
        self.services[name] = proc
        self.processes.append(proc)
        return proc

    async def __aenter__(self) -> Deployment:
        try:
            return await self._start()
        except BaseException as e:
            await self.__aexit__(type(e), e, e.__traceback__)  # no service left running
            raise

    async def _start(self) -> Deployment:
        if self.runtime == "embedded":
            if self.prepare is not None:
                await self.prepare(self.settings)
            began = time.perf_counter()
            self._spawn("dev", self.app)
            await self._until_ready(self.settings.control_socket)
            self.ready_s = time.perf_counter() - began
            for _ in range(self.lanes):
                client = ControlClient(self.settings.control_socket)
                await client.start()
                self._clients.put_nowait(client)
            if self.watch:
                watcher = ControlClient(self.settings.control_socket)
                await watcher.start()
                self._reader = watcher
                self._events = await watcher.watch()
        else:
            from eventflow.kafka import admin
            from eventflow.kafka.clients import KafkaSubscriber
            from eventflow.kafka.config import KafkaConfig

            await admin.apply(KafkaConfig(self.settings))
            if self.prepare is not None:
                await self.prepare(self.settings)
            began = time.perf_counter()
            health = [self.folder / f"{name}.health" for name in (*self.coordinators, "worker")]
            for name, file in zip(self.coordinators, health, strict=False):
                self._spawn("coordinator", "--app", self.app, "--health-file", str(file), name=name)
            self._spawn(
                "worker",
                "--app",
                self.app,
                "--concurrency",
                str(self.concurrency),
                "--health-file",
                str(health[-1]),
            )
            while not all(h.exists() for h in health) or not await self._shared():
                if any(p.poll() is not None for p in self.processes):
                    raise RuntimeError(f"a service exited; logs in {self.folder}")
                await asyncio.sleep(0.05)
            self.ready_s = time.perf_counter() - began
            self._publisher = ef.Publisher(self.settings)
            await self._publisher.start()
            if self.watch:
                self._reader = KafkaSubscriber(self.settings, topic="eventflow.datasets")
                await self._reader.start()
                self._events = self._reader.events()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._events is not None and hasattr(self._events, "aclose"):
            await self._events.aclose()
        while not self._clients.empty():
            await self._clients.get_nowait().stop()
        for client in (self._reader, self._publisher):
            if client is not None:
                await client.stop()
        for proc in self.processes:
            proc.send_signal(signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.profile is not None:
            render_profile(self.profile)

    async def _until_ready(self, socket: Path) -> None:
        """Until the dev instance has loaded its state and processes events."""
        while True:
            if self.processes[0].poll() is not None:
                raise RuntimeError(f"eventflow dev exited; logs in {self.folder}")
            if socket.exists():
                try:
                    async with ControlClient(socket) as probe:
                        if (await probe.ping()).get("ready"):
                            return
                except NotRunning:
                    pass
            await asyncio.sleep(0.05)

    def add(self, kind: str, name: str) -> None:
        """Another `coordinator` or `worker` instance (Kafka), known as `name` to `scrape`,
        `health` and `kill`."""
        assert self.runtime == "kafka"
        extra = ["--concurrency", str(self.concurrency)] if kind == "worker" else []
        self._spawn(
            kind,
            "--app",
            self.app,
            *extra,
            "--health-file",
            str(self.folder / f"{name}.health"),
            name=name,
        )

    def health(self, service: str) -> dict[str, Any] | None:
        """What a Kafka service last wrote to its health file, or None (not healthy yet)."""
        try:
            found: dict[str, Any] = orjson.loads((self.folder / f"{service}.health").read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return None
        return found

    def kill(self, service: str) -> None:
        """SIGKILL a service and reap it."""
        proc = self.services[service]
        proc.kill()
        proc.wait(timeout=30)

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds (user and system) each service process has used so far, and, apart,
        what its live children have (a dev instance's history process: `dev/children`)."""
        used: dict[str, float] = {}
        for name, proc in self.services.items():
            used[name] = _cpu_s(proc.pid)
            children = _children(proc.pid)
            if children:
                used[f"{name}/children"] = sum(map(_cpu_s, children))
        return used

    def rss_bytes(self, service: str) -> int:
        """Resident memory of a service process."""
        for line in Path(f"/proc/{self.services[service].pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc")

    async def publish(
        self, dataset: str, partition: str = "", version: int | None = None, **metadata: Any
    ) -> float:
        """Publish like an outside system; returns the wall-clock time just before sending."""
        data = DatasetProducedData(
            dataset=dataset,
            partition=partition,
            version=version if version is not None else time.time_ns() // 1000,
            metadata=metadata,
        )
        raw = encode(DatasetProduced.of(data, source="bench"))
        if self._publisher is None:
            client = await self._clients.get()
            sent = time.time()
            try:
                await client.publish_raw(raw)
            finally:
                self._clients.put_nowait(client)
        else:
            sent = time.time()
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

    async def _shared(self) -> bool:
        """Each coordinator owns stream tasks, none is restoring, and together they own all."""
        if len(self.coordinators) == 1:
            return True
        from eventflow.kafka.config import KafkaConfig

        owned = restoring = 0
        for name in self.coordinators:
            metrics = await self.scrape(name)
            mine = metrics.get("eventflow_coordinator_stream_tasks{state=owned}", 0.0)
            restoring += int(metrics.get("eventflow_coordinator_stream_tasks{state=restoring}", 0))
            if mine == 0:
                return False
            owned += int(mine)
        return restoring == 0 and owned == KafkaConfig(self.settings).partitions(
            "eventflow.pipeline-inputs"
        )

    async def scrape(self, service: str) -> dict[str, float]:
        """A service's Prometheus metrics, as {'name{label=value}': value}."""
        url = f"http://127.0.0.1:{self.ports[service]}/metrics"
        text = await asyncio.to_thread(lambda: urlopen(url, timeout=10).read().decode())
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples


def _cpu_s(pid: int) -> float:
    """User and system CPU seconds of a process (0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after the command, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """The live children of a process, whichever of its threads started them."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            found += [int(c) for c in task.read_text().split()]
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def render_profile(profile: Path) -> None:
    """The coordinator's saved pyinstrument session as two text reports beside it: flat
    (`profile`: seconds whose innermost frame is the function, where the time goes) and the
    call tree (`*.tree.txt`: which caller pays for it). Repeat either with `pyinstrument
    --load FILE.pyisession`."""
    from pyinstrument.renderers import ConsoleRenderer
    from pyinstrument.session import Session

    saved = profile.with_suffix(".pyisession")
    if not saved.exists():
        return
    session = Session.load(saved)
    profile.write_text(ConsoleRenderer(flat=True).render(session))
    profile.with_suffix(".tree.txt").write_text(ConsoleRenderer().render(session))
