"""Soak: external events at a fixed rate for minutes, against the services' memory and lag.

Each event is a new version of `bench.soak0` in one partition and starts one run of the soak
pipeline (three chained tasks). Partitions are either a fixed set cycled through (memory should
stay flat) or a new one per event (memory grows with the partitions the coordinator keeps).
Every few seconds the bench reads each service process's resident memory (VmRSS in /proc) and,
on Kafka, its consumer lag (the `eventflow_consumer_lag` metric); it prints one row per sample.

Exactly-once is counted from the outside: the bench reads the run outcomes with a `Subscriber`
(the `watch` stream of `eventflow dev`, or `eventflow.pipeline-runs`) and matches each to the
event that started it by the run key of its first task, a function of the partition and the
input version (see `Ledger` for events that join a run already in progress). An event without
an outcome after the drain is lost, a second outcome for it is duplicated, and the workers'
`eventflow_task_runs_total` must come to three task runs per event.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import sys
import time
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import eventflow as ef
from eventflow.core import run_key
from eventflow.events import PipelineRunData

from .apps import SOAK_TASKS, soak_steps
from .deploy import Deployment
from .scenarios import EPOCH, TIMEOUT_S, busy_s, coordinator_of, percentiles

SOURCE = soak_steps[0].name


@dataclass(slots=True)
class Sent:
    """One external event: when it went out and what came of it."""

    partition: str
    sent: float = 0.0
    arrived: float = 0.0
    outcomes: int = 0


class Ledger:
    """Events published and run outcomes seen, matched by the first task's run key.

    A partition has one pipeline run at a time: an event that arrives while its partition's run
    is in progress joins that run (its tasks run again on the newer version) instead of starting
    one, so the outcome names the newer event. Outcomes of a partition arrive in order, so the
    events of that partition still open when a later one's outcome arrives are `merged`; an
    event that is neither answered nor merged is lost."""

    def __init__(self) -> None:
        self.events: dict[str, Sent] = {}
        self.open: set[str] = set()
        self.pending: dict[str, deque[str]] = {}
        self.done = 0
        self.merged = 0
        self.duplicated = 0
        self.unexpected = 0
        self.failed = 0
        self.retried = 0
        self.all_sent = False
        self.drained = asyncio.Event()

    def expect(self, partition: str, version: int) -> str:
        key = run_key(SOAK_TASKS[0], partition, {SOURCE: version})
        self.events[key] = Sent(partition)
        self.open.add(key)
        self.pending.setdefault(partition, deque()).append(key)
        return key

    def outcome(self, run: PipelineRunData, arrived: float) -> None:
        first = next((t.run_id for t in run.tasks if t.task == SOAK_TASKS[0] and t.run_id), "")
        key = first.rsplit(":", 2)[-2] if first.count(":") >= 3 else ""
        sent = self.events.get(key)
        if sent is None:
            self.unexpected += 1
            return
        sent.outcomes += 1
        if sent.outcomes > 1:
            self.duplicated += 1
            return
        sent.arrived = arrived
        self.done += 1
        queue = self.pending[sent.partition]
        while queue:
            earlier = queue.popleft()
            self.open.discard(earlier)
            if earlier == key:
                break
            self.merged += 1
        if not queue:
            del self.pending[sent.partition]
        if run.status != "succeeded" or len(run.tasks) != len(SOAK_TASKS):
            self.failed += 1
        self.retried += sum(t.attempts > 1 for t in run.tasks)
        if self.all_sent and not self.open:
            self.drained.set()

    def sent_all(self) -> None:
        self.all_sent = True
        if not self.open:
            self.drained.set()

    def latencies(self) -> list[float]:
        return [e.arrived - e.sent for e in self.events.values() if e.outcomes]


def rss_figures(samples: list[dict[str, Any]], service: str) -> dict[str, float | None]:
    """Start, end and max resident memory (MiB), and its slope per 10,000 runs, over all
    samples and over the second half (past the warm-up of caches and allocator)."""
    runs = [s["runs"] for s in samples]
    rss = [s["rss_mib"][service] for s in samples]

    def slope(n: int) -> float | None:
        if len(set(runs[n:])) < 2:
            return None
        return round(statistics.linear_regression(runs[n:], rss[n:]).slope * 10_000, 2)

    return {
        "start": rss[0],
        "end": rss[-1],
        "max": max(rss),
        "per_10k_runs": slope(0),
        "per_10k_runs_2nd_half": slope(len(samples) // 2),
    }


class Soak:
    """One soak on one deployment: the paced publisher, the sampler and the outcome reader."""

    def __init__(
        self, d: Deployment, ledger: Ledger, *, rate: float, partitions: int | None, sample_s: float
    ) -> None:
        self.d = d
        self.ledger = ledger
        self.rate = rate
        self.partitions = partitions
        self.sample_s = sample_s
        self.services = ["dev"] if d.runtime == "embedded" else ["coordinator", "worker"]
        self.samples: list[dict[str, Any]] = []
        self.began = time.monotonic()
        self.behind_s = 0.0
        self.sending_s = 0.0

    def header(self, minutes: float) -> None:
        lags = "".join(f" {'lag ' + n[:5]:>9}" for n in self.services if self.d.runtime == "kafka")
        print(
            f"soak/{self.d.runtime}: {self.rate:g} events/s for {minutes:g} min over "
            f"{self.partitions or 'new'} partitions, a sample every {self.sample_s:g} s"
        )
        print(
            f"{'t s':>7}"
            + "".join(f" {n + ' MiB':>15}" for n in self.services)
            + f"{lags} {'runs':>8} {'open':>6} {'load':>6}",
            flush=True,
        )

    async def sample(self) -> None:
        """Resident memory of each service, its lag on Kafka, and the runs so far: one row."""
        row: dict[str, Any] = {
            "t_s": round(time.monotonic() - self.began, 1),
            "rss_mib": {},
            "lag": {},
        }
        for name in self.services:
            if self.d.services[name].poll() is not None:
                raise RuntimeError(f"{name} exited during the soak; logs in {self.d.folder}")
            row["rss_mib"][name] = round(self.d.rss_bytes(name) / 2**20, 1)
            if self.d.runtime == "kafka":
                lag = (await self.d.scrape(name)).get("eventflow_consumer_lag")
                row["lag"][name] = None if lag is None else int(lag)
        load = float(Path("/proc/loadavg").read_text().split()[0])
        row.update(runs=self.ledger.done, open=len(self.ledger.open), load=load)
        self.samples.append(row)
        print(
            f"{row['t_s']:>7.1f}"
            + "".join(f" {v:>15.1f}" for v in row["rss_mib"].values())
            + "".join(f" {'-' if v is None else v:>9}" for v in row["lag"].values())
            + f" {row['runs']:>8} {row['open']:>6} {load:>6.2f}",
            flush=True,
        )

    async def sampling(self) -> None:
        """A sample every `sample_s` on a monotonic schedule, until cancelled."""
        for k in itertools.count(1):
            await asyncio.sleep(max(0.0, self.began + k * self.sample_s - time.monotonic()))
            await self.sample()

    async def read(self, runs: ef.Subscriber) -> None:
        async for run in runs:
            self.ledger.outcome(run, time.time())

    async def send(self, total: int, group: asyncio.TaskGroup) -> None:
        """Event i goes out at start + i / rate however long the ones before took to send."""
        start = time.monotonic()
        for i in range(total):
            due = start + i / self.rate
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
            self.behind_s = max(self.behind_s, time.monotonic() - due)
            hour = i if self.partitions is None else i % self.partitions
            partition = (EPOCH + timedelta(hours=hour)).strftime("%Y-%m-%dT%H")
            group.create_task(self.publish(self.ledger.expect(partition, i + 1), partition, i + 1))
        self.sending_s = time.monotonic() - start
        self.ledger.sent_all()

    async def publish(self, key: str, partition: str, version: int) -> None:
        self.ledger.events[key].sent = await self.d.publish(SOURCE, partition, version=version)

    async def task_runs(self) -> int:
        """Task bodies the workers finished, by their `eventflow_task_runs_total`."""
        worker = "dev" if self.d.runtime == "embedded" else "worker"
        metrics = await self.d.scrape(worker)
        return int(sum(v for k, v in metrics.items() if k.startswith("eventflow_task_runs_total")))


async def soak(
    runtime: str,
    *,
    minutes: float,
    rate: float,
    partitions: int | None,
    sample_s: float = 5.0,
    bootstrap: str | None = None,
) -> dict[str, Any]:
    """`rate` events a second for `minutes`, over `partitions` cycled through (None: a new
    partition per event); then up to TIMEOUT_S for the last outcomes."""
    total = max(1, round(minutes * 60 * rate))
    ledger = Ledger()
    async with Deployment("soak", runtime, bootstrap=bootstrap, lanes=4, watch=False) as d:
        run = Soak(d, ledger, rate=rate, partitions=partitions, sample_s=sample_s)
        run.header(minutes)
        async with ef.Subscriber(d.settings, pipelines=["soak"]) as runs:  # subscribed here
            await run.sample()
            before, began = await d.scrape(coordinator_of(runtime)), time.monotonic()
            async with asyncio.TaskGroup() as group:
                reader = group.create_task(run.read(runs))
                sampler = group.create_task(run.sampling())
                await run.send(total, group)
                try:
                    await asyncio.wait_for(ledger.drained.wait(), TIMEOUT_S)
                except TimeoutError:
                    print(
                        f"soak/{runtime}: {len(ledger.open)} events without an outcome after "
                        f"{TIMEOUT_S:g} s",
                        file=sys.stderr,
                    )
                sampler.cancel()
                reader.cancel()
            busy = busy_s(before, await d.scrape(coordinator_of(runtime)))
            busy /= time.monotonic() - began
            await run.sample()
        task_runs = await run.task_runs()
    expected = total * len(SOAK_TASKS)
    figures: dict[str, Any] = {
        "minutes": minutes,
        "rate": rate,
        "partitions": partitions or "new per event",
        "published": total,
        "sending_s": round(run.sending_s, 1),
        "max_behind_schedule_ms": round(run.behind_s * 1000, 1),
        "outcomes": ledger.done,
        "merged": ledger.merged,
        "lost": len(ledger.open),
        "duplicated": ledger.duplicated,
        "unexpected": ledger.unexpected,
        "failed": ledger.failed,
        "retried": ledger.retried,
        "task_runs": task_runs,
        "task_runs_expected": expected,
        "task_runs_duplicated": max(0, task_runs - expected),
        "coordinator_busy": round(busy, 3),
        "trigger_to_outcome_ms": percentiles(ledger.latencies() or [0.0]),
    }
    for name in run.services:
        figures[f"rss_mib.{name}"] = rss_figures(run.samples, name)
        if runtime == "kafka":
            lags = [s["lag"][name] for s in run.samples if s["lag"][name] is not None]
            figures[f"lag.{name}"] = {
                "max": max(lags, default=None),
                "end": lags[-1] if lags else None,
            }
    figures["samples"] = run.samples
    return figures
