"""The real broker the Kafka tests use: $EVENTFLOW_KAFKA_BOOTSTRAP, or one this session starts
with the project's script. With EVENTFLOW_REQUIRE_KAFKA=1 a missing broker fails, never skips."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "scripts" / "kafka_broker.py"


def required() -> bool:
    return os.environ.get("EVENTFLOW_REQUIRE_KAFKA") == "1"


def unavailable(reason: str) -> None:
    if required():
        pytest.fail(f"EVENTFLOW_REQUIRE_KAFKA=1 but no Kafka broker: {reason}", pytrace=False)
    pytest.skip(f"no Kafka broker: {reason}")


class Broker:
    def __init__(self, bootstrap: str, folder: Path | None) -> None:
        self.bootstrap = bootstrap
        self.folder = folder

    def restart(self, pause: float = 0.0) -> None:
        """Stop the broker (SIGTERM), wait `pause` seconds (an outage), and start it again on
        the same data and ports."""
        if self.folder is None:
            pytest.skip("cannot restart a broker this session did not start")
        subprocess.run(
            [
                sys.executable,
                str(SCRIPT),
                "restart",
                "--dir",
                str(self.folder),
                "--pause",
                str(pause),
            ],
            check=True,
            capture_output=True,
            timeout=180 + pause,
        )


def start_broker(folder: Path) -> Iterator[Broker]:
    given = os.environ.get("EVENTFLOW_KAFKA_BOOTSTRAP")
    if given:
        yield Broker(given, None)
        return
    try:
        done = subprocess.run(
            [sys.executable, str(SCRIPT), "up", "--dir", str(folder)],
            capture_output=True,
            text=True,
            timeout=600,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        unavailable(str(e))
        return
    if done.returncode != 0:
        unavailable(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed")
        return
    try:
        yield Broker(done.stdout.strip(), folder)
    finally:
        subprocess.run(
            [sys.executable, str(SCRIPT), "down", "--dir", str(folder)],
            capture_output=True,
            timeout=120,
        )
