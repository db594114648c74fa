"""The benchmarks still run (a few events each); they assert no timing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from ..kafka_broker import Broker

ROOT = Path(__file__).parents[2]

pytestmark = pytest.mark.slow


def bench(out: Path, *args: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-m", "bench", *args, "--events", "5", "--warmup",
                           "1", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "to_body_ms" in done.stdout and f"written to {out}" in done.stdout
    report: dict[str, object] = orjson.loads(out.read_bytes())
    return report


def test_bench_smoke_embedded(tmp_path: Path) -> None:
    report = bench(tmp_path / "r.json", "latency", "chain10", "--runtime", "embedded")
    machine = report["machine"]
    assert isinstance(machine, dict) and machine["cores"] and machine["commit"]
    results = report["results"]
    assert isinstance(results, dict)
    assert results["latency/embedded"]["to_body_ms"]["n"] == 5  # type: ignore[index]
    assert results["chain10/embedded"]["per_hop_ms"]["n"] == 100  # type: ignore[index]


@pytest.mark.kafka
def test_bench_smoke_kafka(kafka: Broker, tmp_path: Path) -> None:
    report = bench(tmp_path / "r.json", "latency", "--runtime", "kafka", "--bootstrap",
                   kafka.bootstrap)  # fmt: skip
    results = report["results"]
    assert isinstance(results, dict)
    assert results["latency/kafka"]["floor_ms"]["n"] == 5  # type: ignore[index]
