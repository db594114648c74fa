"""What a body receives: inputs keyed by name or Dataset, a frozen task info, a strict `emit`."""

from __future__ import annotations

import ast
import dataclasses
import logging
from pathlib import Path

import pytest

import eventflow as ef

raw, clean, report = ef.Dataset("raw", ef.daily()), ef.Dataset("clean", ef.daily()), "report"


def body(ctx: ef.TaskContext) -> None:
    pass


def defined_task(**options: object) -> ef.Task:
    p = ef.Pipeline("p")
    register = p.task(inputs=[raw], outputs=[clean, report], name="tidy", **options)  # type: ignore[arg-type]
    task = register(body)
    ef.App([p], datasets=[ef.Dataset(report, ef.daily())], pools=[ef.Pool("db", 1)])
    return task


def context(task: ef.Task, *inputs: ef.Input) -> ef.TaskContext:
    return ef.TaskContext(
        task=task.info(timeout_s=60),
        partition="2026-11-22",
        run_id="tidy:2026-11-22:k:1",
        attempt=1,
        inputs=ef.Inputs(inputs),
        log=logging.getLogger("test"),
    )


def test_inputs_take_the_dataset_or_its_name() -> None:
    given = ef.Input("raw", "2026-11-22", 7, {"rows": 3})
    inputs = ef.Inputs([given])
    assert inputs[raw] is inputs["raw"] is given
    keys: list[object] = [raw, "raw", clean, "clean", 3]
    assert [key in inputs for key in keys] == [True, True, False, False, False]
    assert inputs.get(raw) is given and inputs.get(clean) is None
    assert inputs.get(clean, "none") == "none"
    assert dict(inputs) == {"raw": given} and len(inputs) == 1
    with pytest.raises(KeyError, match=r"'clean' is not an input of this run: \['raw'\]"):
        inputs[clean]


def test_the_task_info_is_frozen_and_describes_the_task() -> None:
    task = defined_task(retries=2, pool="db", timeout_s=5)
    info = task.info(timeout_s=60)
    assert info == ef.TaskInfo(
        name="tidy",
        pipeline="p",
        inputs=("raw",),
        outputs=("clean", "report"),
        partitioning="daily",
        trigger="all",
        pool="db",
        timeout_s=5,
        retries=2,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.outputs = ("anything",)  # type: ignore[misc]
    assert defined_task().info(timeout_s=60).timeout_s == 60, "the limit in force when undeclared"
    check_ctx = ef.CheckContext("c", "raw", "", 1, {}, logging.getLogger("test"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        check_ctx.version = 2  # type: ignore[misc]


def test_emit_takes_declared_outputs_by_dataset_or_name() -> None:
    ctx = context(defined_task())
    assert ctx.outputs() == {"clean": {}, "report": {}}
    ctx.emit(clean, rows=2)
    assert ctx.outputs() == {"clean": {"rows": 2}}
    ctx.emit("report", {"path": "/r"})
    assert ctx.outputs() == {"clean": {"rows": 2}, "report": {"path": "/r"}}
    assert ctx.definition_error is None


def test_emitting_an_undeclared_output_is_a_definition_error_even_if_caught() -> None:
    ctx = context(defined_task())
    message = "task 'tidy' emitted 'other', which is not one of its declared outputs"
    with pytest.raises(ef.DefinitionError, match=message + r" \['clean', 'report'\]"):
        ctx.emit(ef.Dataset("other"))
    assert ctx.definition_error is not None and ctx.definition_error.startswith(message)
    assert ctx.outputs() == {"clean": {}, "report": {}}, "nothing undeclared is produced"


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_context_does_not_import_the_definitions() -> None:
    """definitions imports context (a body's signature); the reverse would be a cycle."""
    package = Path(ef.__file__).parent
    assert ".context" in imported_modules(package / "definitions.py")
    context_imports = imported_modules(package / "context.py")
    assert ".datasets" in context_imports
    assert not {m for m in context_imports if "definitions" in m}
