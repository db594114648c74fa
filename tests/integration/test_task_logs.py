"""Task logs on Kafka: workers produce them, signed, to their own topic, per attempt."""

from __future__ import annotations

import threading

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

import eventflow as ef
from eventflow.events import TaskLogData, decode
from eventflow.kafka.config import KafkaConfig
from eventflow.kafka.signing import Signer
from eventflow.settings import Settings
from eventflow.testing import KafkaHarness

from ..kafka_broker import Broker

pytestmark = pytest.mark.kafka


async def records(settings: Settings, topic: str) -> list[tuple[bytes, list[tuple[str, bytes]]]]:
    """(value, headers) of every committed record of `topic`."""
    config = KafkaConfig(settings)
    reader = AIOKafkaConsumer(isolation_level="read_committed", **config.client())
    await reader.start()
    try:
        tps = [TopicPartition(config.topic(topic), p) for p in range(config.partitions(topic))]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        ends = await reader.end_offsets(tps)
        found = []
        while [tp for tp in tps if await reader.position(tp) < ends[tp]]:
            for batch in (await reader.getmany(timeout_ms=1000)).values():
                found += [(r.value, list(r.headers)) for r in batch]
        return found
    finally:
        await reader.stop()


async def test_a_workers_log_chunks_land_on_their_topic_signed_one_log_per_attempt(
    kafka: Broker,
) -> None:
    release = threading.Event()
    raw = ef.Dataset("raw")
    p = ef.Pipeline("p")

    @p.task(inputs=[raw], retries=ef.Retry(count=1, backoff_s=0.1))
    def flaky(ctx: ef.TaskContext) -> None:
        print(f"attempt {ctx.attempt}")
        if ctx.attempt == 1:
            raise ConnectionError("away")
        ctx.log.info("waiting")
        assert release.wait(60), "the test never saw the running attempt's log"
        ctx.log.info("done")

    async with KafkaHarness(ef.App([p]), kafka.bootstrap, heartbeat_interval_ms=200) as h:
        try:
            await h.emit("raw")

            def running() -> bool:
                second = [c for c in h.task_logs("flaky") if c.attempt == 2]
                return bool(second) and len(h.task_results("flaky")) == 1

            # The second attempt's first chunk is read while it still runs.
            await h.wait_for(running, 60)
        finally:
            release.set()
        [run] = await h.wait_for_runs(timeout=60)
        assert run.status == "succeeded"
        first, second = h.task_results("flaky")
        settings = h.settings
        found = await records(settings, "eventflow.task-logs")

    signer = Signer.of(settings)
    assert found and all(signer.verify("eventflow.task-logs", v, hs) for v, hs in found)
    chunks = [decode(value).data for value, _ in found]
    assert all(isinstance(chunk, TaskLogData) for chunk in chunks)
    by_run: dict[str, list[TaskLogData]] = {}
    for chunk in chunks:
        assert isinstance(chunk, TaskLogData)
        by_run.setdefault(chunk.run_id, []).append(chunk)
    assert set(by_run) == {first.run_id, second.run_id}

    def lines(run_id: str) -> list[tuple[str, str]]:
        ordered = sorted(by_run[run_id], key=lambda c: c.seq)
        assert [c.seq for c in ordered] == list(range(len(ordered)))
        assert {c.attempt for c in ordered} == {1 if run_id == first.run_id else 2}
        return [(line.level, line.message) for c in ordered for line in c.lines]

    [printed, failure] = lines(first.run_id)
    assert printed == ("STDOUT", "attempt 1")
    assert failure[0] == "ERROR" and failure[1].endswith("ConnectionError: away")
    assert lines(second.run_id) == [("STDOUT", "attempt 2"), ("INFO", "waiting"), ("INFO", "done")]
    assert len(by_run[second.run_id]) >= 2  # one while it ran, the rest with its result
