"""Trace context through the embedded runtime, and the spans it records (in memory)."""

from __future__ import annotations

import builtins
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import eventflow as ef
from eventflow import capture, tracing
from eventflow.errors import ConfigurationError
from eventflow.events import (
    DatasetProduced,
    DatasetProducedData,
    Event,
    TaskRef,
    TaskStarted,
    TaskSucceeded,
)
from eventflow.testing import EmbeddedHarness
from eventflow.tracing import Trace, Tracer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"

raw, mid, out = ef.Dataset("raw"), ef.Dataset("mid"), ef.Dataset("out")


def chain() -> ef.App:
    """raw -> first -> mid -> second -> out."""
    p = ef.Pipeline("chain")

    @p.task(inputs=[raw], outputs=[mid])
    async def first(ctx: ef.TaskContext) -> None:
        ctx.log.info("first ran")
        ctx.emit(mid)

    @p.task(inputs=[mid], outputs=[out])
    async def second(ctx: ef.TaskContext) -> None:
        ctx.emit(out)

    return ef.App([p])


def failing() -> ef.App:
    p = ef.Pipeline("broken")

    @p.task(inputs=[raw], outputs=[out], retries=ef.Retry(count=1, backoff_s=0.01))
    async def explode(ctx: ef.TaskContext) -> None:
        raise RuntimeError("boom")

    return ef.App([p])


