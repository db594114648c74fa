"""`ef.Subscriber` on every runtime: the same options mean the same thing (live, durable, replay
from the beginning, a time or a position, `until="now"` and `caught_up`), every kind of event can
be asked for and filtered, and a durable subscriber killed with SIGKILL resumes with nothing
missed and, handled idempotently, nothing handled twice."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import RecordsToDelete

import eventflow as ef
from eventflow.events import PIPELINE_RUN_EVENTS
from eventflow.kafka import admin
from eventflow.kafka.config import KafkaConfig

from .conftest import Start
from .harness import Harness, KafkaHarness

ROOT = Path(__file__).resolve().parents[2]
DAYS = [f"2026-11-{d:02d}" for d in range(1, 29)]


def app() -> ef.App:
    """`src` feeds `make`, which emits `out` unless asked to fail; `out` has a check."""
    src, out = ef.Dataset("src", ef.daily()), ef.Dataset("out", ef.daily())
    p = ef.Pipeline("daily")

    @p.task(inputs=[src], outputs=[out])
    def make(ctx: ef.TaskContext) -> None:
        if ctx.inputs["src"].metadata.get("fail"):
            raise ef.Fail("asked to fail")
        ctx.emit(out)

    @p.check(out)
    def not_empty(ctx: ef.CheckContext) -> bool:
        return True

    other = ef.Pipeline("other")

    @other.task(inputs=[ef.Dataset("elsewhere")])
    def noop(ctx: ef.TaskContext) -> None:
        pass

    return ef.App([p, other])


def finished(h: Harness) -> list[ef.Event]:
    """Run outcomes that ended, as the runtime committed them."""
    return [
        e for e in h.events if isinstance(e, PIPELINE_RUN_EVENTS) and e.data.status != "running"
    ]


async def collect(subscriber: ef.Subscriber, timeout: float = 60) -> list[ef.Event]:
    """Everything a subscriber with `until="now"` gives, up to its end."""
    async with asyncio.timeout(timeout):
        return [event async for event in subscriber.events()]


async def test_a_replay_ends_at_now_and_says_it_caught_up(start: Start) -> None:
    async with start(app()) as h:
        for day in DAYS[:2]:
            await h.emit("src", day, 1)
        await h.wait_for_runs(2, timeout=60)
        async with ef.Subscriber(h.settings, from_beginning=True, until="now") as replay:
            replayed = await collect(replay)
            assert replay.caught_up.is_set()
        assert [e.id for e in replayed] == [e.id for e in finished(h)]
        async with ef.Subscriber(h.settings, until="now") as live:
            assert await collect(live) == [], "live from now: nothing to catch up with"
            assert live.caught_up.is_set()


async def test_live_subscriber_sees_what_comes_after_it_caught_up(start: Start) -> None:
    async with start(app()) as h:
        await h.emit("src", DAYS[0], 1)
        await h.wait_for_runs(1, timeout=60)
        async with ef.Subscriber(h.settings, from_beginning=True) as subscriber:
            events = subscriber.events()
            first = await asyncio.wait_for(anext(events), 60)
            later = asyncio.ensure_future(anext(events))
            await asyncio.wait_for(subscriber.caught_up.wait(), 60)
            assert not later.done()
            await h.emit("src", DAYS[1], 1)
            second = await asyncio.wait_for(later, 60)
    assert isinstance(first.data, ef.PipelineRunData)
    assert isinstance(second.data, ef.PipelineRunData)
    assert (first.data.partition, second.data.partition) == (DAYS[0], DAYS[1])


async def test_every_kind_can_be_asked_for_and_filtered(start: Start) -> None:
    async with start(app()) as h:
        await h.emit("src", DAYS[0], 1)
        await h.emit("src", DAYS[1], 1, fail=True)
        await h.publish_raw(b"not an event")
        await h.wait_for_runs(2, timeout=60)
        await h.wait_for(lambda: h.dead_letters() and h.checks(), 60)
        kinds = ["run", "task", "check", "dataset", "deadletter"]
        async with ef.Subscriber(h.settings, kinds=kinds, from_beginning=True, until="now") as s:
            everything = await collect(s)
        types = Counter(e.type for e in everything)
        assert types["eventflow.pipeline.run.succeeded"] == 1
        assert types["eventflow.pipeline.run.failed"] == 1
        assert "eventflow.pipeline.run.started" not in types, "finished_only is the default"
        assert types["eventflow.task.succeeded"] == types["eventflow.task.failed"] == 1
        assert types["eventflow.check.completed"] == 1
        assert types["eventflow.dataset.produced"] == 3, "two announced, one a task's output"
        assert types["eventflow.deadletter"] >= 1

        async with ef.Subscriber(
            h.settings, kinds=["dataset"], datasets=["out"], from_beginning=True, until="now"
        ) as s:
            outputs = await collect(s)
        assert [(e.type, e.data.partition) for e in outputs] == [  # type: ignore[attr-defined]  # a payload's field
            ("eventflow.dataset.produced", DAYS[0])
        ]
        async with ef.Subscriber(
            h.settings,
            kinds=["eventflow.task"],
            statuses=["failed"],
            partitions=[DAYS[1]],
            from_beginning=True,
            until="now",
        ) as s:
            failures = await collect(s)
        assert [e.type for e in failures] == ["eventflow.task.failed"]
        async with ef.Subscriber(
            h.settings, pipelines=["other"], from_beginning=True, until="now"
        ) as s:
            assert await collect(s) == []


async def test_a_replay_from_a_time_or_a_position_starts_there(start: Start) -> None:
    async with start(app()) as h:
        await h.emit("src", DAYS[0], 1)
        await h.wait_for_runs(1, timeout=60)
        async with ef.Subscriber(h.settings, from_beginning=True, until="now") as first:
            [one] = await collect(first)
            where = first.position
        middle = datetime.now(UTC)
        await h.emit("src", DAYS[1], 1)
        await h.wait_for_runs(2, timeout=60)
        async with ef.Subscriber(h.settings, since=middle, until="now") as since:
            from_time = await collect(since)
        async with ef.Subscriber(h.settings, position=where, until="now") as there:
            from_position = await collect(there)
    [two] = [e for e in finished(h) if e.id != one.id]
    assert [e.id for e in from_time] == [two.id]
    assert [e.id for e in from_position] == [two.id]


async def test_a_durable_subscriber_resumes_after_what_it_handled(start: Start) -> None:
    async with start(app()) as h:
        await h.emit("src", DAYS[0], 1)
        await h.wait_for_runs(1, timeout=60)
        async with ef.Subscriber(h.settings, name="board", from_beginning=True) as board:
            first = await asyncio.wait_for(anext(board.events()), 60)
        await h.emit("src", DAYS[1], 1)
        await h.wait_for_runs(2, timeout=60)
        seen: list[ef.Event] = []

        async def fail_handling() -> None:
            async with ef.Subscriber(h.settings, name="board", from_beginning=True) as board:
                seen.append(await asyncio.wait_for(anext(board.events()), 60))
                raise RuntimeError("the handler failed: the event is not handled")

        with pytest.raises(RuntimeError):
            await fail_handling()
        [second] = seen
        async with ef.Subscriber(h.settings, name="board", until="now") as board:
            again = await collect(board)
    assert isinstance(first.data, ef.PipelineRunData)
    assert first.data.partition == DAYS[0]
    assert [e.id for e in again] == [second.id], "the unhandled event comes again, alone"


async def test_options_a_mode_cannot_honour_are_refused(start: Start) -> None:
    async with start(app()) as h:
        with pytest.raises(ef.ConfigurationError, match="resumes where it left off"):
            ef.Subscriber(h.settings, name="board", since=datetime.now(UTC))
        with pytest.raises(ef.ConfigurationError, match="one place to start"):
            ef.Subscriber(h.settings, from_beginning=True, position={"log": 1})
        with pytest.raises(ef.ConfigurationError, match="unknown kind 'runs'"):
            ef.Subscriber(h.settings, kinds=["runs"])
        with pytest.raises(ef.ConfigurationError, match="iterate `events"):
            aiter(ef.Subscriber(h.settings, kinds=["dataset"]))
        foreign = {"log": 1} if isinstance(h, KafkaHarness) else {"eventflow.pipeline-runs/0": 0}
        with pytest.raises(ef.ConfigurationError, match="position"):
            async with ef.Subscriber(h.settings, position=foreign):
                pass


def service(h: Harness, state: Path) -> subprocess.Popen[str]:
    """`examples/subscriber.py` as its own process, on this runtime."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "subscriber.py"), "daily", "--state", str(state)],
        env={**os.environ, **h.env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def notifications(state: Path) -> list[str]:
    if not state.exists():
        return []
    with sqlite3.connect(state) as db:
        try:
            return [run for (run,) in db.execute("SELECT run_id FROM notifications")]
        except sqlite3.OperationalError:  # the service has not created its tables yet
            return []


async def until(condition: object, what: str, timeout: float = 90) -> None:
    """Poll `condition()` (another process's file) until it holds, or fail saying `what`."""
    assert callable(condition)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.05)


