"""CloudEvents written by the official Python SDK, as any other producer writes them: accepted in
structured and binary content mode, extensions kept; refused only when invalid or not ours."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from cloudevents.core.bindings import kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

import eventflow as ef
from eventflow.events import DatasetProduced

from .conftest import Start
from .harness import Recorder

D1 = "2026-11-21"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def sdk_event(version: int, **attributes: Any) -> CloudEvent:
    return CloudEvent(
        attributes={
            "type": "eventflow.dataset.produced",
            "source": "https://spark.example.com/jobs/ingest",
            "time": datetime(2026, 11, 22, 2, tzinfo=UTC),
            "datacontenttype": "application/json; charset=utf-8",
            "dataschema": "https://example.com/schemas/dataset.produced.json",
            "traceparent": TRACEPARENT,
            "team": "ingest",
            **attributes,
        },
        data={"dataset": "raw", "partition": D1, "version": version, "metadata": {"rows": 3}},
    )


def app(rec: Recorder) -> ef.App:
    raw = ef.Dataset("raw", ef.daily())
    p = ef.Pipeline("ce")
    p.task(inputs=[raw], name="consume")(rec.enter)
    return ef.App([p])


async def test_sdk_events_in_structured_and_binary_mode_trigger_with_extensions_kept(
    start: Start,
) -> None:
    rec = Recorder()
    binary = kafka.to_binary_event(sdk_event(2, id="b"))
    async with start(app(rec)) as h:
        await h.publish_raw(JSONFormat().write(sdk_event(1, id="s")))
        await h.wait_idle()
        await h.publish_raw(binary.value, headers=list(binary.headers.items()))
        await h.wait_idle()
    assert rec.calls == [("consume", D1, {"raw": 1}), ("consume", D1, {"raw": 2})]
    assert h.dead_letters() == []
    stored = {e.id: e for e in h.events if isinstance(e, DatasetProduced) and e.id in "sb"}
    assert set(stored) == {"s", "b"}
    for event in stored.values():
        assert event.extensions == {"traceparent": TRACEPARENT, "team": "ingest"}
        assert event.datacontenttype == "application/json; charset=utf-8"
        assert event.dataschema == "https://example.com/schemas/dataset.produced.json"
        assert event.source == "https://spark.example.com/jobs/ingest"
        assert event.data.metadata == {"rows": 3}


async def test_invalid_or_foreign_cloudevents_are_dead_lettered_with_the_reason(
    start: Start,
) -> None:
    rec = Recorder()
    valid = orjson.loads(JSONFormat().write(sdk_event(1, id="v")))
    no_id = {k: v for k, v in valid.items() if k != "id"}
    foreign = kafka.to_binary_event(sdk_event(1, type="com.example.order.placed"))
    not_json = kafka.to_binary_event(sdk_event(1, datacontenttype="text/plain"))
    async with start(app(rec)) as h:
        await h.publish_raw(orjson.dumps(no_id))
        await h.publish_raw(orjson.dumps({**valid, "specversion": "0.3"}))
        await h.publish_raw(orjson.dumps({**valid, "Trace_Parent": "x"}))
        await h.publish_raw(orjson.dumps({**valid, "nested": {"a": 1}}))
        await h.publish_raw(orjson.dumps({**valid, "datacontenttype": "application/xml"}))
        await h.publish_raw(foreign.value, headers=list(foreign.headers.items()))
        await h.publish_raw(not_json.value, headers=list(not_json.headers.items()))
        await h.wait_idle()
    reasons = [d.reason for d in h.dead_letters()]
    assert len(reasons) == 7, reasons
    assert reasons[0] == "not a CloudEvent: no id"
    assert reasons[1] == "unsupported CloudEvents specversion '0.3' (not 1.0)"
    assert "'Trace_Parent' is not a CloudEvents attribute name" in reasons[2]
    assert "extension 'nested' is a dict" in reasons[3]
    assert "'application/xml' is not a JSON media type" in reasons[4]
    assert reasons[5] == "unknown event type 'com.example.order.placed'"
    assert "content-type 'text/plain' is not JSON" in reasons[6]
    # A binary-mode event refused after conversion is kept whole, attributes and data.
    kept = orjson.loads(h.dead_letters()[5].original_bytes)
    assert kept["type"] == "com.example.order.placed" and kept["traceparent"] == TRACEPARENT
    assert rec.calls == []
