"""A step's records to one partition reach the broker in one produce request.

A partition's next batch is sent only once the one before it is acknowledged, so a step whose
changelog records fill several batches waits a round trip for each (aiokafka's default batch
is 16 KiB; a busy coordinator step writes hundreds of KiB)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest
from aiokafka.protocol.produce import ProduceRequest

import eventflow as ef
from eventflow.kafka import admin
from eventflow.kafka.config import KafkaConfig

from ..kafka_broker import Broker

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


async def test_a_transactions_records_to_one_partition_go_in_one_request(kafka: Broker) -> None:
    config = KafkaConfig(
        ef.Settings(kafka_bootstrap=kafka.bootstrap, topic_prefix=f"b{secrets.token_hex(4)}.")
    )
    await admin.apply(config)
    state = config.topic("eventflow.state")
    value = b"x" * 1000
    records = 256  # sixteen of aiokafka's default batches, half of `BATCH_BYTES`
    produced: list[ProduceRequest] = []
    producer = config.transactional("test.batches", "test-batches")
    send = producer.client.send

    def counting(node_id: int, request: Any, **kw: Any) -> Any:
        if isinstance(request, ProduceRequest):
            produced.append(request)
        return send(node_id, request, **kw)

    try:
        await producer.start()
        async with producer.transaction():  # until the new partition has its leader
            await (await producer.send(state, b"first", key=b"k", partition=0))
        producer.client.send = counting
        async with producer.transaction():
            sent = [
                await producer.send(state, value, key=b"k", partition=0) for _ in range(records)
            ]
            await asyncio.gather(*sent)
    finally:
        await producer.stop()
    # Batches, not requests: a retried request (a leader moving) carries the same batch again.
    batches = {
        id(data) for request in produced for _, parts in request._topics for _, data in parts
    }
    assert len(batches) == 1, f"{len(batches)} batches for {records} records"
