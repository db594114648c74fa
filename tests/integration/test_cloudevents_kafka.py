"""CloudEvents in Kafka's binary content mode, as the official SDK writes them, keyed otherwise
than eventflow keys them: the coordinator forwards the event to the stream task owning its
dataset in the structured form, extensions kept, and it triggers there."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.v1.event import CloudEvent

import eventflow as ef
from eventflow.events import DatasetProduced
from eventflow.kafka.config import partition_for
from eventflow.testing import KafkaHarness
from eventflow.topics import SPECS

from ..conformance.harness import Recorder
from ..kafka_broker import Broker

pytestmark = [pytest.mark.kafka]

D1 = "2026-11-21"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_a_binary_mode_event_keyed_elsewhere_is_forwarded_structured_and_triggers(
    kafka: Broker,
) -> None:
    rec = Recorder()
    raw = ef.Dataset("raw", ef.daily())
    p = ef.Pipeline("ce")
    p.task(inputs=[raw], name="consume")(rec.enter)
    event = CloudEvent(
        attributes={
            "id": "binary-1",
            "type": "eventflow.dataset.produced",
            "source": "/spark/ingest",
            "time": datetime(2026, 11, 22, 2, tzinfo=UTC),
            "datacontenttype": "application/json; charset=utf-8",
            "traceparent": TRACEPARENT,
        },
        data={"dataset": "raw", "partition": D1, "version": 7},
    )
    message = ce_kafka.to_binary_event(event)
    partitions = SPECS["eventflow.datasets"].partitions
    async with KafkaHarness(ef.App([p]), kafka.bootstrap) as h:
        key = next(
            k
            for k in (f"k{n}" for n in range(100))
            if partition_for(k, partitions) != partition_for("raw", partitions)
        )
        assert h.publisher is not None
        await h.publisher.publish_raw(message.value, key=key, headers=list(message.headers.items()))
        await h.wait_for_runs()
    assert rec.calls == [("consume", D1, {"raw": 7})]
    assert h.dead_letters() == []
    seen = [e for e in h.events if isinstance(e, DatasetProduced) and e.id == "binary-1"]
    assert seen and all(e.extensions == {"traceparent": TRACEPARENT} for e in seen)
