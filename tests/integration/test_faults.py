"""Faults on a real broker: killed coordinators and workers, a restarted broker, replays, garbage.

Kill points are spread over the cascade (after 0 to 5 of its 6 task results), across 21 kills
in all, and three more kill workers inside a result transaction. Whatever was killed, each
partition ends with exactly one recorded success per task, each task requested once (its
downstream triggered exactly once), each output published once, and one successful pipeline run;
invalid input lands on the dead-letter topic with a reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from eventflow.events import (
    DatasetProducedData,
    DeadLetter,
    DeadLetterData,
    Event,
    PipelineRunData,
    TaskFailedData,
    TaskRequestedData,
    TaskSucceededData,
)
from eventflow.kafka.config import KafkaConfig, partition_for

from ..kafka_broker import Broker
from .cluster import Cluster, Service, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

APP = Path(__file__).parents[1] / "e2e" / "pipelines" / "journaled.py"
TASKS = ["extract", "clean", "left", "right", "join", "publish"]
STREAM_TASKS = 6


def day(i: int) -> str:
    return f"2026-10-{i + 1:02d}"


def journal_lines(journal: Path) -> list[list[str]]:
    return [line.split() for line in journal.read_text().splitlines()]


def ended(journal: Path, partition: str) -> int:
    return sum(1 for _, what, _, p in journal_lines(journal) if what == "end" and p == partition)


def ended_at_least(journal: Path, partition: str, n: int) -> Callable[[], bool]:
    return lambda: ended(journal, partition) >= n


def running(journal: Path, partition: str) -> tuple[str, str] | None:
    """(pid, task) of a body of `partition` that started and has not ended, if any."""
    started: dict[str, str] = {}
    for pid, what, task, p in journal_lines(journal):
        if p == partition and what == "start":
            started[task] = pid
        elif p == partition and what == "end":
            started.pop(task, None)
    for task, pid in started.items():
        return pid, task
    return None


def one_running(journal: Path, partition: str) -> Callable[[], bool]:
    return lambda: running(journal, partition) is not None


def runs_succeeded(cluster: Cluster) -> int:
    return cluster.count("eventflow.pipeline.run.succeeded", ["eventflow.pipeline-runs"])


def outcomes(cluster: Cluster, *services: Service) -> str:
    """For a test that waited in vain: the ended runs, failed tasks and dead letters on the
    topics, and what each service says of itself."""
    found = [
        f"{e.type} {e.data.model_dump_json()[:400]}"
        for e in cluster.events()
        if (isinstance(e.data, PipelineRunData) and e.data.status != "running")
        or isinstance(e.data, TaskFailedData | DeadLetterData)
    ]
    return "\n".join([*found, *(service.describe() for service in services)])


def produced(events: list[Event]) -> Counter[tuple[str, str]]:
    """Task outputs, by (dataset, partition)."""
    return Counter(
        (e.data.dataset, e.data.partition)
        for e in events
        if e.type == "eventflow.dataset.produced"
        and isinstance(e.data, DatasetProducedData)
        and e.data.producer is not None
    )


def verify(cluster: Cluster, partitions: list[str], copies: int = 1) -> list[Event]:
    """`copies`: how many times each task request is on the topic (more if a test replayed it).

    A transaction's commit markers reach its partitions one after another, so a run's outcome
    can be readable a moment before the outputs committed with it: this reads until every
    output is there (for up to 30 s), then counts."""
    expected = {(f"ds.{task}", partition) for partition in partitions for task in TASKS}
    events: list[Event] = []

    def complete() -> bool:
        nonlocal events
        events = cluster.events()
        return expected <= set(produced(events))

    with contextlib.suppress(AssertionError):  # the counts below say what is missing
        wait_for(complete, 30, "every output")
    data = [e.data for e in events]
    successes = Counter((d.task, d.partition) for d in data if isinstance(d, TaskSucceededData))
    first_requests = Counter(
        (d.task, d.partition) for d in data if isinstance(d, TaskRequestedData) and d.attempt == 1
    )
    outputs = produced(events)
    runs = Counter((d.partition, d.status) for d in data if isinstance(d, PipelineRunData))
    for partition in partitions:
        for task in TASKS:
            assert successes[(task, partition)] == 1, f"{task}@{partition}: {successes}"
            assert first_requests[(task, partition)] == copies, (
                f"{task}@{partition} requested twice"
            )
            published = outputs[(f"ds.{task}", partition)]
            assert published == 1, f"ds.{task}@{partition} published {published} times"
        assert runs[(partition, "succeeded")] == 1, runs
        assert runs[(partition, "failed")] == 0, runs
    return events


def owner(services: list[Service], stream_task: int) -> Service:
    """The live service that owns the task; during a rebalance, wait until one has taken it."""
    found: list[Service] = []

    def owned() -> bool:
        found[:] = [s for s in services if s.proc.poll() is None and stream_task in s.owns()]
        return bool(found)

    wait_for(owned, 60, f"an owner of stream task {stream_task}")
    return found[0]


@pytest.fixture
def cluster(kafka: Broker, tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(kafka.bootstrap, APP, tmp_path)
    yield made
    made.stop()


def test_sigkill_one_of_two_coordinators_at_ten_points(cluster: Cluster, tmp_path: Path) -> None:
    journal = tmp_path / "journal.txt"
    journal.touch()
    coordinators = [cluster.start("coordinator"), cluster.start("coordinator")]
    workers = [cluster.start("worker"), cluster.start("worker")]
    cluster.ready(*coordinators, *workers)
    pipeline_task = partition_for("journaled", STREAM_TASKS)
    partitions = []
    for i in range(10):
        partition = day(i)
        partitions.append(partition)
        cluster.publish("raw", partition, 1, journal=str(journal), pause=0.2)
        done = i % 6
        wait_for(ended_at_least(journal, partition, done), 60, f"{done} tasks of {partition}")
        wait_for(lambda: all(c.owns() for c in coordinators), 60, "both coordinators own tasks")
        busy = owner(coordinators, pipeline_task)
        victim = busy if i % 2 == 0 else next(c for c in coordinators if c is not busy)
        victim.kill()
        coordinators.remove(victim)
        replacement = cluster.start("coordinator")
        cluster.ready(replacement)
        coordinators.append(replacement)
    wait_for(lambda: runs_succeeded(cluster) >= len(partitions), 180, "every run to finish")
    verify(cluster, partitions)
    for _, what, _, _ in journal_lines(journal):
        assert what in ("start", "end")
    ends = Counter((task, p) for _, what, task, p in journal_lines(journal) if what == "end")
    assert set(ends.values()) == {1}, "no task body ran twice: only coordinators were killed"


def test_sigkill_a_worker_mid_task_at_eight_points(cluster: Cluster, tmp_path: Path) -> None:
    journal = tmp_path / "journal.txt"
    journal.touch()
    coordinator = cluster.start("coordinator")
    workers = [cluster.start("worker"), cluster.start("worker")]
    cluster.ready(coordinator, *workers)
    partitions = []
    killed: list[tuple[str, str, str]] = []
    for i in range(8):
        partition = day(i)
        partitions.append(partition)
        cluster.publish("raw", partition, 1, journal=str(journal), pause=0.6)
        done = i % 6
        wait_for(ended_at_least(journal, partition, done), 60, f"{done} tasks of {partition}")
        wait_for(one_running(journal, partition), 60, f"a task of {partition} running")
        found = running(journal, partition)
        assert found is not None
        pid, task = found
        victim = next(w for w in workers if str(w.pid) == pid)
        victim.kill()
        killed.append((pid, task, partition))
        workers.remove(victim)
        replacement = cluster.start("worker")
        cluster.ready(replacement)
        workers.append(replacement)
    wait_for(lambda: runs_succeeded(cluster) >= len(partitions), 180, "every run to finish")
    verify(cluster, partitions)
    lines = journal_lines(journal)
    for pid, task, partition in killed:
        finishers = {
            p for p, what, t, part in lines if what == "end" and (t, part) == (task, partition)
        }
        assert finishers and pid not in finishers, f"{task}@{partition} was finished elsewhere"


def fence_workers(cluster: Cluster) -> None:
    """Fence every worker's result producer from outside the group, as the broker does when it
    aborts a transaction left open across a restart: a newer epoch of the same transactional
    ids, and no rebalance after it."""
    config = KafkaConfig(cluster.settings)

    async def fence() -> None:
        for n in range(config.partitions("eventflow.task-requests")):
            producer = AIOKafkaProducer(
                transactional_id=config.name(f"eventflow.worker.{n}"), **config.client()
            )
            await producer.start()  # registers the id anew: the epoch the worker had is stale
            await producer.stop()

    asyncio.run(fence())


@pytest.mark.timeout(300)
def test_a_worker_fenced_with_no_new_owner_takes_its_partitions_over_again(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A fence with no rebalance after it (as when the broker times a transaction out): the
    worker gives the partition up, finds the group still assigns it the partition, and takes
    it over again, so no run waits for an owner that never comes."""
    journal = tmp_path / "journal.txt"
    journal.touch()
    coordinator, worker = cluster.start("coordinator"), cluster.start("worker")
    cluster.ready(coordinator, worker)
    fence_workers(cluster)
    cluster.publish("raw", day(0), 1, journal=str(journal))
    wait_for(
        lambda: runs_succeeded(cluster) >= 1,
        120,
        "the run to succeed",
        explain=lambda: outcomes(cluster, coordinator, worker),
    )
    verify(cluster, [day(0)])
    logged = worker.log.read_text()
    assert "was fenced; the group still assigns it here" in logged
    assert "never retrieved" not in logged, "the fence's unawaited sends are not errors"


