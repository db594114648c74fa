"""Alerts inside `eventflow dev`, as a process: a failed run reaches a real receiver as a Slack
message and `eventflow alerts` shows the delivery; a secret not set stops the start in one line."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

from ..receiver import Receiver
from .test_cli import PIPELINES, cli, dev, wait_for

pytestmark = pytest.mark.slow

ALERTING = PIPELINES / "alerting.py"


@contextmanager
def receiving() -> Iterator[Receiver]:
    """A receiver served from a loop of its own, for a test that is not async."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    receiver = Receiver()
    try:
        asyncio.run_coroutine_threadsafe(receiver.start(), loop).result(timeout=10)
        yield receiver
    finally:
        asyncio.run_coroutine_threadsafe(receiver.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def test_dev_delivers_an_alert_and_the_cli_shows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    with receiving() as receiver:
        monkeypatch.setenv("ALERT_HOOK", receiver.url("/slack"))
        with dev(home, ALERTING) as proc:
            wait_for(lambda: (home / "api.json").exists())
            cli(home, "emit", "raw")
            wait_for(lambda: len(receiver.received) == 1, timeout=30)

            def delivered() -> bool:
                done = cli(home, "alerts", "--json")
                found = orjson.loads(done.stdout)["deliveries"] if done.returncode == 0 else []
                return [d["state"] for d in found] == ["delivered"]

            wait_for(delivered, timeout=30)
            text = cli(home, "alerts")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0, proc.communicate()
    [request] = receiver.received
    assert request.path == "/slack" and "disk full" in request.json()["text"]
    assert text.returncode == 0, text.stderr
    assert "oncall" in text.stdout and "delivered" in text.stdout
    assert "${ALERT_HOOK}" in text.stdout  # the rule as written, not the secret


def test_a_secret_not_set_stops_the_start_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ALERT_HOOK", raising=False)
    done = cli(tmp_path / "home", "dev", str(ALERTING))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: alert 'oncall': the webhook reads ${ALERT_HOOK}, which is not set"
    ]
