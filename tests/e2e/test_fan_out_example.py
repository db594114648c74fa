"""`examples/fan_out.py` runs as its docstring says and tells the story it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_the_fan_out_example_runs_each_file_and_gathers_them() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "fan_out.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "the first listing of 2026-11-20",
        "  listing   2026-11-20: 3 files",
        "  parse     a.csv (attempt 1)",
        "  parse     b.csv (attempt 2)",
        "  parse     c.csv (attempt 1)",
        "  summarise 2026-11-20: 3 files (a.csv, b.csv, c.csv)",
        "the day is listed again: the new listing supersedes the first",
        "  listing   2026-11-20: 4 files",
        "  parse     b.csv (attempt 2)",
        "  parse     c.csv (attempt 1)",
        "  parse     d.csv (attempt 1)",
        "  parse     e.csv (attempt 1)",
        "  summarise 2026-11-20: 4 files (b.csv, c.csv, d.csv, e.csv)",
    ]
