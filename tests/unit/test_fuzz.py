"""Property: no input escapes as anything but a refusal, and the service still serves after it.

Arbitrary well-formed and malformed events of every type, naming known and unknown pipelines,
tasks, runs, datasets and partitions, with versions from -5 to 2^64, booleans, strings and floats,
go to the engine directly and through the embedded runtime's trusted and outsider entry points.
The Kafka runtime gets the same inputs, signed, in `tests/conformance/test_trust.py`.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventflow as ef
from eventflow.core import Engine, run_id, run_key
from eventflow.errors import EventError
from eventflow.events import BY_TYPE, DatasetProduced, decode

D1 = "2026-11-22"
NAMES = ["src", "mid", "end", "p", "p", "one", "two", "nope", "", "x" * 300]
PARTITIONS = [D1, "", "someday", "2026-11-23", "y" * 300]
VERSIONS = st.one_of(
    st.integers(1, 9),
    st.integers(1, 9),
    st.integers(-5, 2**64),
    st.booleans(),
    st.sampled_from(["5", 1.5, None, 2**63 - 1, 2**63]),
)
RUN_IDS = st.one_of(
    st.sampled_from(NAMES),
    st.builds(
        lambda t, p, v, a: run_id(t, p, run_key(t, p, {"src": v}), a),
        st.sampled_from(["one", "two"]),
        st.sampled_from(PARTITIONS),
        st.integers(1, 3),
        st.integers(1, 3),
    ),
)


def app() -> ef.App:
    src, mid = ef.Dataset("src", ef.daily()), ef.Dataset("mid", ef.daily())
    end = ef.Dataset("end", ef.daily())
    p = ef.Pipeline("p")

    @ef.check(mid)
    def nonempty(ctx: ef.CheckContext) -> bool:
        return True

    @p.task(inputs=[src], outputs=[mid], pool="cpu")
    def one(ctx: ef.TaskContext) -> None:
        ctx.emit(mid)

    @p.task(inputs=[mid], outputs=[end])
    def two(ctx: ef.TaskContext) -> None:
        ctx.emit(end)

    return ef.App([p], checks=[nonempty], pools=[ef.Pool("cpu", 1)])


version_ref = st.fixed_dictionaries(
    {
        "dataset": st.sampled_from(NAMES),
        "partition": st.sampled_from(PARTITIONS),
        "version": VERSIONS,
    },
    optional={"metadata": st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)},
)
payload = st.fixed_dictionaries(
    {
        "dataset": st.sampled_from(NAMES),
        "partition": st.sampled_from(PARTITIONS),
        "version": VERSIONS,
        "pipeline": st.sampled_from(NAMES),
        "task": st.sampled_from(NAMES),
        "run_id": RUN_IDS,
        "attempt": st.one_of(st.integers(-1, 4), st.booleans()),
        "worker": st.just("w"),
        "outputs": st.lists(version_ref, max_size=2),
        "inputs": st.lists(version_ref, max_size=2),
        "duration_ms": st.just(1),
        "error": st.just("e"),
        "kind": st.sampled_from(["error", "lost", "cancelled", "bogus"]),
        "retriable": st.booleans(),
        "check": st.sampled_from(["nonempty", "nope"]),
        "target": version_ref,
        "passed": st.booleans(),
        "blocking": st.booleans(),
        "accepted": st.booleans(),
        "producer": st.one_of(st.none(), RUN_IDS),
        "pipeline_run_id": st.just("p:x:1"),
        "timeout_s": st.just(5),
        "pool": st.just("cpu"),
        "status": st.sampled_from(["running", "succeeded"]),
        "started_at": st.just("2026-11-22T00:00:00Z"),
        "reason": st.just("r"),
        "action": st.sampled_from(["pause", "resume", "rerun_task", "rerun_run", "cancel", "no"]),
        "operator": st.just("o"),
        "original": st.just("AA=="),
    }
)
FIELDS = {
    kind: set(cls.model_fields["data"].annotation.model_fields)  # type: ignore[union-attr]
    for kind, cls in BY_TYPE.items()
}


def envelope(kind: str, data: dict[str, Any], only_fields: bool, drop: set[str]) -> bytes:
    """Mostly only the fields of `kind` (else nearly every event is refused as malformed),
    less a few."""
    if only_fields:
        data = {k: v for k, v in data.items() if k in FIELDS.get(kind, set())}
    data = {k: v for k, v in data.items() if k not in drop}
    return json.dumps(
        {"specversion": "1.0", "id": "i", "source": "fuzz", "type": kind, "data": data}
    ).encode()


shaped = st.builds(
    envelope,
    st.one_of(st.sampled_from(sorted(BY_TYPE)), st.text(max_size=5)),
    payload,
    st.sampled_from([True, True, True, False]),
    st.sets(
        st.sampled_from(
            sorted(
                payload_keys := [
                    "dataset",
                    "partition",
                    "version",
                    "pipeline",
                    "task",
                    "run_id",
                    "attempt",
                    "producer",
                    "metadata",
                    "accepted",
                    "action",
                ]
            )
        ),
        max_size=2,
    ),
)
raw_event = st.one_of(shaped, shaped, shaped, st.binary(max_size=40))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(raw_event, min_size=1, max_size=25))
def test_the_engine_refuses_or_applies_every_input(raws: list[bytes]) -> None:
    engine = Engine(app(), heartbeat_timeout_s=5)
    now = 1_800_000_000.0
    for raw in raws:
        try:
            event = decode(raw)
        except EventError:
            continue
        try:
            engine.handle(event, now)
        except EventError:
            pass
        now += 1
        engine.tick("p", now)
    valid = decode(
        json.dumps(
            {
                "specversion": "1.0",
                "id": "v",
                "source": "fuzz",
                "type": "eventflow.dataset.produced",
                "data": {"dataset": "src", "partition": "2026-01-01", "version": 2**63 - 1},
            }
        ).encode()
    )
    engine.handle(valid, now)  # the engine still decides


async def _through_the_runtime(raws: list[bytes], home: Path) -> None:
    async with ef.EmbeddedRuntime(app(), ef.Settings(home=home)) as runtime:
        for raw in raws:
            outsider = await runtime.publish_raw(raw, origin="control")
            trusted = await runtime.publish_raw(raw, origin="test", allowed=lambda e: True)
            assert outsider.event is not None and trusted.event is not None
        served = await runtime.emit("src", "2026-01-01", version=2**63 - 1)
        assert served.dead_letter is None
        assert not runtime.failed.is_set()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(raw_event, min_size=1, max_size=15))
def test_the_embedded_runtime_applies_or_dead_letters_every_input(raws: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(asyncio.wait_for(_through_the_runtime(raws, Path(folder)), 60))


def test_strict_versions_and_bounded_names() -> None:
    def produced(**data: Any) -> bytes:
        return json.dumps(
            {
                "specversion": "1.0",
                "id": "v",
                "source": "fuzz",
                "type": "eventflow.dataset.produced",
                "data": {"dataset": "src", **data},
            }
        ).encode()

    for version in (True, "5", 0, -1, 2**63, 1.0):
        try:
            decode(produced(version=version))
        except EventError as e:
            assert "version" in e.reason
        else:
            raise AssertionError(f"version {version!r} accepted")
    largest = decode(produced(version=2**63 - 1))
    assert isinstance(largest, DatasetProduced) and largest.data.version == 2**63 - 1
    for field, value in (("dataset", "d" * 201), ("partition", "p" * 201)):
        try:
            decode(produced(version=1, **{field: value}))
        except EventError as e:
            assert "at most 200 characters" in e.reason
        else:
            raise AssertionError(f"{field} of 201 characters accepted")
