"""One trace across real coordinator and worker processes, exported with the real OTLP/HTTP
exporter to a receiver in the test, which decodes the protobuf as a collector would."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from eventflow.events import DatasetProduced, DatasetProducedData, encode

from ..kafka_broker import Broker
from .cluster import Cluster, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN = "b7ad6b7169203331"

PIPELINE = """
import eventflow as ef

raw, mid, out = ef.Dataset("raw"), ef.Dataset("mid"), ef.Dataset("out")
p = ef.Pipeline("chain")


@p.task(inputs=[raw], outputs=[mid])
async def first(ctx: ef.TaskContext) -> None:
    ctx.log.info("first ran")
    ctx.emit(mid)


@p.task(inputs=[mid], outputs=[out])
async def second(ctx: ef.TaskContext) -> None:
    ctx.emit(out)


app = ef.App([p])
"""


@dataclass(frozen=True)
class Received:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent: str
    attributes: dict[str, object]
    error: bool


class Receiver:
    """An OTLP/HTTP traces endpoint (`POST /v1/traces`, protobuf) that keeps every span."""

    def __init__(self) -> None:
        self.spans: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.take(request)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def take(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            service = next(
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            )
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    attributes: dict[str, object] = {
                        a.key: a.value.string_value or a.value.int_value for a in span.attributes
                    }
                    with self.lock:
                        self.spans.append(
                            Received(
                                service,
                                span.name,
                                span.trace_id.hex(),
                                span.span_id.hex(),
                                span.parent_span_id.hex(),
                                attributes,
                                span.status.code == Status.STATUS_CODE_ERROR,
                            )
                        )

    def named(self, name: str) -> list[Received]:
        with self.lock:
            return [s for s in self.spans if s.name == name]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    made.thread.start()
    yield made
    made.server.shutdown()
    made.server.server_close()


@pytest.fixture
def cluster(kafka: Broker, tmp_path: Path, receiver: Receiver) -> Iterator[Cluster]:
    app = tmp_path / "chain.py"
    app.write_text(PIPELINE)
    made = Cluster(kafka.bootstrap, app, tmp_path)
    made.env |= {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "NO_PROXY": "127.0.0.1",
        "EVENTFLOW_LOG_FORMAT": "json",
    }
    yield made
    made.stop()


def test_one_trace_from_publish_through_coordinator_and_worker_processes(
    cluster: Cluster, receiver: Receiver
) -> None:
    coordinator, worker = cluster.start("coordinator"), cluster.start("worker")
    cluster.ready(coordinator, worker)
    # The context as OpenTelemetry's Kafka instrumentations send it: a record header.
    announced = DatasetProduced.of(DatasetProducedData(dataset="raw", version=1))
    context = f"00-{TRACE_ID}-{PARENT_SPAN}-01".encode()
    cluster.publish_raw(encode(announced), key=b"raw", headers=[("traceparent", context)])
    wait_for(  # each process exports its spans in batches of its own, in no common order
        lambda: len(receiver.named("task")) == 2 and len(receiver.named("decide")) == 2,
        90,
        "both task spans and both decide spans exported",
        lambda: f"{receiver.spans}\n{coordinator.describe()}\n{worker.describe()}",
    )
    [publish] = receiver.named("publish")
    first_decide, second_decide = sorted(
        receiver.named("decide"), key=lambda s: str(s.attributes["eventflow.tasks"])
    )
    [first] = [s for s in receiver.named("task") if s.attributes["eventflow.task"] == "first"]
    [second] = [s for s in receiver.named("task") if s.attributes["eventflow.task"] == "second"]
    # One trace, across both processes, each span the child of the one before it.
    chain = [publish, first_decide, first, second_decide, second]
    assert {s.trace_id for s in chain} == {TRACE_ID}
    assert publish.parent == PARENT_SPAN
    for parent, child in itertools.pairwise(chain):
        assert child.parent == parent.span_id, (parent, child)
    assert [s.service for s in chain] == [
        "eventflow-coordinator",
        "eventflow-coordinator",
        "eventflow-worker",
        "eventflow-coordinator",
        "eventflow-worker",
    ]
    assert first.attributes["eventflow.pipeline"] == "chain"
    assert first.attributes["eventflow.attempt"] == 1
    assert first.attributes["eventflow.outcome"] == "succeeded"
    assert not first.error and not second.error
    # The worker's stderr is JSON throughout; the task's line names its run and trace.
    lines = [orjson.loads(line) for line in worker.log.read_text().splitlines()]
    [ran] = [line for line in lines if line["message"] == "first ran"]
    assert ran["trace_id"] == TRACE_ID
    assert ran["span_id"] == first.span_id
    assert ran["run_id"] == first.attributes["eventflow.run_id"]
    assert (ran["pipeline"], ran["task"], ran["partition"]) == ("chain", "first", "")