async def test_a_durable_subscriber_killed_resumes_with_nothing_missed_or_repeated(
    start: Start, tmp_path: Path
) -> None:
    """Killed after handling three runs, one at a time: the second process gets the runs that
    finished meanwhile, and again at most the one that was in hand at the kill (its
    acknowledgement may not have reached the log); a forgotten position would replay all three
    (the example starts `from_beginning`) and print each as already handled."""
    state = tmp_path / "notifier.db"
    async with start(app()) as h:
        first = service(h, state)
        try:
            assert first.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(first.stdout.readline), 60)
            assert line == "waiting for pipeline runs\n"
            for n, day in enumerate(DAYS[:3], 1):
                await h.emit("src", day, 1)
                await until(lambda n=n: len(notifications(state)) >= n, f"{n} runs handled")
        finally:
            first.send_signal(signal.SIGKILL)
            await asyncio.to_thread(first.communicate, timeout=30)
        for day in DAYS[3:7]:
            await h.emit("src", day, 1)
        runs = await h.wait_for_runs(7, timeout=120)
        second = service(h, state)
        try:
            expected = {r.run_id for r in runs}
            await until(lambda: set(notifications(state)) >= expected, "every run handled")
        finally:
            second.terminate()
            out, _ = await asyncio.to_thread(second.communicate, timeout=30)
    assert second.returncode == 0, out
    assert out.endswith("stopped\n"), out
    again = [line for line in out.splitlines() if line.startswith("already handled")]
    assert len(again) <= 1, f"more than the run in hand came again:\n{out}"
    handled = Counter(notifications(state))
    assert set(handled) == expected, "nothing missed, nothing foreign"
    assert max(handled.values()) == 1, f"handled twice: {handled}"


