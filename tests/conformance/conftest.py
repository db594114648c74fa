"""The `start` fixture opens a runtime for an App: each scenario runs once per runtime."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import eventflow as ef

from ..kafka_broker import Broker
from .harness import EmbeddedHarness, Harness, KafkaHarness

Start = Callable[..., Harness]


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def start(request: pytest.FixtureRequest, tmp_path: Path) -> Start:
    """`async with start(app, **settings) as h`: the App on this run's runtime."""
    if request.param == "kafka":
        broker: Broker = request.getfixturevalue("kafka")

        def on_broker(app: ef.App, **settings: Any) -> Harness:
            return KafkaHarness(app, broker.bootstrap, **settings)

        return on_broker

    def open_runtime(app: ef.App, **settings: Any) -> Harness:
        return EmbeddedHarness(app, tmp_path / "home", **settings)

    return open_runtime
