"""The state a dataset is shown in (`eventflow.ui.states.dataset_state`): never, failing, stale
or fresh, with the reason in words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from eventflow.history.models import (
    CheckOutcome,
    Freshness,
    InputNow,
    Provenance,
    TaskAttempt,
    VersionRef,
)
from eventflow.ui.states import dataset_state

NOW = datetime.now(UTC)
DAY = "2026-11-20"
REPORT = Freshness(
    dataset="report", partition=DAY, version=20, time=NOW, producer="summarise:1", age_s=0
)
SUMMARISE = TaskAttempt(
    run_id="summarise:1", task="summarise", pipeline="shop", attempt=1, status="succeeded"
)


def made(*, newest: int = 10, checks: list[CheckOutcome] | None = None) -> Provenance:
    return Provenance(
        version=VersionRef(dataset="report", partition=DAY, version=20),
        producer=SUMMARISE,
        inputs=[
            InputNow(
                dataset="orders",
                partition=DAY,
                version=10,
                newest=newest,
                newest_time=NOW - timedelta(minutes=5),
            )
        ],
        checks=checks or [],
    )


def check(passed: bool) -> CheckOutcome:
    return CheckOutcome(
        run_id="c",
        check="has_rows",
        dataset="report",
        partition=DAY,
        version=20,
        passed=passed,
        blocking=True,
        message="0 rows" if not passed else "3 rows",
        worker="w",
        time=NOW,
    )


def test_no_version_is_never() -> None:
    state = dataset_state("report", None, None, NOW)
    assert (state.status, state.reason) == ("never", "report has no version yet")


def test_made_from_the_newest_inputs_is_fresh() -> None:
    state = dataset_state("report", REPORT, made(checks=[check(True)]), NOW)
    assert state.status == "fresh"
    assert state.reason.startswith("report@20 was made by summarise ")


def test_an_input_newer_than_the_one_consumed_makes_it_stale() -> None:
    state = dataset_state("report", REPORT, made(newest=11), NOW)
    assert state.status == "stale"
    assert state.reason == (
        "input orders has a newer version (11, 5 min ago) than the one report@20 was made from (10)"
    )


def test_a_failed_check_on_the_newest_version_is_failing_even_when_stale() -> None:
    state = dataset_state("report", REPORT, made(newest=11, checks=[check(False)]), NOW)
    assert (state.status, state.reason) == ("failing", "check has_rows failed on report@20: 0 rows")


def test_announced_from_outside_is_fresh_with_nothing_to_be_behind() -> None:
    outside = REPORT.model_copy(update={"producer": None})
    bare = Provenance(version=VersionRef(dataset="report", partition=DAY, version=20))
    for provenance in (bare, None):
        state = dataset_state("report", outside, provenance, NOW)
        assert state.status == "fresh"
        assert state.reason.startswith("report@20 was announced ")
