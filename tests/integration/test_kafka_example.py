"""`examples/on_kafka.py`: the daily asset graph with a coordinator and two workers, each its own
process, on the fixture's broker; one day goes through both pipelines and every service stops
cleanly on SIGTERM."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ..kafka_broker import Broker
from .cluster import SIGNING_KEY

pytestmark = pytest.mark.kafka

EXAMPLE = Path(__file__).parents[2] / "examples" / "on_kafka.py"


def test_the_daily_assets_run_on_a_coordinator_and_two_worker_processes(kafka: Broker) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EVENTFLOW_")}
    env = {
        **clean,
        "EVENTFLOW_TOPIC_PREFIX": f"example-{uuid.uuid4().hex[:8]}.",
        "EVENTFLOW_SIGNING_KEY": SIGNING_KEY,
    }
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--bootstrap", kafka.bootstrap],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    pids = re.search(r"pids \[(\d+), (\d+), (\d+)\]", out)
    assert pids is not None, out
    ran = re.findall(r"^(\w+) +(\w+) +ok +on worker [12] \(pid (\d+)\)$", out, re.M)
    # order holds within a pipeline's partition of the topic only
    assert sorted((p, t) for p, t, _ in ran) == [
        ("daily_assets", "daily_revenue"),
        ("daily_assets", "extract_orders"),
        ("reporting", "update_dashboard"),
    ], out
    assert {pid for *_, pid in ran} <= {pids[2], pids[3]}, "tasks run in the worker processes"
    assert "services stopped: exit statuses [0, 0, 0]" in out
    work = Path(out.split("files and logs in ", 1)[1].split()[0])
    assert not work.exists()
