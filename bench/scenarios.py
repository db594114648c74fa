"""Each scenario returns its figures as a dict; times in milliseconds."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from typing import Any

from .deploy import Deployment

TIMEOUT_S = 60.0


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    cuts = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return {"n": len(ms), "p50": round(cuts[49], 3), "p95": round(cuts[94], 3),
            "p99": round(cuts[98], 3), "max": round(ms[-1], 3)}  # fmt: skip


async def trigger_latency(runtime: str, *, events: int, warmup: int,
                          bootstrap: str | None = None) -> dict[str, Any]:  # fmt: skip
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
    result: dict[str, Any] = {"to_body_ms": percentiles(to_body),
                              "to_subscriber_ms": percentiles(to_subscriber)}  # fmt: skip
    if runtime == "kafka" and bootstrap:
        floor = await kafka_round_trip(bootstrap, events=events, warmup=warmup)
        result["floor_ms"] = floor
        result["to_body_over_floor_p50"] = round(
            result["to_body_ms"]["p50"] / floor["p50"], 1
        )
    return result


async def kafka_round_trip(bootstrap: str, *, events: int, warmup: int) -> dict[str, float]:
    """The floor: a bare aiokafka produce (acks=all) -> consume round trip on the same broker."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"bench-floor-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=500)
    await producer.start()
    await consumer.start()
    samples = []
    try:
        tp = TopicPartition(topic, 0)
        for _ in range(100):
            if topic in await consumer.topics():
                break
            await asyncio.sleep(0.1)
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


async def chain10(runtime: str, *, runs: int, warmup: int,
                  bootstrap: str | None = None) -> dict[str, Any]:  # fmt: skip
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
                hops += [b - a for a, b in zip(stamps, stamps[1:])]
    return {"total_ms": percentiles(totals), "per_hop_ms": percentiles(hops)}
