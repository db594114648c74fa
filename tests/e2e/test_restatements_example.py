"""`examples/restatements.py` runs as its docstring says and tells the story it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_the_restatements_example_re_runs_only_the_corrected_day() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "restatements.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    first, _, after = done.stdout.partition("three corrections of 2026-11-20 in a burst\n")
    assert first.count("cleanse ") == first.count("report ") == first.count("announce ") == 2
    lines = after.splitlines()
    assert lines[0] == "  (cleanse: debouncing until 2026-01-01T00:02:20+00:00)"
    assert sorted(lines[1:3]) == [
        "  cleanse   2026-11-20 on orders version 4",
        "  report    2026-11-20 from 104 rows",
    ], "one run on the newest correction, for that day only"
    assert lines[3:] == [
        "  announce  2026-11-20 not again: restated shop.revenue ignored (restatements='ignore')"
    ]
