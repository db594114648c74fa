"""`examples/daily_assets.py`, run as the README says: its 30-day backfill reaches done, each day
once through both pipelines, with its progress printed, and it leaves nothing behind."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "daily_assets.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, timeout=120
    )


def work_of(out: str) -> Path:
    return Path(out.split("files and state in ", 1)[1].split()[0])


def test_the_daily_assets_example_backfills_30_days_through_both_pipelines() -> None:
    done = run()
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert not work_of(out).exists(), "the example's files are removed when it ends"

    # progress as runs end, up to every day done
    shown = [int(n) for n in re.findall(r"\] +(\d+)/30 done", out)]
    assert shown == sorted(shown) and len(shown) > 2 and shown[-1] == 30
    final = re.search(
        r"backfill bf-last-30-days done: 30 planned, (\d+) started, (\d+) succeeded, "
        r"0 failed, (\d+) skipped",
        out,
    )
    assert final is not None, out
    started, succeeded, skipped = map(int, final.groups())
    # today's partition runs from the schedule's latest tick; at most that day is skipped
    assert started == succeeded >= 29 and started + skipped == 30
    days = re.findall(r"(daily_assets|reporting) +(\d+) runs succeeded, 0 failed, over (\d+)", out)
    assert len(days) == 2 and len({(runs, over) for _, runs, over in days}) == 1, out
    runs, over = days[0][1:]
    assert runs == over and int(over) in (30, 31)  # reporting ran once per day, no more
    assert f"check orders_are_valid      passed {over} times" in out
    assert f"dashboard: {over} days" in out
    assert "freshness: no day of revenue late" in out


def test_the_daily_assets_example_keeps_its_warehouse_when_asked() -> None:
    done = run("--keep")
    work = work_of(done.stdout)
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        assert len(list((work / "warehouse" / "dashboard").glob("*.json"))) >= 30
        assert (work / ".eventflow" / "eventflow.db").exists()
    finally:
        shutil.rmtree(work, ignore_errors=True)