@pytest.fixture
def spans() -> Iterator[tuple[Tracer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Tracer(provider), exporter
    provider.shutdown()


def announce(**extensions: Any) -> DatasetProduced:
    data = DatasetProducedData(dataset="raw", version=1)
    return DatasetProduced.of(data, **extensions)


def by_name(finished: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return sorted((s for s in finished if s.name == name), key=lambda s: s.start_time or 0)


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_a_traceparent_is_carried_through_every_event_without_a_tracer() -> None:
    async with EmbeddedHarness(chain()) as h:
        await h.publish(announce(traceparent=PARENT, tracestate="vendor=1"))
        await h.wait_idle()
        after = [e for e in h.events if e.type != "eventflow.dataset.produced" or e.data]
        kinds = {e.type for e in after}
    assert {
        "eventflow.decision",
        "eventflow.pipeline.input",
        "eventflow.task.started",
        "eventflow.task.log",
        "eventflow.task.succeeded",
        "eventflow.pipeline.run.started",
        "eventflow.pipeline.run.succeeded",
    } <= kinds
    # Nothing records spans: the context is carried on as it came, to the last event.
    assert {(e.type, Trace.of(e)) for e in after} == {
        (e.type, Trace(PARENT, "vendor=1")) for e in after
    }


async def test_an_event_without_a_traceparent_gets_none_when_tracing_is_off() -> None:
    async with EmbeddedHarness(chain()) as h:
        await h.emit("raw")
        await h.wait_idle()
        assert h.events
        assert all(e.extensions == {} for e in h.events)


async def test_a_kafka_style_traceparent_header_is_taken_into_the_event() -> None:
    async with EmbeddedHarness(chain()) as h:
        raw_event = orjson.dumps(announce().model_dump(mode="json", exclude_none=True))
        await h.publish_raw(raw_event, headers=[("traceparent", PARENT.encode())])
        await h.wait_idle()
        started = [e for e in h.events if isinstance(e, TaskStarted)]
    assert [Trace.of(e) for e in started] == [Trace(PARENT), Trace(PARENT)]


async def test_one_trace_from_publish_through_both_tasks(
    spans: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    async with EmbeddedHarness(chain(), tracer=tracer) as h:
        await h.publish(announce(traceparent=PARENT))
        await h.wait_idle()
        events = h.events
    finished = exporter.get_finished_spans()
    assert {s.context.trace_id for s in finished} == {int(TRACE_ID, 16)}
    [publish] = by_name(finished, "publish")
    decide_first, decide_second = by_name(finished, "decide")
    task_first, task_second = by_name(finished, "task")
    # publish -> decide -> task first -> decide -> task second, each the child of the last.
    assert parent_of(publish) == int("00f067aa0ba902b7", 16)
    assert parent_of(decide_first) == publish.context.span_id
    assert parent_of(task_first) == decide_first.context.span_id
    assert parent_of(decide_second) == task_first.context.span_id
    assert parent_of(task_second) == decide_second.context.span_id
    assert task_first.attributes is not None and task_second.attributes is not None
    assert task_first.attributes["eventflow.task"] == "first"
    assert task_first.attributes["eventflow.pipeline"] == "chain"
    assert task_first.attributes["eventflow.attempt"] == 1
    assert task_first.attributes["eventflow.outcome"] == "succeeded"
    assert str(task_first.attributes["eventflow.run_id"]).startswith("first:")
    assert task_second.status.status_code != StatusCode.ERROR
    # The events name the span that caused them: a task's result its task span, the outputs
    # and run outcome the decision on it (the task span, here: no run was requested).
    [done] = [e for e in events if isinstance(e, TaskSucceeded) and e.data.task == "second"]
    assert Trace.of(done) == Trace(f"00-{TRACE_ID}-{task_second.context.span_id:016x}-01")


async def test_publish_starts_a_trace_when_the_event_brings_none(
    spans: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    async with EmbeddedHarness(chain(), tracer=tracer) as h:
        await h.emit("raw")
        await h.wait_idle()
    finished = exporter.get_finished_spans()
    [publish] = by_name(finished, "publish")
    assert publish.parent is None
    assert len(by_name(finished, "task")) == 2
    assert {s.context.trace_id for s in finished} == {publish.context.trace_id}


async def test_a_failed_attempt_is_marked_and_its_retry_stays_in_the_trace(
    spans: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    async with EmbeddedHarness(failing(), tracer=tracer) as h:
        await h.publish(announce(traceparent=PARENT))
        await h.wait_for_runs(1)
        await h.wait_idle()
    finished = exporter.get_finished_spans()
    tasks = by_name(finished, "task")
    assert len(tasks) == 2
    assert {s.context.trace_id for s in finished} == {int(TRACE_ID, 16)}
    for attempt, span in enumerate(tasks, 1):
        assert span.status.status_code == StatusCode.ERROR
        assert span.status.description == "RuntimeError: boom"
        assert span.attributes is not None
        assert span.attributes["eventflow.attempt"] == attempt
        assert span.attributes["eventflow.outcome"] == "failed"
    # The retry was decided on a timer: its decide span is the child of the first one.
    first_decide, retry_decide = by_name(finished, "decide")
    assert parent_of(retry_decide) == first_decide.context.span_id
    assert parent_of(tasks[1]) == retry_decide.context.span_id


def test_only_a_valid_traceparent_is_taken() -> None:
    assert Trace.parse(PARENT) == Trace(PARENT)
    assert Trace.parse(PARENT, "") == Trace(PARENT)
    for bad in (
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
        f"00-{TRACE_ID}-" + "0" * 16 + "-01",
        f"00-{TRACE_ID.upper()}-00f067aa0ba902b7-01",
        "nonsense",
        7,
    ):
        assert Trace.parse(bad) is None
    event: Event = announce(traceparent="nonsense")
    assert Trace.of(event) is None


def test_tracing_is_on_as_the_setting_or_the_standard_variables_say(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert not tracing.enabled(ef.Settings())
    assert tracing.enabled(ef.Settings(otel=True))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert tracing.enabled(ef.Settings())
    assert not tracing.enabled(ef.Settings(otel=False))
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert not tracing.enabled(ef.Settings())
    assert tracing.from_settings(ef.Settings(), "dev") is None


def test_a_missing_extra_names_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    real = builtins.__import__

    def without_otel(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("opentelemetry"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_otel)
    with pytest.raises(ConfigurationError) as caught:
        tracing.from_settings(ef.Settings(otel=True), "worker")
    assert "pip install 'eventflow[otel]'" in str(caught.value)


def test_json_lines_of_an_attempt_name_its_run_and_trace() -> None:
    formatter = capture.JsonFormatter()
    ref = TaskRef(run_id="t:k:1", task="t", pipeline="p", partition="2026-11-22", attempt=2)
    record = logging.LogRecord("eventflow.task.t", logging.INFO, "", 0, "hi %s", ("x",), None)
    outside = orjson.loads(formatter.format(record))
    assert set(outside) == {"time", "level", "logger", "message"}
    with capture.attempt(ref.run_id, ref=ref, trace=Trace(PARENT)):
        line = orjson.loads(formatter.format(record))
    assert line["message"] == "hi x"
    assert line["level"] == "INFO"
    assert line["logger"] == "eventflow.task.t"
    assert (line["run_id"], line["pipeline"], line["task"], line["partition"]) == (
        "t:k:1",
        "p",
        "t",
        "2026-11-22",
    )
    assert line["attempt"] == 2
    assert (line["trace_id"], line["span_id"]) == (TRACE_ID, "00f067aa0ba902b7")
