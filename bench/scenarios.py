"""Each scenario returns its figures as a dict; times in milliseconds."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import signal
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import eventflow as ef

from .deploy import Deployment

TIMEOUT_S = 60.0
EPOCH = datetime(2020, 1, 1)


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    cuts = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return {
        "n": len(ms),
        "p50": round(cuts[49], 3),
        "p95": round(cuts[94], 3),
        "p99": round(cuts[98], 3),
        "max": round(ms[-1], 3),
    }


async def trigger_latency(
    runtime: str, *, events: int, warmup: int, bootstrap: str | None = None
) -> dict[str, Any]:
    """External publish -> task body start, and -> its output at an outside subscriber."""
    to_body, to_subscriber = [], []
    async with Deployment("latency", runtime, bootstrap=bootstrap) as d:
        outputs = d.produced()
        for i in range(warmup + events):
            sent = await d.publish("bench.ping", version=i + 1)
            data, arrived = await asyncio.wait_for(anext(outputs), TIMEOUT_S)
            if i >= warmup:
                to_body.append(data.metadata["started"] - sent)
                to_subscriber.append(arrived - sent)
    result: dict[str, Any] = {
        "to_body_ms": percentiles(to_body),
        "to_subscriber_ms": percentiles(to_subscriber),
    }
    if runtime == "kafka" and bootstrap:
        floor = await kafka_round_trip(bootstrap, events=events, warmup=warmup)
        result["floor_ms"] = floor
        result["to_body_over_floor_p50"] = round(result["to_body_ms"]["p50"] / floor["p50"], 1)
        result["to_body_over_floor_p99"] = round(result["to_body_ms"]["p99"] / floor["p99"], 1)
    elif runtime == "embedded":
        floors = await embedded_floor(events=events, warmup=warmup)
        result.update(floors)
        floor = floors["floor_ms"]
        result["to_body_over_floor_p50"] = round(result["to_body_ms"]["p50"] / floor["p50"], 1)
        result["to_body_over_floor_p99"] = round(result["to_body_ms"]["p99"] / floor["p99"], 1)
    return result


async def embedded_floor(*, events: int, warmup: int) -> dict[str, dict[str, float]]:
    """The floor of the embedded runtime's trigger: what a step cannot do without, bare. An
    asyncio queue round trip (put, another task takes it and answers through a future: an event
    into the runtime's inbox, and its request out to a worker), and a WAL commit of one row with
    the state file's own settings (`BEGIN IMMEDIATE`, insert, `COMMIT` through aiosqlite's
    thread). `floor_ms` is both in sequence per sample, as a trigger pays them."""
    import aiosqlite

    inbox: asyncio.Queue[asyncio.Future[None]] = asyncio.Queue()

    async def taker() -> None:
        while True:
            (await inbox.get()).set_result(None)

    async def queue_trip() -> None:
        answer = asyncio.get_running_loop().create_future()
        inbox.put_nowait(answer)
        await answer

    folder = Path(tempfile.mkdtemp(prefix="eventflow-bench-floor-"))
    queue_s, commit_s, floor_s = [], [], []
    taking = asyncio.create_task(taker())
    db = await aiosqlite.connect(folder / "floor.db", isolation_level=None)
    try:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, body BLOB)")
        body = b"x" * 500  # about a trigger's event

        async def commit() -> None:
            await db.execute("BEGIN IMMEDIATE")
            await db.execute("INSERT INTO events (body) VALUES (?)", (body,))
            await db.execute("COMMIT")

        for i in range(warmup + events):
            began = time.perf_counter()
            await queue_trip()
            queued = time.perf_counter()
            await commit()
            ended = time.perf_counter()
            if i >= warmup:
                queue_s.append(queued - began)
                commit_s.append(ended - queued)
                floor_s.append(ended - began)
    finally:
        taking.cancel()
        await asyncio.gather(taking, return_exceptions=True)
        await db.close()
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "floor_queue_ms": percentiles(queue_s),
        "floor_commit_ms": percentiles(commit_s),
        "floor_ms": percentiles(floor_s),
    }


async def _topics(bootstrap: str, count: int) -> list[str]:
    """Fresh one-partition topics for a floor measurement, each written to once: a new topic's
    first writes may be refused for a while (not enough replicas yet), which is not the floor."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    names = [f"bench-floor-{uuid.uuid4().hex[:8]}" for _ in range(count)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1) for name in names])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for name in names:
            await producer.send_and_wait(name, b"ready")
    finally:
        await producer.stop()
    return names


