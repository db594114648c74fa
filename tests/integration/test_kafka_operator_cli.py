"""The operator's commands on Kafka: coordinator, worker and `eventflow server` as processes on
a real broker, the commands through EVENTFLOW_API_URL, each action through the CLI, and the
history store rebuilt from the topics."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

import eventflow as ef
from eventflow.history import HistoryStore

from ..e2e.test_cli import free_port
from ..kafka_broker import Broker
from .cluster import Cluster, wait_for

pytestmark = pytest.mark.kafka

OPERATED = Path(__file__).parents[1] / "e2e" / "pipelines" / "operated.py"
D = "2026-11-20"
TOKEN = "operator-token-0123456789"


class Operator:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "eventflow", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def ok(self, *args: str) -> str:
        done = self(*args)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def js(self, *args: str) -> Any:
        return orjson.loads(self.ok(*args, "--json"))

    def runs(self, pipeline: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.js("runs", "--pipeline", pipeline)["items"]
        return found

    def finished(self, count: int, pipeline: str = "ops") -> list[dict[str, Any]]:
        def done() -> bool:
            found = self.runs(pipeline)
            return len(found) == count and all(r["status"] != "running" for r in found)

        wait_for(done, 90, f"{count} finished runs of {pipeline}")
        return self.runs(pipeline)


def acted(out: str, what: str) -> bool:
    return out.startswith((f"{what}: applied (", f"{what}: published, not yet decided ("))


def test_operator_commands_through_eventflow_server(kafka: Broker, tmp_path: Path) -> None:
    cluster = Cluster(kafka.bootstrap, OPERATED, tmp_path)
    port, release = free_port(), tmp_path / "release"
    cluster.env.update(
        EVENTFLOW_HOME=str(tmp_path / "home"),
        EVENTFLOW_API_TOKEN=TOKEN,
        EVENTFLOW_API_URL=f"http://127.0.0.1:{port}",
    )
    op = Operator(cluster.env)
    coordinator, worker = cluster.start("coordinator"), cluster.start("worker")
    with open(tmp_path / "server.log", "ab") as log:
        args = ["server", "--app", str(OPERATED), "--port", str(port)]
        server = subprocess.Popen(
            [sys.executable, "-m", "eventflow", *args],
            env=cluster.env,
            stdout=log,
            stderr=log,
        )
    try:
        cluster.ready(coordinator, worker)
        wait_for(lambda: op("status").returncode == 0 or server.poll() is not None, 60, "API")
        assert server.poll() is None, (tmp_path / "server.log").read_text()
        op.ok("emit", "raw", "-p", D, "-v", "5")
        [first] = op.finished(1)
        assert f"Recent runs\nops  {D}  ok  " in op.ok("status")
        [tidy] = op.js("run", first["run_id"])["attempts"]
        assert f"tidy #1  raw@{D}:5" in op.ok("run", first["run_id"])
        wait_for(lambda: f"tidying {D}" in op.ok("logs", tidy["run_id"]), 60, "the task's log")
        explained = op.ok("explain", "ops", "join", D).splitlines()
        assert explained[0] == f"ops.join in {D}: waiting: waiting for extra"
        assert f"upstream\n  └─ raw@{D}:5  " in op.ok("lineage", "clean", D)

        assert acted(op.ok("pause", "ops", "--reason", "db down", "--operator", "ada"), "pause ops")
        wait_for(lambda: "✗ pipeline paused" in op.ok("explain", "ops", "tidy", D), 60, "pause")
        kept = op("emit", "raw", "-p", D, "-v", "6")
        assert kept.returncode == 3, kept.stdout + kept.stderr  # nothing happened: paused
        assert "  ops: tidy: waiting for resume (paused by ada)\n" in kept.stdout
        wait_for(lambda: "latest version 6" in op.ok("explain", "ops", "tidy", D), 60, "v6")
        assert len(op.runs("ops")) == 1, "nothing runs while paused"
        assert acted(op.ok("resume", "ops", "--reason", "back"), "resume ops")
        second = op.finished(2)[0]
        [resumed] = op.js("run", second["run_id"])["attempts"]
        assert [i["version"] for i in resumed["inputs"]] == [6]

        rerun = op.ok("rerun", "ops", D, "--task", "tidy", "--reason", "fix", "--operator", "bo")
        assert acted(rerun, f"rerun ops {D} tidy")
        third = op.finished(3)[0]
        assert "task 'tidy' rerun by bo: fix" in third["reason"]
        never = op("rerun", "ops", "2026-11-21", "--reason", "x")
        assert never.returncode == 1 and "never ran in partition '2026-11-21'" in never.stderr

        op.ok("emit", "gate", "-p", D, "--meta", f"release={release}")
        wait_for(lambda: [r["status"] for r in op.runs("held")] == ["running"], 60, "held run")
        cancelled = op.ok("cancel", "held", D, "--reason", "wrong input", "--operator", "cy")
        assert acted(cancelled, f"cancel held {D}")
        [stopped] = op.finished(1, "held")
        assert "cancelled by cy: wrong input" in stopped["reason"]
        release.touch()
        live = op.js("runs", "--limit", "1000")["items"]
    finally:
        release.touch()
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        cluster.stop()

    rebuilt = op("history", "rebuild", "--app", str(OPERATED))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout.startswith("history rebuilt from the topics")

    async def read() -> list[dict[str, Any]]:
        store = HistoryStore.of(ef.Settings(home=tmp_path / "home"))
        async with store:
            page = await store.runs(limit=1000)
        return [run.model_dump(mode="json") for run in page.items]

    assert asyncio.run(read()) == live