async def test_a_durable_subscriber_stopped_before_its_first_event_resumes_there(
    start: Start,
) -> None:
    """Its first start (the end of the log) is stored at once, not when it handles an event: a
    subscriber gone before any event gets, once back, what was logged meanwhile."""
    async with start(app()) as h:
        await h.emit("src", DAYS[0], 1)
        await h.wait_for_runs(1, timeout=60)
        async with ef.Subscriber(h.settings, name="pager") as pager:
            assert pager.position, "it stands somewhere"
        for day in DAYS[1:3]:
            await h.emit("src", day, 1)
        await h.wait_for_runs(3, timeout=60)
        async with ef.Subscriber(h.settings, name="pager", until="now") as pager:
            back = await collect(pager)
    partitions = [e.data.partition for e in back]  # type: ignore[attr-defined]  # a run's field
    assert sorted(partitions) == DAYS[1:3], "what came while it was away, not what came before"


async def test_a_position_outside_the_log_or_leaving_out_a_partition_is_refused(
    start: Start,
) -> None:
    async with start(app()) as h:
        await h.emit("src", DAYS[0], 1)
        await h.wait_for_runs(1, timeout=60)
        async with ef.Subscriber(h.settings, from_beginning=True, until="now") as replay:
            await collect(replay)
            end = replay.position
        beyond = {stream: offset + 5 for stream, offset in end.items()}
        with pytest.raises(ef.ConfigurationError, match=r"ends at .*cannot start at"):
            async with ef.Subscriber(h.settings, position=beyond):
                pass
        async with ef.Subscriber(h.settings, position=end, until="now") as there:
            assert await collect(there) == [], "the end itself is a place to start"
        if isinstance(h, KafkaHarness):
            with pytest.raises(ef.ConfigurationError, match="names every partition"):
                async with ef.Subscriber(h.settings, position=dict(list(end.items())[1:])):
                    pass
            runs = h.settings.topic_prefix + "eventflow.pipeline-runs"
            stream, offset = next((s, o) for s, o in end.items() if o > 0)
            partition = int(stream.rsplit("/", 1)[1])
            async with admin._admin(KafkaConfig(h.settings)) as client:  # retention, at once
                await client.delete_records(
                    {TopicPartition(runs, partition): RecordsToDelete(offset)}
                )
            gone = {**end, stream: 0}
            with pytest.raises(ef.ConfigurationError, match="have left the topic"):
                async with ef.Subscriber(h.settings, position=gone):
                    pass


async def test_freshness_events_can_be_subscribed_to(start: Start) -> None:
    """A service told when a dataset is late by its policy, and when it is on time again."""
    feed = ef.Dataset("feed", freshness=ef.Freshness(max_age=1))
    p = ef.Pipeline("reader")

    @p.task(inputs=[feed])
    def read(ctx: ef.TaskContext) -> None:
        pass

    # from the beginning: the violation may come before a live subscriber is assigned
    async with (
        start(ef.App([p])) as h,
        ef.Subscriber(h.settings, kinds=("freshness",), from_beginning=True) as sub,
    ):
        seen = sub.events()
        async with asyncio.timeout(60):
            late = await anext(seen)
            assert isinstance(late, ef.FreshnessViolated)
            assert (late.data.name, late.data.policy) == ("feed", "max_age")
            await h.emit("feed", "", 1)
            back = await anext(seen)
        assert isinstance(back, ef.FreshnessRecovered) and back.data.name == "feed"
