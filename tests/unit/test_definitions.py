"""A bad definition fails at load time, naming the task and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

import eventflow as ef
from eventflow.errors import ConfigurationError, DefinitionError


def noop(ctx: ef.TaskContext) -> None:
    pass


def test_cycle_is_rejected_naming_the_tasks() -> None:
    a, b, c = ef.Dataset("a"), ef.Dataset("b"), ef.Dataset("c")
    p = ef.Pipeline("p")
    p.task(inputs=[a], outputs=[b], name="one")(noop)
    p.task(inputs=[b], outputs=[c], name="two")(noop)
    p.task(inputs=[c], outputs=[a], name="three")(noop)
    with pytest.raises(DefinitionError, match=r"cycle in the graph: one -> two -> three -> one"):
        ef.App([p])


def test_dataset_produced_by_two_tasks() -> None:
    a, b = ef.Dataset("a"), ef.Dataset("b")
    p = ef.Pipeline("p")
    p.task(inputs=[a], outputs=[b], name="first")(noop)
    p.task(inputs=[a], outputs=[b], name="second")(noop)
    with pytest.raises(
        DefinitionError, match="task 'second' .*output 'b' is already produced by task 'first'"
    ):
        ef.App([p])


def test_unknown_input() -> None:
    p = ef.Pipeline("p")
    p.task(inputs=["raw.missing"], outputs=[ef.Dataset("o")], name="t")(noop)
    with pytest.raises(DefinitionError, match="task 't' .*input 'raw.missing' is not a declared"):
        ef.App([p])


def test_duplicate_names() -> None:
    a = ef.Dataset("a")
    p, q = ef.Pipeline("p"), ef.Pipeline("q")
    p.task(inputs=[a], outputs=[ef.Dataset("x")], name="same")(noop)
    q.task(inputs=[a], outputs=[ef.Dataset("y")], name="same")(noop)
    with pytest.raises(DefinitionError, match="duplicate task name 'same' .*'p' and 'q'"):
        ef.App([p, q])
    with pytest.raises(DefinitionError, match="duplicate pipeline name 'p'"):
        ef.App([p, p])
    r = ef.Pipeline("r")
    r.task(inputs=[a, ef.Dataset("a", ef.daily())], name="t")(noop)
    with pytest.raises(DefinitionError, match="dataset 'a' is declared twice"):
        ef.App([r])


def test_bad_cron_expression() -> None:
    clock = ef.Dataset("clock.daily", ef.daily())
    p = ef.Pipeline("p")
    p.task(inputs=[clock], name="t")(noop)
    with pytest.raises(DefinitionError, match="bad cron expression '61 25 \\* \\* \\*'"):
        ef.App([p], schedules=[ef.Schedule(clock, "61 25 * * *")])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pool": "gpu"}, "task 't' .*pool 'gpu' is not declared"),
        ({"trigger": "some"}, "task 't' .*trigger 'some' is not one of all, any"),
        ({"timeout_s": 0}, "task 't' .*timeout_s must be positive"),
        ({"retries": ef.Retry(count=-1)}, "task 't' .*must not be negative"),
    ],
)
def test_task_options_are_checked(options: dict[str, object], message: str) -> None:
    p = ef.Pipeline("p")
    p.task(inputs=[ef.Dataset("a")], name="t", **options)(noop)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match=message):
        ef.App([p])


def test_partitionings_must_agree() -> None:
    p = ef.Pipeline("p")
    p.task(inputs=[ef.Dataset("d", ef.daily()), ef.Dataset("h", ef.hourly())], name="t")(noop)
    with pytest.raises(DefinitionError, match="task 't' .*different partitionings"):
        ef.App([p])
    q = ef.Pipeline("q")
    q.task(inputs=[ef.Dataset("d", ef.daily())], outputs=[ef.Dataset("o")], name="t")(noop)
    with pytest.raises(DefinitionError, match="output 'o' is partitioned none but the task runs"):
        ef.App([q])


def test_task_needs_an_input() -> None:
    p = ef.Pipeline("p")
    p.task(inputs=[], outputs=[ef.Dataset("o")], name="t")(noop)
    with pytest.raises(DefinitionError, match="task 't' .*needs at least one input"):
        ef.App([p])


def test_check_on_unknown_dataset() -> None:
    p = ef.Pipeline("p")
    p.task(inputs=[ef.Dataset("a")], name="t")(noop)
    with pytest.raises(DefinitionError, match="check 'c': dataset 'nope' is not declared"):
        ef.App([p], checks=[ef.check("nope", name="c")(lambda ctx: True)])


def test_partition_keys_are_validated() -> None:
    assert ef.daily().validate("2026-11-22") == "2026-11-22"
    assert ef.hourly().validate("2026-11-22T07") == "2026-11-22T07"
    assert ef.static("eu", "us").validate("eu") == "eu"
    for scheme, key in (
        (ef.daily(), "22/11/2026"),
        (ef.hourly(), "2026-11-22"),
        (ef.static("eu"), "mars"),
    ):
        with pytest.raises(ef.EventError):
            scheme.validate(key)


def test_loader_reports_the_file_line_of_a_broken_definition(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import eventflow as ef\n\nraise RuntimeError('oops')\n")
    with pytest.raises(DefinitionError, match="broken.py: line 3: RuntimeError: oops"):
        ef.load_app(str(broken))
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(ConfigurationError, match="defines no App"):
        ef.load_app(str(empty))
    with pytest.raises(ConfigurationError, match="no such pipeline file"):
        ef.load_app(str(tmp_path / "missing.py"))


def test_examples_load() -> None:
    root = Path(__file__).parents[2] / "examples"
    assert "nightly_features" in ef.load_app(str(root / "ml_pipeline.py")).pipelines
    assert list(ef.load_app(str(root / "hello.py")).tasks) == ["draft", "polish", "send"]
