"""The seed pipelines as their users run them: the Prefect-style ETL as a script, and the cron
job whose failure raises an alert inside `eventflow dev`, against a real receiver."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .test_alerts_cli import receiving
from .test_cli import env, wait_for

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_the_etl_retries_extract_and_skips_an_unchanged_export() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "etl.py")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    first, same, changed = done.stdout.split("export: ")[1:]
    assert "extract           ok               2 attempts  -> staging.customers" in first
    for task in ("validate", "compute_features", "load", "notify"):
        assert f"  {task:<16}  ok" in first and f"  {task:<16}  ok" in changed
        assert f"  {task:<16}  skipped" in same
    assert "unchanged since the last extract" in same and "2 attempts" not in changed
    assert "reloaded: 200 rows\nwarehouse.customers reloaded: 250 rows\n" in done.stdout
    work = Path(done.stdout.split("files and state in ", 1)[1].split()[0])
    assert not work.exists()


def test_a_failed_cron_run_raises_its_alert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    with receiving() as receiver:
        monkeypatch.setenv("ALERT_WEBHOOK", receiver.url("/oncall"))
        # the schedule's latest tick runs the job at start; there is no export to publish
        proc = subprocess.Popen(
            [sys.executable, "-m", "eventflow", "dev", str(EXAMPLES / "cron_alert.py")],
            cwd=tmp_path,
            env=env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(lambda: len(receiver.received) >= 1 or proc.poll() is not None, 60)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, out + err
    [request] = receiver.received
    event = request.json()
    assert request.path == "/oncall" and request.headers["x-eventflow-alert"] == "oncall"
    assert event["type"] == "eventflow.pipeline.run.failed"
    assert event["data"]["pipeline"] == "hourly_export"
    [task] = event["data"]["tasks"]
    assert (task["task"], task["status"], task["attempts"]) == ("export_orders", "failed", 3)
    assert not (tmp_path / "published").exists()
