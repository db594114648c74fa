"""Trace context on events, and OpenTelemetry spans when tracing is on.

A W3C `traceparent` (and `tracestate`) rides on the events themselves, as CloudEvents extension
attributes (the distributed-tracing extension), so it survives Kafka, the state log and restarts
the way the events do. Whatever eventflow derives from an event carries the event's context on
(`Trace.of`, `Trace.stamp`); with tracing off that is all that happens: a string carried, no SDK
imported.

With tracing on (`Settings.otel`, or the standard `OTEL_*` variables), a `Tracer` records spans
and hands out their context in place of the one it was given, so the events a span caused name
it as their parent: `publish` where an announcement from outside comes in, `decide` for a
coordinator decision that requests task runs, `task` for each attempt a worker runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import ConfigurationError
from .events import Event

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from .settings import Settings

#: `version-traceid-parentid-flags`, lowercase hex; an all-zero id is invalid.
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
INSTALL = "pip install 'eventflow[otel]'"
E = TypeVar("E", bound=Event)


@dataclass(frozen=True, slots=True)
class Trace:
    """A W3C trace context: `traceparent`, and the vendors' `tracestate` if any."""

    parent: str
    state: str | None = None

    @classmethod
    def parse(cls, parent: object, state: object = None) -> Trace | None:
        """The context if `parent` is a valid `traceparent` (anything else is dropped, as W3C
        says a receiver does)."""
        if not isinstance(parent, str):
            return None
        found = _TRACEPARENT.match(parent)
        if found is None or not found[1].strip("0") or not found[2].strip("0"):
            return None
        return cls(parent, state if isinstance(state, str) and state else None)

    @classmethod
    def of(cls, event: Event) -> Trace | None:
        """The context an event carries, if any."""
        extra = event.__pydantic_extra__
        if not extra or "traceparent" not in extra:
            return None
        return cls.parse(extra["traceparent"], extra.get("tracestate"))

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Trace | None:
        """From HTTP headers (lowercase names, as Starlette gives them)."""
        return cls.parse(headers.get("traceparent"), headers.get("tracestate"))

    @property
    def trace_id(self) -> str:
        return self.parent[3:35]

    @property
    def span_id(self) -> str:
        return self.parent[36:52]

    def attributes(self) -> dict[str, str]:
        """As extension attributes of an event."""
        if self.state is None:
            return {"traceparent": self.parent}
        return {"traceparent": self.parent, "tracestate": self.state}

    def stamp(self, event: E) -> E:
        """`event` carrying this context, unless it carries one of its own."""
        extra = event.__pydantic_extra__
        if extra and "traceparent" in extra:
            return event
        return event.model_copy(update=self.attributes())


def stamp(event: E, trace: Trace | None) -> E:
    return event if trace is None else trace.stamp(event)


class Span:
    """A span being recorded: its context, for the events it causes, and its outcome."""

    def __init__(self, span: Any) -> None:
        self._span = span
        ctx = span.get_span_context()
        state = ctx.trace_state.to_header() if ctx.trace_state else ""
        self.trace = Trace(
            f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}",
            state or None,
        )

    def set(self, **attributes: str | int | bool) -> None:
        self._span.set_attributes({f"eventflow.{k}": v for k, v in attributes.items()})

    def fail(self, description: str) -> None:
        from opentelemetry.trace import Status, StatusCode

        self._span.set_status(Status(StatusCode.ERROR, description))


class Tracer:
    """Spans of one process, through an OpenTelemetry SDK `TracerProvider`."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self._tracer = provider.get_tracer("eventflow")
        self._propagator = TraceContextTextMapPropagator()

    @contextmanager
    def span(
        self,
        name: str,
        parent: Trace | None,
        *,
        start: int | None = None,
        **attributes: str | int | bool,
    ) -> Iterator[Span]:
        """A span child of `parent` (a new trace without one), from `start` (ns since the
        epoch; now if None) to the way out."""
        context = None
        if parent is not None:
            context = self._propagator.extract(parent.attributes())
        with self._tracer.start_as_current_span(
            name,
            context=context,
            start_time=start or None,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            handle = Span(span)
            handle.set(**attributes)
            yield handle

    def shutdown(self) -> None:
        """Export what is left; the provider records nothing more."""
        self.provider.shutdown()


def enabled(settings: Settings) -> bool:
    """`Settings.otel` if set; else whether the standard variables ask for an exporter."""
    if settings.otel is not None:
        return settings.otel
    exporter = (settings.environment("OTEL_TRACES_EXPORTER") or "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        settings.environment("OTEL_EXPORTER_OTLP_ENDPOINT")
        or settings.environment("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def from_settings(settings: Settings, service: str) -> Tracer | None:
    """The process's tracer, exporting with OTLP (or `console`, as `OTEL_TRACES_EXPORTER`
    says), or None when tracing is off. The exporter reads the standard `OTEL_EXPORTER_OTLP_*`
    variables itself (endpoint, headers, protocol: `http/protobuf` unless it says `grpc`)."""
    if not enabled(settings):
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SpanExporter,
        )
    except ImportError as e:
        raise ConfigurationError(f"tracing needs OpenTelemetry: {INSTALL}") from e
    name = settings.environment("OTEL_SERVICE_NAME") or f"eventflow-{service}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    kind = (settings.environment("OTEL_TRACES_EXPORTER") or "otlp").strip().lower()
    exporter: SpanExporter
    if kind == "console":
        exporter = ConsoleSpanExporter()
    elif kind == "otlp":
        exporter = _otlp(settings)
    else:
        raise ConfigurationError(
            f"OTEL_TRACES_EXPORTER={kind!r}: eventflow knows otlp, console, none"
        )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return Tracer(provider)


def _otlp(settings: Settings) -> Any:
    protocol = (
        settings.environment("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or settings.environment("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    try:
        if protocol.strip() == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]  # the other protocol's class of one name
                OTLPSpanExporter,
            )
    except ImportError as e:
        raise ConfigurationError(f"exporting traces with OTLP needs its exporter: {INSTALL}") from e
    return OTLPSpanExporter()
