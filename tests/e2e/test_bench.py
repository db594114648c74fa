"""The benchmarks still run (a few events each); they assert no timing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from ..kafka_broker import Broker

ROOT = Path(__file__).parents[2]

pytestmark = pytest.mark.slow


def bench(out: Path, *args: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-m", "bench", *args, "--events", "5", "--warmup",
                           "1", "--states", "2000", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "to_body_ms" in done.stdout and f"written to {out}" in done.stdout
    report: dict[str, object] = orjson.loads(out.read_bytes())
    return report


@pytest.mark.timeout(300)
def test_bench_smoke_embedded(tmp_path: Path) -> None:
    report = bench(tmp_path / "r.json", "--runtime", "embedded")
    machine = report["machine"]
    assert isinstance(machine, dict) and machine["cores"] and machine["commit"]
    results: Any = report["results"]
    assert results["latency/embedded"]["to_body_ms"]["n"] == 5
    assert results["chain10/embedded"]["per_hop_ms"]["n"] == 100
    assert results["fanout/embedded"]["total_ms"]["n"] == 3
    assert 0 < results["fanout/embedded"]["coordinator_share"]
    assert results["throughput/embedded"]["external_events"] == 10
    assert results["throughput/embedded"]["all_events_per_s"] > 0
    state = results["state/embedded"]
    assert state["states"] == 2000 and state["rss_mib"] > 0 and state["stored_state_b"] > 100


@pytest.mark.kafka
@pytest.mark.timeout(300)
def test_bench_smoke_kafka(kafka: Broker, tmp_path: Path) -> None:
    report = bench(tmp_path / "r.json", "latency", "fanout", "state", "failover", "--runtime",
                   "kafka", "--bootstrap", kafka.bootstrap, "--kills", "1",
                   "--session-timeouts-ms", "2000")  # fmt: skip
    results: Any = report["results"]
    assert results["latency/kafka"]["floor_ms"]["n"] == 5
    assert 0 < results["fanout/kafka"]["coordinator_share"]
    assert results["state/kafka"]["states"] == 2000
    assert results["state/kafka"]["takeover_assignments"] >= 1
    assert results["failover/kafka/2s"]["stall_ms"]["n"] == 1
