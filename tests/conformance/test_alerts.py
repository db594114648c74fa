"""Alerts on every runtime, against a real HTTP receiver on 127.0.0.1: a failure is delivered
once with the right body (CloudEvent JSON, Slack), a receiver that is down or busy for a while
gets it once it is back, a refusal is given up with its reason, an event seen twice is one
delivery, filters keep what they name, and a restarted service delivers nothing twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import eventflow as ef
from eventflow.alerts.delivery import idempotency_key
from eventflow.alerts.service import AlertService
from eventflow.events import decode
from eventflow.history import AlertDelivery, HistoryStore
from eventflow.lifecycle import Service

from ..receiver import Receiver
from .conftest import Start
from .harness import Harness, KafkaHarness

DAY, OTHER_DAY = "2026-11-01", "2026-11-02"
RUNS = "eventflow.pipeline-runs"
#: Small backoff, so retries come within the test's time without a clock of their own.
QUICK: dict[str, Any] = {"backoff_s": 0.05, "max_backoff_s": 0.2}


def app(*alerts: ef.Alert) -> ef.App:
    """`src` feeds `make`, which fails when asked to and else emits `out`; `out` has a check
    that fails when asked to."""
    src, out = ef.Dataset("src", ef.daily()), ef.Dataset("out", ef.daily())
    p = ef.Pipeline("daily")

    @p.task(inputs=[src], outputs=[out])
    def make(ctx: ef.TaskContext) -> None:
        if ctx.inputs["src"].metadata.get("fail"):
            raise ef.Fail("the warehouse said no")
        ctx.emit(out, bad=bool(ctx.inputs["src"].metadata.get("bad")))

    @p.check(out, blocking=False)
    def not_bad(ctx: ef.CheckContext) -> tuple[bool, str]:
        return not ctx.metadata.get("bad"), "rows are bad"

    other = ef.Pipeline("other")

    @other.task(inputs=[ef.Dataset("elsewhere")])
    def noop(ctx: ef.TaskContext) -> None:
        pass

    return ef.App([p, other], alerts=alerts)


@asynccontextmanager
async def alerting(
    h: Harness, store: HistoryStore, subscription: str = "eventflow-alerts"
) -> AsyncIterator[AlertService]:
    service = AlertService(h.app, h.settings, store, subscription=subscription)
    async with service:
        yield service


def store_of(tmp_path: Path) -> HistoryStore:
    return HistoryStore(f"sqlite+aiosqlite:///{tmp_path / 'alerts.db'}")


async def deliveries(service: AlertService, **where: Any) -> list[AlertDelivery]:
    return await service.store.deliveries(**where)


async def until(
    service: AlertService,
    done: Callable[[Sequence[AlertDelivery]], bool],
    timeout: float = 60,
    **where: Any,
) -> list[AlertDelivery]:
    """Until the deliveries (filtered by `where`) satisfy `done`; them."""
    found: list[AlertDelivery] = []

    async def check() -> bool:
        found[:] = await deliveries(service, **where)
        return done(found)

    await service.until(check, timeout=timeout)
    return found


def settled(n: int) -> Callable[[Sequence[AlertDelivery]], bool]:
    return lambda ds: len(ds) >= n and all(d.state in ("delivered", "given_up") for d in ds)


async def fail_a_run(h: Harness, day: str = DAY, n: int = 1) -> ef.PipelineRunFailed:
    """Emit a version of `src` whose run fails; that run's failure event."""
    await h.emit("src", day, fail=True)
    await h.wait_for_runs(n, timeout=60)
    return [e for e in h.events if isinstance(e, ef.PipelineRunFailed)][-1]


