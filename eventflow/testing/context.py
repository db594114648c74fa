"""Contexts for calling a task or check body directly, without a runtime."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..context import CheckContext, Input, Inputs, TaskContext
from ..definitions import Check, Dataset, DatasetLike, Task
from ..events import Metadata
from ..settings import Settings

InputLike = Input | Mapping[str, Any]


def build_context(
    task: Task,
    partition: str = "",
    inputs: Mapping[DatasetLike, InputLike] | None = None,
    *,
    run_id: str | None = None,
    attempt: int = 1,
    max_metadata_bytes: int | None = None,
) -> TaskContext:
    """The context a runtime would pass to `task`'s body, for calling `task.fn(ctx)` in a unit
    test. Each input is an `Input` or just its metadata (then at version 1); inputs left out
    are absent, as they are when a task triggered by `any` runs. After the call,
    `ctx.outputs()` says what the run would emit.

        ctx = build_context(clean, "2026-11-22", {raw: {"rows": 10}})
        clean.fn(ctx)
        assert ctx.outputs() == {"clean": {"rows": 10}}
    """
    given = {
        _name(dataset): _input(_name(dataset), partition, value)
        for dataset, value in (inputs or {}).items()
    }
    return TaskContext(
        task=task.info(),
        partition=partition,
        run_id=run_id or f"{task.name}:{partition}:test:{attempt}",
        attempt=attempt,
        inputs=Inputs(given.values()),
        log=logging.getLogger(f"eventflow.task.{task.name}"),
        max_metadata_bytes=max_metadata_bytes or _default_metadata_bytes(),
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