@pytest.mark.timeout(300)
def test_a_worker_that_missed_a_rebalance_leaves_the_partition_to_its_new_owner(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A worker stopped past its session timeout while a body runs: the other worker takes its
    partitions over and runs that request again. Resumed, the stopped one is fenced publishing
    the result; the group names the other as the partition's owner, so it is never fenced back."""
    journal = tmp_path / "journal.txt"
    journal.touch()
    coordinator = cluster.start("coordinator")
    workers = [cluster.start("worker"), cluster.start("worker")]
    cluster.ready(coordinator, *workers)
    cluster.publish("raw", day(0), 1, journal=str(journal), pause=2.0)
    wait_for(one_running(journal, day(0)), 60, "a task running")
    found = running(journal, day(0))
    assert found is not None
    stopped = next(w for w in workers if str(w.pid) == found[0])
    other = next(w for w in workers if w is not stopped)
    os.kill(stopped.pid, signal.SIGSTOP)
    try:
        everything = list(
            range(KafkaConfig(cluster.settings).partitions("eventflow.task-requests"))
        )
        wait_for(lambda: other.owns() == everything, 60, "the other worker to own all")
    finally:
        os.kill(stopped.pid, signal.SIGCONT)
    wait_for(
        lambda: runs_succeeded(cluster) >= 1,
        120,
        "the run to succeed",
        explain=lambda: outcomes(cluster, coordinator, *workers),
    )
    verify(cluster, [day(0)])
    assert "fenced on partition" in stopped.log.read_text()
    assert "fenced on partition" not in other.log.read_text()
    assert all(w.proc.poll() is None for w in workers), "both workers kept running"


@pytest.mark.timeout(600)  # three broker restarts, each up to a minute on a loaded machine
def test_broker_restart_during_cascades(cluster: Cluster, kafka: Broker, tmp_path: Path) -> None:
    journal = tmp_path / "journal.txt"
    journal.touch()
    coordinator = cluster.start("coordinator")
    worker = cluster.start("worker")
    cluster.ready(coordinator, worker)
    partitions = []
    for i, progress in enumerate((1, 3, 5)):
        partition = day(i)
        partitions.append(partition)
        cluster.publish("raw", partition, 1, journal=str(journal), pause=0.3)
        wait_for(ended_at_least(journal, partition, progress), 60, f"{progress} tasks done")
        kafka.restart()
    wait_for(
        lambda: runs_succeeded(cluster) >= len(partitions),
        240,
        "every run to finish",
        explain=lambda: outcomes(cluster, coordinator, worker),
    )
    verify(cluster, partitions)
    assert coordinator.proc.poll() is None and worker.proc.poll() is None, "services kept running"


@pytest.mark.timeout(600)  # a 30 s outage, and a broker restart that may take a minute under load
def test_a_broker_outage_costs_time_not_runs(
    cluster: Cluster, kafka: Broker, tmp_path: Path
) -> None:
    """The broker is down 30 s while tasks run: heartbeats and results sent meanwhile never
    arrive, yet no run may be failed as lost for a silence the coordinator could not hear."""
    cluster.env.update(EVENTFLOW_HEARTBEAT_INTERVAL_MS="500", EVENTFLOW_HEARTBEAT_TIMEOUT_MS="6000")
    journal = tmp_path / "journal.txt"
    journal.touch()
    coordinator = cluster.start("coordinator")
    worker = cluster.start("worker")
    cluster.ready(coordinator, worker)
    partitions = [day(i) for i in range(3)]
    for partition in partitions:
        cluster.publish("raw", partition, 1, journal=str(journal), pause=1.5)
    wait_for(lambda: all(ended(journal, p) >= 1 for p in partitions), 60, "cascades under way")
    kafka.restart(pause=30)
    wait_for(
        lambda: runs_succeeded(cluster) >= len(partitions),
        240,
        "every run to finish",
        explain=lambda: outcomes(cluster, coordinator, worker),
    )
    events = verify(cluster, partitions)
    lost = [e.data for e in events if isinstance(e.data, TaskFailedData)]
    assert lost == [], "no task failed during the outage"
    assert coordinator.proc.poll() is None and worker.proc.poll() is None, "services kept running"


def test_replayed_events_and_requests_never_run_twice(cluster: Cluster, tmp_path: Path) -> None:
    journal = tmp_path / "journal.txt"
    journal.touch()
    coordinator, worker = cluster.start("coordinator"), cluster.start("worker")
    cluster.ready(coordinator, worker)
    partitions = [day(0), day(1)]
    for partition in partitions:
        cluster.publish("raw", partition, 7, journal=str(journal))
    wait_for(lambda: runs_succeeded(cluster) >= 2, 120, "both runs")
    requests = cluster.records("eventflow.task-requests")
    for _ in range(2):
        for partition in partitions:
            cluster.publish("raw", partition, 7, journal=str(journal))
        for _, key, value, headers in requests:  # as a replay would: same bytes, key and signature
            cluster.publish_raw(value, "eventflow.task-requests", key=key, headers=headers)

    def acknowledged() -> int:
        return worker.log.read_text().count("already ran; acknowledging")

    wait_for(lambda: acknowledged() >= 2 * len(requests), 120, "the replayed requests skipped")
    verify(cluster, partitions, copies=3)
    ends = Counter((task, p) for _, what, task, p in journal_lines(journal) if what == "end")
    assert len(ends) == 12 and set(ends.values()) == {1}, "a finished run id never runs again"


def test_garbage_and_invalid_events_are_dead_lettered(cluster: Cluster, tmp_path: Path) -> None:
    journal = tmp_path / "journal.txt"
    journal.touch()
    coordinator, worker = cluster.start("coordinator"), cluster.start("worker")
    cluster.ready(coordinator, worker)
    envelope = {"specversion": "1.0", "id": "1", "source": "test"}
    bad = [
        ("eventflow.datasets", b"\x00\x01garbage", "not JSON"),
        (
            "eventflow.datasets",
            orjson.dumps(
                {**envelope, "type": "eventflow.dataset.produced", "data": {"dataset": "raw"}}
            ),
            "Field required",
        ),
        (
            "eventflow.datasets",
            orjson.dumps(
                {
                    **envelope,
                    "type": "eventflow.dataset.produced",
                    "data": {"dataset": "nope", "version": 1},
                }
            ),
            "unknown dataset 'nope'",
        ),
        (
            "eventflow.datasets",
            orjson.dumps(
                {
                    **envelope,
                    "type": "eventflow.dataset.produced",
                    "data": {"dataset": "raw", "version": 1, "partition": "not-a-day"},
                }
            ),
            "is not a daily key",
        ),
        ("eventflow.task-events", b"[1, 2, 3]", "not a CloudEvent"),
        (
            "eventflow.pipeline-inputs",
            orjson.dumps({**envelope, "type": "eventflow.task.started", "data": {}}),
            "invalid eventflow.task.started",
        ),
        ("eventflow.pools", b"{}", "unknown event type None"),
        ("eventflow.task-requests", b"\xff", "not JSON"),
        (
            "eventflow.task-requests",
            orjson.dumps(
                {
                    **envelope,
                    "type": "eventflow.task.requested",
                    "data": {
                        "run_id": "t::k:1",
                        "task": "extract",
                        "pipeline": "journaled",
                        "pipeline_run_id": "r",
                        "inputs": [],
                        "timeout_s": 1,
                    },
                }
            ),
            "without a valid signature",
        ),
    ]
    for topic, raw, _ in bad:
        cluster.publish_raw(raw, topic)
    cluster.publish("raw", day(0), 1, journal=str(journal))
    wait_for(lambda: runs_succeeded(cluster) >= 1, 120, "the valid run")
    wait_for(
        lambda: cluster.count("eventflow.deadletter", ["eventflow.deadletter"]) >= len(bad),
        60,
        "dead letters",
    )
    logged = cluster.events(["eventflow.deadletter"])
    letters = [e.data for e in logged if isinstance(e, DeadLetter)]
    assert len(letters) == len(logged)
    by_original = {d.original_bytes: d for d in letters}
    for topic, raw, reason in bad:
        letter = by_original[raw]
        assert reason in letter.reason, (topic, letter.reason)
        assert letter.origin == topic
    assert coordinator.proc.poll() is None and worker.proc.poll() is None
    verify(cluster, [day(0)])


class Caught:
    """A transaction of a killed worker that was open on one of its done-marker partitions."""

    def __init__(self, tp: TopicPartition, start: int, end: int, runs: list[str]) -> None:
        self.tp, self.start, self.end, self.runs = tp, start, end, runs
        self.committed = False


async def kill_inside_a_transaction(cluster: Cluster, victim: Service) -> list[Caught]:
    """Stop `victim` until one of its done-marker partitions has a transaction open (its last
    stable offset behind its end: only the partition's owner writes there), SIGKILL it, and wait
    until those transactions are resolved. A transaction whose commit the broker had already
    accepted still commits; the others are aborted. [] if none was caught open."""
    topic = cluster.settings.topic_prefix + "eventflow.task-done"
    tps = [TopicPartition(topic, p) for p in victim.owns()]
    committed = AIOKafkaConsumer(
        bootstrap_servers=cluster.settings.kafka_bootstrap, isolation_level="read_committed"
    )
    written = AIOKafkaConsumer(bootstrap_servers=cluster.settings.kafka_bootstrap)
    await committed.start()
    await written.start()
    try:
        for _ in range(100):
            os.kill(victim.pid, signal.SIGSTOP)
            ends, stable = await written.end_offsets(tps), await committed.end_offsets(tps)
            if any(stable[tp] < ends[tp] for tp in tps):
                break
            os.kill(victim.pid, signal.SIGCONT)
            await asyncio.sleep(0.02)
        else:
            return []
        victim.kill()
        caught = [Caught(tp, stable[tp], ends[tp], []) for tp in tps if stable[tp] < ends[tp]]
        spans = {c.tp: (c.start, c.end) for c in caught}
        for record in await records_from(written, spans):
            next(c for c in caught if c.tp == record.tp).runs.append(record.key)
        deadline = time.monotonic() + 60
        while True:
            stable = await committed.end_offsets(list(spans))
            if all(stable[c.tp] >= c.end for c in caught):
                break
            assert time.monotonic() < deadline, "a killed worker's transaction stayed open"
            await asyncio.sleep(0.05)
        for record in await records_from(committed, spans):
            next(c for c in caught if c.tp == record.tp).committed = True
        return caught
    finally:
        await committed.stop()
        await written.stop()


class Record:
    def __init__(self, tp: TopicPartition, offset: int, key: str) -> None:
        self.tp, self.offset, self.key = tp, offset, key


async def records_from(
    reader: AIOKafkaConsumer,
    spans: dict[TopicPartition, tuple[int, int]],
) -> list[Record]:
    """Per partition, the records in [start, end) (reading stops at the first past it)."""
    found: list[Record] = []
    reader.assign(list(spans))
    for tp, (start, _) in spans.items():
        reader.seek(tp, start)
    remaining = dict(spans)
    while remaining:
        for tp, records in (await reader.getmany(*remaining, timeout_ms=1000)).items():
            found += [
                Record(tp, r.offset, r.key.decode())
                for r in records
                if r.key and r.offset < spans[tp][1]
            ]
        remaining = {tp: s for tp, s in remaining.items() if await reader.position(tp) < s[1]}
    return found


async def next_offsets(cluster: Cluster, after: list[Caught]) -> dict[TopicPartition, int]:
    """Per caught transaction, the offset of the first record written after it (read
    uncommitted: a control record, such as the marker that ends a transaction, takes an offset
    but is never returned)."""
    reader = AIOKafkaConsumer(bootstrap_servers=cluster.settings.kafka_bootstrap)
    await reader.start()
    found: dict[TopicPartition, int] = {}
    try:
        for caught in after:
            ends = await reader.end_offsets([caught.tp])
            if ends[caught.tp] > caught.end + 1:
                spans = {caught.tp: (caught.end, ends[caught.tp])}
                found[caught.tp] = min(r.offset for r in await records_from(reader, spans))
    finally:
        await reader.stop()
    return found


@pytest.mark.timeout(300)
def test_sigkill_a_worker_inside_a_result_transaction(cluster: Cluster, tmp_path: Path) -> None:
    """Workers are killed with result transactions open until three were aborted. The
    successor of a killed worker fences it when taking its partitions over, which aborts its
    open transactions before the successor writes anything there (rather than when the
    broker's transaction timeout would): the runs they held are finished by another worker, and
    every cascade completes exactly once."""
    journal = tmp_path / "journal.txt"
    journal.touch()
    coordinator = cluster.start("coordinator")
    workers = [cluster.start("worker"), cluster.start("worker")]
    cluster.ready(coordinator, *workers)
    partitions: list[str] = []
    aborted: list[Caught] = []
    stalled: dict[str, int] = {}  # run id -> pid of the worker killed with its result open
    for kill in range(10):
        if len(aborted) >= 3:
            break
        wait_for(
            lambda: (
                all(w.alive() and w.owns() for w in workers)
                and sorted(p for w in workers for p in w.owns()) == list(range(12))
            ),
            120,
            "both workers to own request partitions",
            lambda: "\n".join(w.describe() for w in workers),
        )
        victim = workers[kill % 2]
        caught: list[Caught] = []
        while not caught:
            assert len(partitions) < 120, "no result transaction caught open"
            batch = [
                (date(2026, 1, 1) + timedelta(days=len(partitions) + i)).isoformat()
                for i in range(4)
            ]
            for partition in batch:
                cluster.publish("raw", partition, 1, journal=str(journal), pause=0.01)
            partitions += batch
            caught = asyncio.run(kill_inside_a_transaction(cluster, victim))
        for transaction in caught:
            if not transaction.committed:
                aborted.append(transaction)
                stalled.update(dict.fromkeys(transaction.runs, victim.pid))
        workers.remove(victim)
        replacement = cluster.start("worker")
        cluster.ready(replacement)
        workers.append(replacement)
    assert len(aborted) >= 3, "kills kept landing after commits"
    wait_for(lambda: runs_succeeded(cluster) >= len(partitions), 240, "every run to finish")
    events = verify(cluster, partitions)
    finisher = {
        e.data.run_id: e.data.worker for e in events if isinstance(e.data, TaskSucceededData)
    }
    for run_id, pid in stalled.items():
        assert not finisher[run_id].endswith(f":{pid}"), f"{run_id}: an aborted result counted"
    # Had a successor written to the partition while the transaction was open, its first record
    # would sit right where the transaction's records end; the marker that aborted it is there.
    written_after = asyncio.run(next_offsets(cluster, aborted))
    for transaction in aborted:
        tp = transaction.tp
        assert written_after.get(tp, transaction.end + 1) > transaction.end, (
            f"{tp} written to while a killed worker's transaction was open"
        )