async def kafka_round_trip(bootstrap: str, *, events: int, warmup: int) -> dict[str, float]:
    """The floor: a bare aiokafka produce (acks=all) -> consume round trip on the same broker."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    [topic] = await _topics(bootstrap, 1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=500)
    await producer.start()
    await consumer.start()
    samples = []
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        for i in range(warmup + events):
            sent = time.perf_counter()
            await producer.send_and_wait(topic, b"x")
            while not (await consumer.getmany(tp, timeout_ms=1000)).get(tp):
                pass
            if i >= warmup:
                samples.append(time.perf_counter() - sent)
    finally:
        await producer.stop()
        await consumer.stop()
    return percentiles(samples)


async def kafka_transaction_hop(bootstrap: str, *, events: int, warmup: int) -> dict[str, float]:
    """The floor of one exactly-once step, bare: a record read (read_committed), one record
    sent and then the read offset, in one transaction, and read on the other side once committed.
    A Kafka chain hop is two such steps (the worker's result, the coordinator's decision)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    source, sink = await _topics(bootstrap, 2)
    group = f"bench-floor-{uuid.uuid4().hex[:8]}"
    feeder = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    step = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=group,
        enable_idempotence=True,
        acks="all",
        linger_ms=0,
    )
    taking = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    reading = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    clients = (feeder, step, taking, reading)
    for client in clients:
        await client.start()
    samples = []
    try:
        into, out = TopicPartition(source, 0), TopicPartition(sink, 0)
        taking.assign([into])
        await taking.seek_to_end(into)
        reading.assign([out])
        await reading.seek_to_end(out)
        for i in range(warmup + events):
            await feeder.send_and_wait(source, b"x")
            while not (records := (await taking.getmany(into, timeout_ms=1000)).get(into)):
                pass
            took = time.perf_counter()
            async with step.transaction():
                # As eventflow's steps do: the offsets once the records are written (sent
                # alongside, they race the broker's check of the partitions and retry 100 ms).
                await step.send_and_wait(sink, b"x")
                await step.send_offsets_to_transaction({into: records[-1].offset + 1}, group)
            while not (await reading.getmany(out, timeout_ms=1000)).get(out):
                pass
            if i >= warmup:
                samples.append(time.perf_counter() - took)
    finally:
        for client in clients:
            await client.stop()
    return percentiles(samples)


async def chain10(
    runtime: str, *, runs: int, warmup: int, bootstrap: str | None = None
) -> dict[str, Any]:
    """External event -> tenth task's output at a subscriber, through ten tasks."""
    totals, hops = [], []
    async with Deployment("chain", runtime, bootstrap=bootstrap) as d:
        outputs = d.produced()
        for i in range(warmup + runs):
            sent = await d.publish("bench.chain0", version=i + 1)
            started: dict[str, float] = {}
            while True:
                data, arrived = await asyncio.wait_for(anext(outputs), TIMEOUT_S)
                started[data.dataset] = data.metadata["started"]
                if data.dataset == "bench.chain10":
                    break
            if i >= warmup:
                totals.append(arrived - sent)
                stamps = [sent] + [started[f"bench.chain{n}"] for n in range(1, 11)]
                hops += [b - a for a, b in itertools.pairwise(stamps)]
    result: dict[str, Any] = {"total_ms": percentiles(totals), "per_hop_ms": percentiles(hops)}
    if runtime == "kafka" and bootstrap:
        floor = await kafka_transaction_hop(bootstrap, events=10 * runs, warmup=10 * warmup)
        result["floor_transaction_ms"] = floor
        # Two transactions per hop: the worker's and the coordinator's.
        ratio = result["per_hop_ms"]["p50"] / (2 * floor["p50"])
        result["per_hop_over_two_transactions_p50"] = round(ratio, 2)
    return result


def busy_s(before: dict[str, float], after: dict[str, float]) -> float:
    """Seconds the coordinator spent in its steps (deciding and committing) between scrapes."""
    keys = [f"eventflow_coordinator_step_seconds_sum{{phase={p}}}" for p in ("decide", "commit")]
    return sum(after.get(k, 0.0) - before.get(k, 0.0) for k in keys)


def coordinator_of(runtime: str) -> str:
    return "dev" if runtime == "embedded" else "coordinator"


