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


def test_seconds_in_the_first_field_are_refused_with_where_they_go() -> None:
    """`*/5 * * * * *` reads as every five seconds but ticks every second of every fifth
    minute: refused, with the expression meant; seconds spelled out are taken."""
    clock = ef.Dataset("clock.fast")
    p = ef.Pipeline("p")
    p.task(inputs=[clock], name="t")(noop)
    with pytest.raises(
        DefinitionError, match=r"the sixth, after the day of week .*'\* \* \* \* \* \*/5'"
    ):
        ef.App([p], schedules=[ef.Schedule(clock, "*/5 * * * * *")])
    assert ef.App([p], schedules=[ef.Schedule(clock, "* * * * * */5")]).schedules
    assert ef.App([p], schedules=[ef.Schedule(clock, "*/5 * * * * */1")]).schedules


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


def test_checks_and_schedules_attach_through_the_pipeline() -> None:
    tick, table = ef.Dataset("clock.daily", ef.daily()), ef.Dataset("table", ef.daily())
    p = ef.Pipeline("p")
    p.task(inputs=[tick], outputs=[table], name="t")(noop)
    schedule = p.schedule(tick, "0 2 * * *")

    @p.check(table, blocking=False, timeout_s=5)
    def has_rows(ctx: ef.CheckContext) -> bool:
        return True

    app = ef.App([p])
    assert app.checks == {"has_rows": has_rows} and app.checks_of == {"table": [has_rows]}
    assert (has_rows.dataset, has_rows.blocking, has_rows.timeout_s) == ("table", False, 5)
    assert app.schedules == {"clock.daily": schedule} == {"clock.daily": p.schedules[0]}
    again = ef.App([p], checks=[has_rows], schedules=[ef.Schedule(tick, "0 2 * * *")])
    assert again.checks_of == {"table": [has_rows]}, "the same check given twice counts once"
    q = ef.Pipeline("q", schedules=[ef.Schedule(tick, "0 3 * * *")])
    q.task(inputs=[tick], name="u")(noop)
    with pytest.raises(DefinitionError, match="'clock.daily' has two schedules: '0 2 \\* \\* \\*'"):
        ef.App([p, q])


def test_checks_and_schedules_given_to_the_app_still_run() -> None:
    tick = ef.Dataset("clock")
    p = ef.Pipeline("p")
    p.task(inputs=[tick], name="t")(noop)
    gate = ef.check(tick, name="gate")(lambda ctx: True)
    app = ef.App([p], checks=[gate], schedules=[ef.Schedule(tick, "* * * * *")])
    assert app.checks == {"gate": gate} and list(app.schedules) == ["clock"]


FORGOTTEN = """
import eventflow as ef

raw, out = ef.Dataset("raw"), ef.Dataset("out")
p = ef.Pipeline("p")


@p.task(inputs=[raw], outputs=[out])
def t(ctx: ef.TaskContext) -> None:
    pass

"""


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        (
            "@ef.check(out)\ndef gate(ctx):\n    return True\n\napp = ef.App([p])\n",
            r"check 'gate' \(gate\) on dataset 'out' would never run: the App does not hold it; "
            r"declare it with @pipeline.check\(...\) or pass it to App\(checks=\[...\]\)",
        ),
        (
            "nightly = ef.Schedule(raw, '0 2 * * *')\napp = ef.App([p])\n",
            r"schedule nightly of dataset 'raw' \('0 2 \* \* \*'\) would never run: the App "
            r"does not hold it; declare it with pipeline.schedule\(...\)",
        ),
    ],
    ids=["check", "schedule"],
)
def test_loading_refuses_a_check_or_schedule_the_app_does_not_hold(
    tmp_path: Path, definition: str, message: str
) -> None:
    module = tmp_path / "forgotten.py"
    module.write_text(FORGOTTEN + definition)
    with pytest.raises(DefinitionError, match=message):
        ef.load_app(str(module))
    with pytest.raises(DefinitionError, match=message):
        ef.load_app(f"{module}:app")


def test_loading_accepts_checks_and_schedules_held_by_an_app_of_the_module(tmp_path: Path) -> None:
    attached = tmp_path / "attached.py"
    attached.write_text(
        FORGOTTEN
        + "@p.check(out)\ndef gate(ctx):\n    return True\n\n"
        + "nightly = p.schedule(raw, '0 2 * * *')\n"
        + "app = ef.App([p])\n"
    )
    app = ef.load_app(str(attached))
    assert list(app.checks) == ["gate"] and list(app.schedules) == ["raw"]
    split = tmp_path / "split.py"
    split.write_text(
        FORGOTTEN
        + "@ef.check(out)\ndef gate(ctx):\n    return True\n\n"
        + "plain = ef.App([p])\nguarded = ef.App([p], checks=[gate])\n"
    )
    assert not ef.load_app(f"{split}:plain").checks, "another App of the module holds it"


def test_a_dataset_lives_with_the_pipeline_that_produces_it_unless_checks_hold_it() -> None:
    raw, clean, checked = ef.Dataset("raw"), ef.Dataset("clean"), ef.Dataset("checked")
    p = ef.Pipeline("p")
    p.task(inputs=[raw], outputs=[clean], name="clean")(lambda ctx: None)
    p.task(inputs=[clean], outputs=[checked], name="check")(lambda ctx: None)
    p.check(checked, name="rows")(lambda ctx: True)
    app = ef.App([p])
    assert app.home_of("clean") == "p"
    assert app.home_of("raw") == "raw", "produced outside: its own name"
    assert app.home_of("checked") == "checked", "check results are keyed by the dataset"
