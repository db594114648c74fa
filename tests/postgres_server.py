"""The real PostgreSQL server the history tests use: one this session starts with the project's
script (`scripts/postgres.py`). With EVENTFLOW_REQUIRE_POSTGRES=1 a missing server fails, never
skips."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "scripts" / "postgres.py"


def required() -> bool:
    return os.environ.get("EVENTFLOW_REQUIRE_POSTGRES") == "1"


def unavailable(reason: str) -> None:
    if required():
        pytest.fail(
            f"EVENTFLOW_REQUIRE_POSTGRES=1 but no PostgreSQL server: {reason}", pytrace=False
        )
    pytest.skip(f"no PostgreSQL server: {reason}")


def start_postgres(folder: Path) -> Iterator[str]:
    """The URL of a server started for the session, stopped when it ends."""
    try:
        done = subprocess.run(
            [sys.executable, str(SCRIPT), "up", "--dir", str(folder)],
            capture_output=True,
            text=True,
            timeout=180,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        unavailable(str(e))
        return
    if done.returncode != 0:
        unavailable(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed")
        return
    try:
        yield done.stdout.strip()
    finally:
        subprocess.run(
            [sys.executable, str(SCRIPT), "down", "--dir", str(folder)],
            capture_output=True,
            timeout=120,
        )