async def fanout(
    runtime: str, *, runs: int, warmup: int, bootstrap: str | None = None
) -> dict[str, Any]:
    """One event starts 1,000 tasks: time until the last output reaches a subscriber."""
    from .apps import FAN

    totals, last_start, shares = [], [], []
    async with Deployment("fanout", runtime, bootstrap=bootstrap, concurrency=32) as d:
        outputs = d.produced()
        service = coordinator_of(runtime)
        for i in range(warmup + runs):
            before = await d.scrape(service)
            sent = await d.publish("bench.fan", version=i + 1)
            starts = []
            for _ in range(FAN):
                data, arrived = await asyncio.wait_for(anext(outputs), TIMEOUT_S)
                starts.append(data.metadata["started"])
            after = await d.scrape(service)
            if i >= warmup:
                totals.append(arrived - sent)
                last_start.append(max(starts) - sent)
                shares.append(busy_s(before, after) / (arrived - sent))
    return {
        "total_ms": percentiles(totals),
        "last_body_start_ms": percentiles(last_start),
        "coordinator_share": round(statistics.median(shares), 3),
    }


def throughput_input(i: int) -> tuple[str, str]:
    """The dataset and partition of the throughput scenario's `i`th external event: each
    pipeline's input in turn, a new hour once every pipeline has had one."""
    from .apps import PIPELINES

    return f"bench.t{i % PIPELINES}.0", (EPOCH + timedelta(hours=i // PIPELINES)).strftime(
        "%Y-%m-%dT%H"
    )


async def throughput(
    runtime: str,
    *,
    events: int,
    bootstrap: str | None = None,
    profile: Path | None = None,
    coordinators: int = 1,
) -> dict[str, Any]:
    """External events into 100 pipelines x 10-task chains as fast as they are taken; each
    starts ten runs, so one external event means 11 dataset events for the coordinator (its
    own and ten outputs). The clock runs from the first publish until the workers' metrics
    count every run as succeeded (read every 20 ms; the bench does not watch the events, so
    that it takes no CPU from the services)."""
    from .apps import CHAIN, PIPELINES

    async with Deployment(
        "throughput",
        runtime,
        bootstrap=bootstrap,
        concurrency=64,
        lanes=32,
        watch=False,
        profile=profile,
        coordinators=coordinators,
    ) as d:
        deciders = d.coordinators if runtime == "kafka" else [coordinator_of(runtime)]
        worker = "dev" if runtime == "embedded" else "worker"
        succeeded = "eventflow_task_runs_total{outcome=succeeded}"
        published = 0

        async def drive(count: int) -> tuple[float, float]:
            nonlocal published
            first, published = published, published + count
            target = (await d.scrape(worker)).get(succeeded, 0.0) + count * CHAIN
            lanes = asyncio.Semaphore(d.lanes)

            async def one(i: int) -> float:
                async with lanes:
                    return await d.publish(*throughput_input(i), version=1)

            sending = asyncio.gather(*(one(i) for i in range(first, first + count)))
            deadline = time.time() + TIMEOUT_S + count / 100
            while (await d.scrape(worker)).get(succeeded, 0.0) < target:
                if time.time() > deadline:
                    raise TimeoutError(f"{runtime}: runs still missing after {TIMEOUT_S}s")
                await asyncio.sleep(0.02)
            return min(await sending), time.time()

        await drive(PIPELINES)  # warm-up: every pipeline once
        before = [await d.scrape(name) for name in deciders]
        cpu_before = d.cpu_s()
        began, ended = await drive(events)
        cpu = {k: v - cpu_before.get(k, 0.0) for k, v in d.cpu_s().items()}
        after = [await d.scrape(name) for name in deciders]
    elapsed = ended - began
    decided = sum(
        v - was.get(k, 0.0)
        for was, now in zip(before, after, strict=True)
        for k, v in now.items()
        if k.startswith("eventflow_events_decided_total")
    )
    busy = sum(busy_s(was, now) for was, now in zip(before, after, strict=True))
    return {
        "external_events": events,
        "seconds": round(elapsed, 3),
        "dataset_events_per_s": round(events * (CHAIN + 1) / elapsed),
        "task_runs_per_s": round(events * CHAIN / elapsed),
        "all_events_per_s": round(decided / elapsed),
        "coordinator_share": round(busy / elapsed, 3),
        # CPU seconds each process used meanwhile (`dev_children`: the history process, which
        # may still be catching up when the clock stops)
        **{f"cpu_s_{name.replace('/', '_')}": round(s, 2) for name, s in sorted(cpu.items())},
    }


async def scaling(*, events: int, bootstrap: str, rounds: int = 2) -> dict[str, Any]:
    """Kafka throughput with one coordinator process and with two, in turns (1, 2, 1, 2, ...):
    what the second adds, as a ratio measured in one run. `coordinator_share` counts the
    coordinators' busy seconds per second, so two fully busy ones make 2.0."""
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for _ in range(rounds):
        for count in (1, 2):
            runs[count].append(
                await throughput("kafka", events=events, bootstrap=bootstrap, coordinators=count)
            )

    def median(count: int, figure: str) -> float:
        return float(statistics.median(run[figure] for run in runs[count]))

    one, two = median(1, "dataset_events_per_s"), median(2, "dataset_events_per_s")
    return {
        "rounds": rounds,
        "one_dataset_events_per_s": one,
        "two_dataset_events_per_s": two,
        "second_coordinator_adds": round(two / one - 1, 3),
        "one_coordinator_share": median(1, "coordinator_share"),
        "two_coordinator_share": median(2, "coordinator_share"),
    }


async def state_scale(runtime: str, *, states: int, bootstrap: str | None = None) -> dict[str, Any]:
    """Coordinator restart onto `states` (pipeline, partition) states: time until ready and
    resident memory, each against the same app started on empty state. On Kafka, then a second
    coordinator joining, and one of the two SIGKILLed (see `takeover`)."""
    from .state import States

    built = States(states)
    await built.record()
    written = 0

    async def fill(settings: ef.Settings) -> None:
        nonlocal written
        if runtime == "embedded":
            await asyncio.to_thread(built.write_sqlite, settings.database)
            written = settings.database.stat().st_size
        else:
            written = await built.write_changelog(settings)

    service = coordinator_of(runtime)
    async with Deployment("scale", runtime, bootstrap=bootstrap, watch=False) as empty:
        empty_ready, empty_rss = empty.ready_s, empty.rss_bytes(service)
    moves: dict[str, Any] = {}
    async with Deployment("scale", runtime, bootstrap=bootstrap, watch=False, prepare=fill) as full:
        ready, rss = full.ready_s, full.rss_bytes(service)
        if runtime == "kafka":
            moves = await takeover(full)
    size = built.stored_bytes()
    return {
        "states": built.count,
        "ready_s": round(ready, 2),
        "ready_empty_s": round(empty_ready, 2),
        "restore_per_1k_states_ms": round((ready - empty_ready) / built.count * 1e6, 2),
        "rss_mib": round(rss / 2**20),
        "rss_empty_mib": round(empty_rss / 2**20),
        "memory_per_state_b": round((rss - empty_rss) / built.count),
        "stored_state_b": round(size["partition"]),
        "stored_dataset_state_b": round(size["dataset"]),
        "stored_total_mib": round(written / 2**20),
        **moves,
    }


OWNED = "eventflow_coordinator_stream_tasks{state=owned}"
RESTORING = "eventflow_coordinator_stream_tasks{state=restoring}"
ASSIGNED = "eventflow_group_assignments_total"
RESTORED = "eventflow_coordinator_restored_records_total"


async def takeover(d: Deployment, *, timeout_s: float = 900.0) -> dict[str, Any]:
    """With the one coordinator of `d` ready: a second one joins (the stream tasks are split
    between them), then the second is SIGKILLed and the first takes its tasks over. Times until
    both, then the survivor alone, own every task with none restoring; and how many group
    assignments (generations joined) and changelog records each move cost the survivor. One
    assignment per move means no rejoin: a restore that lost the membership would add more."""
    tasks = 6

    async def sample(name: str) -> dict[str, float]:
        try:
            return await d.scrape(name)
        except OSError:  # not serving metrics yet
            return {}

    async def until(what: str, done: Any) -> tuple[float, list[dict[str, float]]]:
        deadline = time.perf_counter() + timeout_s
        while True:
            samples = [await sample(name) for name in names]
            if done(samples):
                return time.perf_counter(), samples
            if time.perf_counter() > deadline:
                raise TimeoutError(f"no {what} after {timeout_s} s")
            await asyncio.sleep(0.1)

    names = ["coordinator"]
    start = await d.scrape("coordinator")
    began = time.perf_counter()
    d.add("coordinator", "peer")
    names.append("peer")

    def split(samples: list[dict[str, float]]) -> bool:
        return (
            all(s.get(OWNED, 0) > 0 and s.get(RESTORING, 1) == 0 for s in samples)
            and sum(s[OWNED] for s in samples) == tasks
        )

    joined, (first, peer) = await until("split between two coordinators", split)
    killed = time.perf_counter()
    d.kill("peer")
    names.remove("peer")
    assigned = 0.0

    def alone(samples: list[dict[str, float]]) -> bool:
        nonlocal assigned
        if not assigned and samples[0].get(ASSIGNED, 0) > first[ASSIGNED]:
            assigned = time.perf_counter()
        return samples[0].get(OWNED, 0) == tasks and samples[0].get(RESTORING, 1) == 0

    ready, (survivor,) = await until("takeover by the survivor", alone)
    return {
        "join_s": round(joined - began, 2),
        "join_assignments": int(first[ASSIGNED] - start[ASSIGNED]),
        "join_restored_records": int(first.get(RESTORED, 0) - start.get(RESTORED, 0)),
        "peer_restored_records": int(peer.get(RESTORED, 0)),
        "takeover_s": round(ready - killed, 2),
        "takeover_detect_s": round((assigned or ready) - killed, 2),
        "takeover_restore_s": round(ready - (assigned or ready), 2),
        "takeover_assignments": int(survivor[ASSIGNED] - first[ASSIGNED]),
        "takeover_restored_records": int(survivor.get(RESTORED, 0) - first.get(RESTORED, 0)),
    }


REQUEST_PARTITIONS = 12


async def worker_failover(
    *, kills: int, session_timeout_ms: int, bootstrap: str, timeout_s: float = 120.0
) -> dict[str, Any]:
    """A worker SIGKILLed with a result transaction open, `kills` times: how long the
    transaction then holds back read_committed readers (the coordinator among them) of the
    partitions it wrote to. Two workers run fan-outs of short tasks without pause; one is
    stopped (SIGSTOP) until a check of its done-marker partitions finds a transaction of its
    open, then SIGKILLed; the stall runs from the SIGSTOP until those partitions' last stable
    offset passes the transaction (it was aborted). A replacement worker joins before the
    next kill."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    stalls: list[float] = []
    tries = 0
    async with Deployment(
        "fanout",
        "kafka",
        bootstrap=bootstrap,
        concurrency=32,
        watch=False,
        session_timeout_ms=session_timeout_ms,
    ) as d:
        done_topic = d.settings.topic_prefix + "eventflow.task-done"
        committed = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
        written = AIOKafkaConsumer(bootstrap_servers=bootstrap)  # read_uncommitted: all of it
        await committed.start()
        await written.start()
        version = 0

        async def feed() -> None:
            nonlocal version
            while True:
                version += 1
                await d.publish("bench.fan", version=version)
                await asyncio.sleep(0.25)

        async def settled(names: list[str]) -> dict[str, list[int]]:
            """Until each of `names` owns task-requests partitions, each partition one owner."""
            deadline = time.perf_counter() + timeout_s
            while time.perf_counter() < deadline:
                owns = {name: (d.health(name) or {}).get("owns", []) for name in names}
                every = sorted(p for parts in owns.values() for p in parts)
                if all(owns.values()) and every == list(range(REQUEST_PARTITIONS)):
                    return owns
                await asyncio.sleep(0.1)
            raise TimeoutError(f"workers {names} did not settle after {timeout_s} s")

        feeding = asyncio.create_task(feed())
        workers = ["worker"]
        try:
            d.add("worker", "w1")
            workers.append("w1")
            for kill in range(kills):
                owns = await settled(workers)
                victim = workers[kill % 2]
                tps = [TopicPartition(done_topic, p) for p in owns[victim]]
                while True:
                    tries += 1
                    await asyncio.sleep(0.05 + 0.2 * (tries % 5) / 5)
                    d.services[victim].send_signal(signal.SIGSTOP)
                    stopped = time.perf_counter()
                    ends, stable = await written.end_offsets(tps), await committed.end_offsets(tps)
                    if any(stable[tp] < ends[tp] for tp in tps):
                        break
                    d.services[victim].send_signal(signal.SIGCONT)
                d.kill(victim)
                while True:
                    stable = await committed.end_offsets(tps)
                    if all(stable[tp] >= ends[tp] for tp in tps):
                        break
                    if time.perf_counter() - stopped > timeout_s:
                        raise TimeoutError(f"a transaction stayed open {timeout_s} s")
                    await asyncio.sleep(0.01)
                stalls.append(time.perf_counter() - stopped)
                replacement = f"w{kill + 2}"
                d.add("worker", replacement)
                workers[workers.index(victim)] = replacement
        finally:
            feeding.cancel()
            await asyncio.gather(feeding, return_exceptions=True)
            await committed.stop()
            await written.stop()
    return {
        "session_timeout_ms": session_timeout_ms,
        "kills": kills,
        "stops_to_find_an_open_transaction": tries,
        "stall_ms": percentiles(stalls),
    }