async def test_a_failed_run_is_delivered_once_as_a_cloudevent_and_as_slack(
    start: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Receiver() as receiver:
        rules = (
            ef.Alert("raw", on=["run.failed"], webhook=receiver.url("/json")),
            ef.Alert(
                "chat",
                on=["run.failed"],
                webhook=receiver.url("/slack"),
                format="slack",
                headers={"Authorization": "Bearer ${ALERT_TEST_TOKEN}"},
            ),
        )
        monkeypatch.setenv("ALERT_TEST_TOKEN", "s3cret")
        async with (
            start(app(*rules), ui_url="https://ui.example/") as h,
            alerting(h, store_of(tmp_path)) as service,
        ):
            failed = await fail_a_run(h)
            records = await until(service, settled(2))
            got = {r.path: r for r in await receiver.wait_for(2)}
        assert sorted(got) == ["/json", "/slack"] and len(receiver.received) == 2
        assert decode(got["/json"].body) == failed
        assert got["/json"].headers["content-type"] == "application/cloudevents+json"
        slack = got["/slack"].json()
        assert slack["text"].startswith("Run of daily failed: pipeline daily, partition 2026-11-01")
        assert "the warehouse said no" in slack["text"]
        section = slack["blocks"][0]["text"]["text"]
        run_id = failed.data.run_id
        assert f"<https://ui.example/ui/runs/{quote(run_id, safe='')}|Open in eventflow>" in section
        assert got["/slack"].headers["authorization"] == "Bearer s3cret"
        for name, request in (("raw", got["/json"]), ("chat", got["/slack"])):
            assert request.headers["idempotency-key"] == idempotency_key(name, failed.id)
            assert request.headers["x-eventflow-event-id"] == failed.id
        assert {(r.rule, r.state, r.attempts, r.status_code) for r in records} == {
            ("raw", "delivered", 1, 200),
            ("chat", "delivered", 1, 200),
        }
        assert all(r.event_id == failed.id and r.pipeline == "daily" for r in records)
        # The record names the webhook as written: the secret is not in it.
        assert all("s3cret" not in r.target for r in records)


async def test_a_receiver_down_for_a_while_gets_the_alert_when_back(
    start: Start, tmp_path: Path
) -> None:
    """Not listening: the delivery waits, across a restart of the alerts service, and goes
    out once the receiver listens."""
    receiver = Receiver()  # not started: nothing listens on its port
    rule = ef.Alert("oncall", on=["run.failed"], webhook=receiver.url(), **QUICK)
    store = store_of(tmp_path)
    async with start(app(rule)) as h:
        async with alerting(h, store) as service:
            failed = await fail_a_run(h)
            waiting = await until(service, lambda ds: bool(ds) and ds[0].attempts >= 2)
        assert waiting[0].state == "retrying" and waiting[0].status_code is None
        assert waiting[0].error and "Connect" in waiting[0].error
        async with receiver, alerting(h, store) as service:
            [done] = await until(service, settled(1))
            assert len(await receiver.wait_for(1)) == 1
    assert done.state == "delivered" and done.event_id == failed.id
    assert done.attempts >= 3 and done.status_code == 200 and done.error is None


async def test_a_busy_receiver_gets_it_after_retries_with_one_idempotency_key(
    start: Start, tmp_path: Path
) -> None:
    async with Receiver(answers=[503, 503]) as receiver:
        rule = ef.Alert("oncall", on=["run.failed"], webhook=receiver.url(), **QUICK)
        async with start(app(rule)) as h, alerting(h, store_of(tmp_path)) as service:
            await fail_a_run(h)
            [done] = await until(service, settled(1))
    assert (done.state, done.attempts, done.status_code) == ("delivered", 3, 200)
    keys = {r.headers["idempotency-key"] for r in receiver.received}
    assert len(receiver.received) == 3 and len(keys) == 1
    assert [r.headers["x-eventflow-attempt"] for r in receiver.received] == ["1", "2", "3"]


async def test_a_refusal_is_given_up_with_its_reason(start: Start, tmp_path: Path) -> None:
    async with Receiver(answers=[404]) as receiver:
        rule = ef.Alert("oncall", on=["run.failed"], webhook=receiver.url(), **QUICK)
        async with start(app(rule)) as h, alerting(h, store_of(tmp_path)) as service:
            await fail_a_run(h)
            [done] = await until(service, settled(1))
    assert (done.state, done.attempts, done.status_code) == ("given_up", 1, 404)
    assert done.error == "refused: HTTP 404" and done.finished_at is not None
    assert len(receiver.received) == 1


async def test_an_event_seen_twice_is_delivered_once(start: Start, tmp_path: Path) -> None:
    """Two services reading the same events apart (as two servers, or a replay, would) and
    recording into one store make one delivery of each (rule, event)."""
    async with Receiver() as receiver:
        rule = ef.Alert("oncall", on=["run.failed"], webhook=receiver.url())
        async with (
            start(app(rule)) as h,
            alerting(h, store_of(tmp_path), "alerts-a") as a,
            alerting(h, store_of(tmp_path), "alerts-b") as b,
        ):
            failed = await fail_a_run(h)
            for service in (a, b):  # each has recorded the event
                await service.until(partial(_taken, service), timeout=60)
            # Either may be the one that sends it (both work from the one store).
            waits = [asyncio.ensure_future(until(s, settled(1))) for s in (a, b)]
            finished, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            await Service.cancel(*pending)
            [done] = next(iter(finished)).result()
        assert len(await receiver.wait_for(1)) == 1
    assert (done.event_id, done.state, done.attempts) == (failed.id, "delivered", 1)


async def _taken(service: AlertService, count: int = 1) -> bool:
    return service.taken >= count


async def test_filters_keep_only_what_they_name(start: Start, tmp_path: Path) -> None:
    async with Receiver() as receiver:
        rules = (
            ef.Alert("elsewhere", on=["run.failed"], webhook=receiver.url(), pipelines=["other"]),
            ef.Alert("one-day", on=["run.failed"], webhook=receiver.url(), partitions=[OTHER_DAY]),
            ef.Alert("bad-out", on=["check.failed"], webhook=receiver.url(), datasets=["out"]),
            ef.Alert("succeeded", on=["run.succeeded"], webhook=receiver.url()),
        )
        async with start(app(*rules)) as h, alerting(h, store_of(tmp_path)) as service:
            await fail_a_run(h, DAY, 1)
            await h.emit("src", DAY, bad=True)  # succeeds, with a failing (warning) check
            await fail_a_run(h, OTHER_DAY, 3)
            found = await until(service, settled(3))
    by_rule = sorted((d.rule, d.partition) for d in found)
    assert by_rule == [("bad-out", DAY), ("one-day", OTHER_DAY), ("succeeded", DAY)]
    assert len(receiver.received) == 3


@pytest.mark.kafka
async def test_a_restarted_service_on_kafka_delivers_nothing_twice(
    kafka: Any, tmp_path: Path
) -> None:
    """The group's offsets set back to the beginning (a crash before they were committed):
    the restarted service reads the failure again and sends it no second time."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from eventflow.kafka.config import KafkaConfig

    async with Receiver() as receiver:
        rule = ef.Alert("oncall", on=["run.failed"], webhook=receiver.url())
        store = store_of(tmp_path)
        async with KafkaHarness(app(rule), kafka.bootstrap) as h:
            async with alerting(h, store) as service:
                first = await fail_a_run(h)
                await until(service, settled(1))
            config = KafkaConfig(h.settings)
            topic = config.topic(RUNS)
            rewind = AIOKafkaConsumer(
                group_id=f"{h.settings.topic_prefix}eventflow.subscriber.eventflow-alerts",
                enable_auto_commit=False,
                **config.client(),
            )
            await rewind.start()
            try:
                tps = [TopicPartition(topic, p) for p in range(config.partitions(RUNS))]
                rewind.assign(tps)
                await rewind.commit(dict.fromkeys(tps, 0))
            finally:
                await rewind.stop()
            async with alerting(h, store) as service:
                second = await fail_a_run(h, OTHER_DAY, 2)
                found = await until(service, settled(2))
                await service.until(partial(_taken, service, 2))
                assert service.taken == 2  # the first failure was read again
        assert {d.event_id for d in found} == {first.id, second.id}
        assert [r.headers["x-eventflow-event-id"] for r in receiver.received] == [
            first.id,
            second.id,
        ]


async def test_a_receiver_that_never_answers_holds_back_only_its_own_deliveries(
    start: Start, tmp_path: Path
) -> None:
    """A backlog for a receiver that accepts and never answers took every delivery slot for
    its whole timeout, so another rule's receiver, up all along, waited on it (and, with a
    long enough backlog, for good)."""
    stop = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await stop.wait()
        writer.close()

    hole = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = hole.sockets[0].getsockname()[1]
    try:
        async with Receiver() as receiver:
            rules = (
                ef.Alert(
                    "stuck", on=["run.failed"], webhook=f"http://127.0.0.1:{port}/", timeout_s=120
                ),
                ef.Alert("fine", on=["run.succeeded"], webhook=receiver.url()),
            )
            async with start(app(*rules)) as h, alerting(h, store_of(tmp_path)) as service:
                # A backlog of failures for `stuck` (as after an incident), recorded as intake
                # records them; then one success for `fine`.
                now = service._now()
                backlog = [
                    ef.PipelineRunFailed.of(
                        ef.PipelineRunData(
                            pipeline="daily",
                            partition=f"2026-10-{day:02d}",
                            run_id=f"daily:2026-10-{day:02d}:1",
                            status="failed",
                            started_at=now,
                            finished_at=now,
                        ),
                        source="eventflow",
                    )
                    for day in range(1, 31)
                ]
                await service.store.record_deliveries(
                    [r for e in backlog for r in service.rows(e, now)]
                )
                await h.emit("src", DAY)
                # Well within `stuck`'s timeout.
                [done] = await until(service, settled(1), timeout=20, rule="fine")
                assert len(await receiver.wait_for(1)) == 1
            assert done.state == "delivered"
    finally:
        stop.set()
        hole.close()
