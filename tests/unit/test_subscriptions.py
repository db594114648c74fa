"""What a subscriber asks for (kinds, filters, starts), decided without I/O; and, in embedded
mode, a durable subscription holding the event log's retention back."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

import eventflow as ef
from eventflow import testing
from eventflow.embedded.subscriptions import SubscriptionLog
from eventflow.events import (
    CheckCompleted,
    CheckCompletedData,
    DatasetProduced,
    DatasetProducedData,
    DatasetVersion,
    TaskFailed,
    TaskFailedData,
)
from eventflow.subscriptions import Selection, Start, event_types, facts

from ..conformance.harness import EmbeddedHarness

FAILED = TaskFailed.of(
    TaskFailedData(
        run_id="t:p:1:1",
        task="t",
        pipeline="daily",
        partition="p",
        worker="w",
        error="x",
        kind="error",
    )
)
PRODUCED = DatasetProduced.of(DatasetProducedData(dataset="out", partition="p", version=1))
REJECTED = CheckCompleted.of(
    CheckCompletedData(
        run_id="c",
        check="c",
        target=DatasetVersion(dataset="out", partition="p", version=1),
        passed=False,
        blocking=True,
    )
)


def test_kinds_are_short_names_event_types_or_prefixes() -> None:
    assert event_types(("run",)) == {
        "eventflow.pipeline.run.started",
        "eventflow.pipeline.run.succeeded",
        "eventflow.pipeline.run.failed",
    }
    assert {"eventflow.task.started", "eventflow.task.log"} <= event_types(("eventflow.task",))
    assert event_types(("eventflow.check.completed",)) == {"eventflow.check.completed"}
    with pytest.raises(ef.ConfigurationError, match="unknown kind 'eventflow.tas'"):
        event_types(("eventflow.tas",))


def test_filters_read_the_fields_a_payload_carries() -> None:
    assert facts(FAILED) == {"pipeline": "daily", "partition": "p", "status": "failed"}
    assert facts(REJECTED) == {"dataset": "out", "partition": "p", "status": "failed"}
    assert facts(PRODUCED)["dataset"] == "out"
    every = ("task", "check", "dataset")
    assert Selection(kinds=every, statuses=frozenset({"failed"})).wants(REJECTED)
    assert not Selection(kinds=every, statuses=frozenset({"passed"})).wants(REJECTED)
    assert Selection(kinds=every, datasets=frozenset({"out"})).wants(REJECTED)
    assert not Selection(kinds=every, pipelines=frozenset({"daily"})).wants(PRODUCED)
    assert Selection(kinds=every, pipelines=frozenset({"daily"})).wants(FAILED)
    assert not Selection(kinds=("check",)).wants(FAILED)


def test_a_start_is_one_place_and_a_durable_one_takes_no_replay_point() -> None:
    with pytest.raises(ef.ConfigurationError, match="not from_beginning and since"):
        Start(from_beginning=True, since=datetime.now(UTC))
    with pytest.raises(ef.ConfigurationError, match="needs a timezone"):
        Start(since=datetime(2026, 11, 22))  # the mistake it refuses
    with pytest.raises(ef.ConfigurationError, match="resumes where it left off"):
        Start(name="n", position={"log": 3})
    with pytest.raises(ef.ConfigurationError, match="printable"):
        Start(name="")
    assert Start(name="n", from_beginning=True, until="now").name == "n"


async def test_a_durable_subscription_holds_the_log_retention_back(tmp_path: Path) -> None:
    p = ef.Pipeline("p")

    @p.task(inputs=[ef.Dataset("src")])
    def t(ctx: ef.TaskContext) -> None:
        pass

    async with testing.EmbeddedHarness(ef.App([p]), tmp_path, event_log_retention_s=1e-6) as h:
        log = SubscriptionLog(h.settings.database)
        await log.start()
        try:
            await log.store("keeper", 1)
            await h.emit("src", version=1)
            await h.wait_idle()
            runtime = h.runtime
            await runtime.history.flush()

            async def trim() -> tuple[int, int]:
                runtime._next_trim = 0.0
                await runtime._trim_log(time.time())
                return await log.bounds()

            assert (await trim())[0] == 1, "everything after the durable position is kept"
            await log.store("keeper", 3)
            assert (await trim())[0] == 3
            assert await log.forget("keeper")
            first, last = await trim()
            assert first == last + 1, "no subscription left: retention takes the rest"
        finally:
            await log.stop()


async def _subscribe(
    h: testing.EmbeddedHarness, request: dict[str, object]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, dict[str, object]]:
    reader, writer = await asyncio.open_unix_connection(h.settings.control_socket)
    writer.write(orjson.dumps({"op": "subscribe", **request}) + b"\n")
    await writer.drain()
    return reader, writer, orjson.loads(await reader.readline())


def _app() -> ef.App:
    p = ef.Pipeline("p")

    @p.task(inputs=[ef.Dataset("src")])
    def t(ctx: ef.TaskContext) -> None:
        pass

    return ef.App([p])


@pytest.mark.parametrize(
    ("request_", "said"),
    [
        ({"since": 5}, "`since` is an ISO time, not 5"),
        ({"since": "yesterday"}, "`since` is an ISO time, not 'yesterday'"),
        ({"position": [1]}, "a log position is a whole number, not [1]"),
        ({"position": True}, "a log position is a whole number, not True"),
        ({"position": 2**63}, "cannot start at 9223372036854775808"),
        ({"position": 1_000_000}, "ends at seq"),
        ({"position": 0}, "a log position is 1 or more"),
        ({"types": "all"}, "a list of event types"),
        ({"name": 7}, "a subscription `name` is a non-empty string"),
    ],
)
async def test_a_subscription_request_that_cannot_be_served_is_refused_with_the_reason(
    tmp_path: Path, request_: dict[str, object], said: str
) -> None:
    """Refused before anything is sent, with the reason; the instance serves on."""
    async with EmbeddedHarness(_app(), tmp_path) as h:
        _, writer, reply = await _subscribe(h, {"types": [], **request_})
        assert reply["ok"] is False and said in str(reply["error"]), reply
        writer.close()
        await writer.wait_closed()
        await h.emit("src", version=1)
        await h.wait_idle()  # still deciding


@pytest.mark.parametrize(
    "ack", [b'{"ack": 4611686018427387904}', b'{"ack": null}', b'{"ack": [1]}', b"not json"]
)
async def test_a_bad_acknowledgement_ends_the_subscription_and_moves_no_position(
    tmp_path: Path, ack: bytes
) -> None:
    async with EmbeddedHarness(_app(), tmp_path) as h:
        await h.emit("src", version=1)
        await h.wait_idle()
        reader, writer, reply = await _subscribe(
            h, {"types": [], "name": "keeper", "from_beginning": True}
        )
        assert reply["ok"] is True, reply
        writer.write(ack + b"\n")
        await writer.drain()
        async with asyncio.timeout(30):
            while (line := await reader.readline()) and not line.startswith(b'{"error"'):
                pass
        assert b"bad acknowledgement" in line
        assert await reader.readline() == b"", "the stream ends after saying why"
        writer.close()
        await writer.wait_closed()
        log = SubscriptionLog(h.settings.database)
        await log.start()
        try:
            assert await log.position("keeper") == 1, "the position did not move"
        finally:
            await log.stop()
        refused = [e for e in h.events if isinstance(e, ef.DeadLetter)]
        assert refused and "bad acknowledgement" in refused[-1].data.reason
