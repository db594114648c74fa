"""Event models: CloudEvents envelope, orjson wire format, and the reasons invalid input gets."""

from __future__ import annotations

import base64
from typing import TypedDict

import orjson
import pytest

from eventflow import events as ev
from eventflow.errors import EventError, MetadataTooLarge

from .sim import produced


class Ref(TypedDict):
    run_id: str
    task: str
    pipeline: str
    partition: str
    attempt: int


def samples() -> list[ev.Event]:
    ref: Ref = {"run_id": "t:d:k:1", "task": "t", "pipeline": "p", "partition": "d", "attempt": 1}
    version = ev.DatasetVersion(dataset="a", partition="d", version=3, metadata={"rows": 3})
    late = ev.FreshnessData(
        kind="dataset",
        name="a",
        partition="2026-03-01",
        policy="deadline",
        expected_by=ev.utcnow(),
        since=ev.utcnow(),
        message="a partition 2026-03-01 has no version by its deadline",
    )
    run = ev.PipelineRunData(
        pipeline="p",
        partition="d",
        run_id="p:d:1",
        status="failed",
        started_at=ev.utcnow(),
        finished_at=ev.utcnow(),
        tasks=[ev.TaskOutcome(task="t", status="failed", attempts=2, error="x")],
        reason="x",
    )
    return [
        produced("a", "d", 3, rows=3, path="/data/a"),
        ev.TaskRequested.of(
            ev.TaskRequestedData(
                **ref, pipeline_run_id="p:d:1", inputs=[version], timeout_s=5, pool="cpu"
            )
        ),
        ev.TaskStarted.of(ev.TaskProgressData(**ref, worker="w")),
        ev.TaskHeartbeat.of(ev.TaskProgressData(**ref, worker="w")),
        ev.TaskSucceeded.of(
            ev.TaskSucceededData(**ref, worker="w", outputs=[version], duration_ms=1)
        ),
        ev.TaskFailed.of(ev.TaskFailedData(**ref, worker="w", error="e", kind="timeout")),
        ev.TaskLog.of(
            ev.TaskLogData(
                **ref,
                seq=0,
                lines=[ev.LogLine(time=ev.utcnow(), level="INFO", message="read 3 rows")],
                truncated=True,
            ),
            correlationid="p:d:1",
        ),
        ev.CheckRequested.of(
            ev.CheckRequestedData(run_id="c:1", check="c", target=version, timeout_s=1)
        ),
        ev.CheckCompleted.of(
            ev.CheckCompletedData(
                run_id="c:1", check="c", target=version, passed=False, blocking=True
            )
        ),
        ev.PipelineInput.of(ev.PipelineInputData(dataset="a", version=1, pipeline="p")),
        ev.DatasetReset.of(ev.DatasetResetData(dataset="a", partition="d", version=2, reason="r")),
        ev.PipelineRunStarted.of(run.model_copy(update={"status": "running"})),
        ev.PipelineRunSucceeded.of(run.model_copy(update={"status": "succeeded"})),
        ev.PipelineRunFailed.of(run, correlationid="p:d:1"),
        ev.PipelineAction.of(
            ev.PipelineActionData(
                pipeline="p", action="rerun_task", partition="d", task="t", reason="r", operator="o"
            )
        ),
        ev.Decided.of(
            ev.DecisionData(
                correlation="e-1",
                stage="pipeline",
                dataset="a",
                partition="d",
                version=1,
                pipeline="p",
                outcome="triggered",
                detail="requested t in p:d:1",
                runs=["p:d:1"],
                tasks=["t"],
            )
        ),
        ev.FreshnessViolated.of(late),
        ev.FreshnessRecovered.of(late.model_copy(update={"newest_version": 4})),
        ev.PoolReleased.of(ev.PoolReleasedData(run_id="t:d:k:1", pool="cpu")),
        ev.dead_letter(b"\xff\x00", "not JSON", origin="eventflow.datasets"),
    ]


def test_every_event_type_round_trips_on_the_wire() -> None:
    events = samples()
    assert {type(e) for e in events} == set(ev.EVENT_TYPES)
    for event in events:
        assert ev.decode(ev.encode(event)) == event


def test_envelope_is_structured_cloudevents_with_our_extensions() -> None:
    wire = orjson.loads(ev.encode(produced("raw.trips", "2026-11-22", 7)))
    for attribute in ("specversion", "id", "source", "type", "time", "subject", "datacontenttype"):
        assert attribute in wire
    assert wire["specversion"] == "1.0"
    assert wire["type"] == "eventflow.dataset.produced"
    assert wire["subject"] == "raw.trips/2026-11-22"
    assert wire["schemaversion"] == ev.SCHEMA_VERSION
    assert wire["data"]["version"] == 7


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a CloudEvent: a JSON list"),
        (b'{"type": "eventflow.nope"}', "unknown event type 'eventflow.nope'"),
        (
            b'{"specversion": "1.0", "id": "1", "source": "s", '
            b'"type": "eventflow.dataset.produced", "data": {"dataset": "a"}}',
            "invalid eventflow.dataset.produced: data.version: Field required",
        ),
        (
            b'{"specversion": "1.0", "id": "1", "source": "s", '
            b'"type": "eventflow.dataset.produced", "data": {"dataset": "a", "version": "x"}}',
            "data.version: Input should be a valid integer",
        ),
    ],
)
def test_invalid_bytes_fail_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(EventError) as caught:
        ev.decode(raw)
    assert reason in caught.value.reason


def test_metadata_is_size_limited_and_the_limit_is_configurable() -> None:
    event = orjson.loads(ev.encode(produced("a", "", 1)))
    event["data"]["metadata"] = {"blob": "x" * 2000}
    raw = orjson.dumps(event)
    decoded = ev.decode(raw)
    assert isinstance(decoded, ev.DatasetProduced)
    assert decoded.data.metadata["blob"] == "x" * 2000
    with pytest.raises(EventError, match="over the 1024-byte limit"):
        ev.decode(raw, max_metadata_bytes=1024)
    with pytest.raises(MetadataTooLarge, match="never data"):
        ev.check_metadata({"rows": list(range(20000))}, ev.DEFAULT_MAX_METADATA_BYTES)


def test_dead_letter_keeps_the_original_bytes() -> None:
    letter = ev.dead_letter(b"\xff garbage", "not JSON")
    decoded = ev.decode(ev.encode(letter))
    assert isinstance(decoded.data, ev.DeadLetterData)
    assert decoded.data.original_bytes == b"\xff garbage"
    assert base64.b64decode(decoded.data.original) == b"\xff garbage"


def test_binary_mode_headers_become_the_structured_event_other_headers_ignored() -> None:
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"b1"),
        ("ce_source", b"/spark"),
        ("ce_type", b"eventflow.dataset.produced"),
        ("ce_traceparent", b"00-ab-cd-01"),
        ("content-type", b"application/json; charset=utf-8"),
        ("eventflow-signature", b"\xff\xfe not text"),  # not an attribute: never read
    ]
    value = b'{"dataset": "raw", "version": 3}'
    assert ev.is_binary(headers) and not ev.is_binary(headers[1:])
    event = ev.decode(ev.structured(value, headers))
    assert isinstance(event, ev.DatasetProduced) and event.data.version == 3
    assert event.id == "b1" and event.extensions == {"traceparent": "00-ab-cd-01"}
    assert ev.decode(ev.encode(event)).extensions == {"traceparent": "00-ab-cd-01"}
    assert ev.structured(value, headers[1:]) == value  # structured mode: the value is the event
    with pytest.raises(EventError, match="binary-mode data is not JSON"):
        ev.from_binary(headers, b"\x00")
