"""Contexts for calling a task or check body directly, without a runtime."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .. import capture
from ..context import CheckContext, Input, Inputs, Item, TaskContext
from ..definitions import Check, Dataset, DatasetLike, Task
from ..events import LogLine, Metadata
from ..settings import Settings

InputLike = Input | Mapping[str, Any]


@dataclass
class LoggedContext(TaskContext):
    """A `TaskContext` that keeps what the body logs through `ctx.log`, line by line as a
    runtime's task log would (INFO and up, with tracebacks), so a test can assert on it."""

    lines: list[LogLine] = field(default_factory=list)

    def messages(self, level: str | None = None) -> list[str]:
        """What the body logged so far (at `level` only, if given: `"WARNING"`...), in order."""
        return [line.message for line in self.lines if level is None or line.level == level]


class _Keep(logging.Handler):
    def __init__(self, lines: list[LogLine]) -> None:
        super().__init__()
        self.lines = lines
        self.setFormatter(capture.MESSAGE)

    def emit(self, record: logging.LogRecord) -> None:
        when = datetime.fromtimestamp(record.created, UTC)
        self.lines.append(LogLine(time=when, level=record.levelname, message=self.format(record)))


def _logger(name: str, lines: list[LogLine]) -> logging.Logger:
    """A logger of this context alone (not registered, so contexts never share lines) that
    passes its records on to the task's logger, as `ctx.log` would."""
    capture.install()  # the level a runtime keeps lines at
    logger = logging.Logger(name)
    logger.parent = logging.getLogger(name)
    logger.addHandler(_Keep(lines))
    return logger


def build_context(
    task: Task,
    partition: str = "",
    inputs: Mapping[DatasetLike, InputLike] | None = None,
    *,
    run_id: str | None = None,
    attempt: int = 1,
    max_metadata_bytes: int | None = None,
    items: Iterable[Item] = (),
) -> LoggedContext:
    """The context a runtime would pass to `task`'s body, for calling `task.fn(ctx)` in a unit
    test. Each input is an `Input` or just its metadata (then at version 1); inputs left out
    are absent, as they are when a task triggered by `any` runs. After the call,
    `ctx.outputs()` says what the run would emit, and `ctx.lines` (or `ctx.messages()`) what
    it logged through `ctx.log`. `items` are what a gathering task sees (`ctx.items`); a
    fan-out's partitions are in `ctx.fanned`.

        ctx = build_context(clean, "2026-11-22", {raw: {"rows": 10}})
        clean.fn(ctx)
        assert ctx.outputs() == {"clean": {"rows": 10}}
        assert ctx.messages() == ["cleaned 10 rows"]
    """
    given = {
        _name(dataset): _input(_name(dataset), partition, value)
        for dataset, value in (inputs or {}).items()
    }
    lines: list[LogLine] = []
    return LoggedContext(
        task=task.info(),
        partition=partition,
        run_id=run_id or f"{task.name}:{partition}:test:{attempt}",
        attempt=attempt,
        inputs=Inputs(given.values()),
        log=_logger(f"eventflow.task.{task.name}", lines),
        max_metadata_bytes=max_metadata_bytes or _default_metadata_bytes(),
        items=tuple(items),
        lines=lines,
    )


def build_check_context(
    check: Check,
    partition: str = "",
    metadata: Metadata | None = None,
    *,
    version: int = 1,
) -> CheckContext:
    """The context a runtime would pass to `check`'s body for one version of its dataset."""
    return CheckContext(
        check=check.name,
        dataset=check.dataset,
        partition=partition,
        version=version,
        metadata=dict(metadata or {}),
        log=logging.getLogger(f"eventflow.check.{check.name}"),
    )


def _name(dataset: DatasetLike) -> str:
    return dataset.name if isinstance(dataset, Dataset) else dataset


def _input(dataset: str, partition: str, value: InputLike) -> Input:
    if isinstance(value, Input):
        return value
    return Input(dataset, partition, 1, dict(value))


def _default_metadata_bytes() -> int:
    default = Settings.model_fields["max_metadata_bytes"].default
    assert isinstance(default, int)
    return default
