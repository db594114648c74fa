"""The `start` fixture opens a runtime for an App: each scenario runs once per runtime."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

import eventflow as ef

from .harness import Harness, embedded

Start = Callable[..., AbstractAsyncContextManager[Harness]]


@pytest.fixture(params=["embedded"])
def start(request: pytest.FixtureRequest, tmp_path: Path) -> Start:
    def open_runtime(app: ef.App, **settings: Any) -> AbstractAsyncContextManager[Harness]:
        return embedded(app, tmp_path / "home", **settings)

    return open_runtime
