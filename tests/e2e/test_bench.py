"""The benchmarks still run (a few events each); they assert no timing."""

from __future__ import annotations

import shutil
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
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            *args,
            "--events",
            "5",
            "--warmup",
            "1",
            "--states",
            "2000",
            "--ui-runs",
            "10",
            "--loads",
            "2",
            "--backfill",
            "20",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
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
    latency = results["latency/embedded"]
    assert latency["to_body_ms"]["n"] == 5
    for floor in ("floor_ms", "floor_queue_ms", "floor_commit_ms"):  # the same run's floor
        assert latency[floor]["n"] == 5 and latency[floor]["p50"] > 0
    assert latency["to_body_over_floor_p99"] == round(
        latency["to_body_ms"]["p99"] / latency["floor_ms"]["p99"], 1
    )
    assert results["chain10/embedded"]["per_hop_ms"]["n"] == 100
    assert results["fanout/embedded"]["total_ms"]["n"] == 3
    assert results["fanout/embedded"]["coordinator_share"] > 0
    assert results["throughput/embedded"]["external_events"] == 10
    assert results["throughput/embedded"]["all_events_per_s"] > 0
    # the CPU of each process over the measured run, the history process apart
    assert {"cpu_s_dev", "cpu_s_dev_children"} <= results["throughput/embedded"].keys()
    state = results["state/embedded"]
    assert state["states"] == 2000 and state["rss_mib"] > 0 and state["stored_state_b"] > 100
    inprocess = results["inprocess/embedded"]  # the runtime in the bench's process
    assert inprocess["task_runs"] == 100 and inprocess["cpu_us_per_run"] > 0
    assert inprocess["main_thread_us_per_run"] > 0 and inprocess["history_child_us_per_run"] > 0
    memory = results["memory/embedded"]
    assert memory["states"] == 2000 and memory["dataset_states"] == 4000
    assert memory["traced_per_state_b"] > memory["stored_state_b"] > 100
    # Compact states: 2,000 of them may not move the resident size by a whole MiB.
    assert memory["rss_mib"] >= memory["rss_empty_mib"] > 0
    assert results["ui/embedded"]["runs"] == 10
    assert results["backfill/embedded"]["partitions"] == 20
    assert results["backfill/planning/embedded"]["partitions"] == 20
    projection = results["projection/embedded"]  # ten chain runs of 43 events, all projected
    assert projection["events"] == 430 and projection["cpu_us_per_event"] > 0


@pytest.mark.kafka
@pytest.mark.timeout(420)
def test_bench_smoke_kafka(kafka: Broker, tmp_path: Path) -> None:
    report = bench(
        tmp_path / "r.json",
        "latency",
        "chain10",
        "fanout",
        "state",
        "failover",
        "scaling",
        "--runtime",
        "kafka",
        "--bootstrap",
        kafka.bootstrap,
        "--scaling-rounds",
        "1",
        "--kills",
        "1",
        "--session-timeouts-ms",
        "2000",
    )
    results: Any = report["results"]
    latency = results["latency/kafka"]
    assert latency["floor_ms"]["n"] == 5
    assert latency["to_body_over_floor_p99"] == round(
        latency["to_body_ms"]["p99"] / latency["floor_ms"]["p99"], 1
    )
    chain = results["chain10/kafka"]
    assert chain["floor_transaction_ms"]["n"] == chain["per_hop_ms"]["n"] == 100
    assert chain["per_hop_over_two_transactions_p50"] == round(
        chain["per_hop_ms"]["p50"] / (2 * chain["floor_transaction_ms"]["p50"]), 2
    )
    assert results["fanout/kafka"]["coordinator_share"] > 0
    assert results["state/kafka"]["states"] == 2000
    assert results["state/kafka"]["takeover_assignments"] >= 1
    assert results["failover/kafka/2s"]["stall_ms"]["n"] == 1
    scaling = results["scaling/kafka"]
    assert scaling["one_dataset_events_per_s"] > 0 and scaling["two_dataset_events_per_s"] > 0


def soak(out: Path, *args: str) -> dict[str, Any]:
    """A few seconds of `python -m bench soak`; its figures per runtime."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "soak",
            "--minutes",
            "0.1",
            "--rate",
            "20",
            "--partitions",
            "20",
            "--sample-s",
            "1",
            "--out",
            str(out),
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "runs" in done.stdout and f"written to {out}" in done.stdout
    results: dict[str, Any] = orjson.loads(out.read_bytes())["results"]
    return results


def exactly_once(figures: dict[str, Any], services: list[str]) -> None:
    """Every event answered once (by its own run or one it joined), every task run once."""
    assert figures["published"] == 120
    assert figures["outcomes"] + figures["merged"] == figures["published"]
    assert figures["lost"] == figures["duplicated"] == figures["unexpected"] == 0
    assert figures["failed"] == figures["retried"] == figures["task_runs_duplicated"] == 0
    assert figures["task_runs"] > 0
    samples = figures["samples"]
    assert len(samples) >= 2 and samples[-1]["runs"] == figures["outcomes"]
    for service in services:
        assert all(s["rss_mib"][service] > 0 for s in samples)
        assert figures[f"rss_mib.{service}"]["max"] > 0


@pytest.mark.timeout(300)
@pytest.mark.parametrize("partitions", [[], ["--new-partitions"]], ids=["fixed", "new"])
def test_soak_smoke_embedded(tmp_path: Path, partitions: list[str]) -> None:
    figures = soak(tmp_path / "r.json", "--runtime", "embedded", *partitions)["soak/embedded"]
    exactly_once(figures, ["dev"])


@pytest.mark.kafka
@pytest.mark.timeout(300)
def test_soak_smoke_kafka(kafka: Broker, tmp_path: Path) -> None:
    results = soak(tmp_path / "r.json", "--runtime", "kafka", "--bootstrap", kafka.bootstrap)
    figures = results["soak/kafka"]
    exactly_once(figures, ["coordinator", "worker"])
    for sample in figures["samples"]:  # read from each service's eventflow_consumer_lag
        assert isinstance(sample["lag"]["coordinator"], int)
        assert isinstance(sample["lag"]["worker"], int)


@pytest.mark.timeout(300)
def test_bench_ui_measures_each_page_it_serves(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    args = ["ui", "--runtime", "embedded", "--ui-runs", "10", "--loads", "2", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    figures: Any = orjson.loads(out.read_bytes())["results"]["ui/embedded"]
    assert figures["runs"] == figures["partitions"] == 10 and figures["errors"] == "none"
    missing = [m for m in figures["missing"].split(", ") if m != "none"]
    pages = ("graph", "datasets", "dataset", "pipelines", "pipeline", "run", "why", "events")
    for page in (*pages, "deadletters"):
        # every page is measured, or reported as not in this build
        assert page in missing or figures[f"server_ms.{page}"]["n"] == 2
    assert figures["server_ms.events"]["bytes"] > 1000  # ten runs' events, not an empty page
    if shutil.which("chromium"):
        assert figures["browser_ms.events"]["n"] == 2


@pytest.mark.timeout(300)
def test_bench_against_a_revision_reports_both_sides_with_their_ratio(tmp_path: Path) -> None:
    out = tmp_path / "ab.json"
    args = ["latency", "--runtime", "embedded", "--events", "3", "--warmup", "1"]
    args += ["--against", "HEAD", "--rounds", "2", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report: Any = orjson.loads(out.read_bytes())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    assert report["against"]["commit"] == head.stdout.strip()
    assert len(report["reports"]["current"]) == len(report["reports"]["other"]) == 2
    row = report["figures"]["latency/embedded to_body_ms.p50"]
    assert len(row["rounds"]["current"]) == len(row["rounds"]["other"]) == 2
    assert row["ratio"] == pytest.approx(row["current"] / row["other"], rel=1e-2)
    assert "latency/embedded to_body_ms.p50" in done.stdout and "ratio" in done.stdout
    assert (
        report["other_machine"]["libraries"]["pydantic"]
        == report["machine"]["libraries"]["pydantic"]
    )
    worktrees = subprocess.run(
        ["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True
    )
    assert "eventflow-ab-" not in worktrees.stdout  # removed afterwards


@pytest.mark.timeout(60)
def test_bench_against_a_revision_without_the_scenario_says_so(tmp_path: Path) -> None:
    first = subprocess.run(
        ["git", "rev-list", "--max-parents=0", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()[0]
    args = ["latency", "--runtime", "embedded", "--against", first]
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--out", str(tmp_path / "ab.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert f"({first[:10]}) has no" in done.stderr
    assert not (tmp_path / "ab.json").exists()
