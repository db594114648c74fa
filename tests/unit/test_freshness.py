"""Deadline arithmetic (UTC ticks, partition windows) and the validation of policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import eventflow as ef
from eventflow import operator
from eventflow.freshness import expected_partition, next_tick, previous_tick, ticks_between
from eventflow.history import Freshness, FreshnessViolation


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


def test_a_daily_deadline_judges_the_day_before_the_tick() -> None:
    assert expected_partition(ef.daily(), ts(2026, 3, 2, 6)) == "2026-03-01"
    assert expected_partition(ef.daily(), ts(2026, 3, 1, 0)) == "2026-02-28"
    assert expected_partition(ef.daily(), ts(2028, 3, 1, 6)) == "2028-02-29"  # leap day


def test_an_hourly_deadline_judges_the_hour_that_ended() -> None:
    assert expected_partition(ef.hourly(), ts(2026, 3, 2, 7, 15)) == "2026-03-02T06"
    assert expected_partition(ef.hourly(), ts(2026, 3, 2, 0, 5)) == "2026-03-01T23"


def test_ticks_are_utc_whatever_daylight_saving_does() -> None:
    # Europe and the US change clocks on these nights; UTC ticks stay 24 hours apart.
    for day in (datetime(2026, 3, 29, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)):
        at = next_tick("0 6 * * *", day.timestamp())
        assert at == (day + timedelta(hours=6)).timestamp()
        assert next_tick("0 6 * * *", at) - at == 86400


def test_ticks_between_are_strictly_after_and_at_most_until() -> None:
    start, until = ts(2026, 3, 1, 6), ts(2026, 3, 4, 6)
    assert ticks_between("0 6 * * *", start, until) == [
        ts(2026, 3, 2, 6),
        ts(2026, 3, 3, 6),
        ts(2026, 3, 4, 6),
    ]
    assert ticks_between("0 6 * * *", start, start) == []
    assert ticks_between("0 6 * * *", start, start + 1) == []
    assert previous_tick("0 6 * * *", ts(2026, 3, 2, 6)) == ts(2026, 3, 1, 6)


def test_catch_up_is_bounded() -> None:
    ticks = ticks_between("* * * * *", ts(2026, 3, 1), ts(2026, 3, 2))
    assert len(ticks) == 100 and ticks[-1] == ts(2026, 3, 2)


def test_max_age_takes_seconds_or_a_timedelta() -> None:
    assert ef.Freshness(max_age=timedelta(hours=26)).max_age_s == 26 * 3600
    assert ef.Freshness(max_age=90).max_age_s == 90


def _app(dataset: ef.Dataset, deadline: str | None = None) -> ef.App:
    p = ef.Pipeline("p")

    @p.task(inputs=[dataset], deadline=deadline)
    def t(ctx: ef.TaskContext) -> None:
        pass

    return ef.App([p])


@pytest.mark.parametrize(
    ("dataset", "deadline", "reason"),
    [
        (ef.Dataset("d", freshness=ef.Freshness(deadline="0 25 * * *")), None, "bad deadline cron"),
        (
            ef.Dataset("d", ef.static("eu", "us"), freshness=ef.Freshness(deadline="0 6 * * *")),
            None,
            "windows of time",
        ),
        (ef.Dataset("d", freshness=ef.Freshness(max_age=0)), None, "max_age must be positive"),
        (ef.Dataset("d", freshness=ef.Freshness()), None, "a deadline or a max_age"),
        (ef.Dataset("d", ef.static("eu")), "0 7 * * *", "windows of time"),
        (ef.Dataset("d", ef.daily()), "every day", "bad deadline cron"),
    ],
)
def test_policies_that_cannot_be_judged_are_refused(
    dataset: ef.Dataset, deadline: str | None, reason: str
) -> None:
    with pytest.raises(ef.DefinitionError, match=reason):
        _app(dataset, deadline)


def test_valid_policies_are_accepted() -> None:
    policy = ef.Freshness(deadline="0 6 * * *", max_age=timedelta(hours=26))
    _app(ef.Dataset("d", ef.daily(), freshness=policy), "0 7 * * *")
    _app(ef.Dataset("d", ef.static("eu"), freshness=ef.Freshness(max_age=60)))
    _app(ef.Dataset("d", freshness=ef.Freshness(deadline="0 * * * *")), "*/5 * * * *")


def test_status_marks_late_partitions_and_lists_what_is_late() -> None:
    now = datetime(2026, 3, 2, 6, 30, tzinfo=UTC)
    rows = [
        Freshness(dataset="orders", partition=p, version=1, time=now, age_s=60)
        for p in ("2026-02-28", "2026-03-01")
    ]
    late = [
        FreshnessViolation(
            kind="dataset",
            name="orders",
            partition="2026-03-01",
            policy="deadline",
            expected_by=datetime(2026, 3, 2, 6, tzinfo=UTC),
            violated_at=datetime(2026, 3, 2, 6, tzinfo=UTC),
        ),
        FreshnessViolation(
            kind="task",
            name="publish",
            pipeline="report",
            partition="2026-03-01",
            policy="deadline",
            expected_by=datetime(2026, 3, 2, 7, tzinfo=UTC),
            violated_at=datetime(2026, 3, 2, 7, tzinfo=UTC),
        ),
    ]
    text = operator.status(rows, None, late)
    table = text.split("Late")[0]
    assert [line.endswith("LATE") for line in table.splitlines()[2:4]] == [False, True]
    listed = text.split("\nLate\n")[1].splitlines()
    assert listed[1].split()[:3] == ["orders", "2026-03-01", "deadline"]
    assert listed[2].split()[:1] == ["report.publish"]
    assert "Late" not in operator.status(rows, None)
    assert "Nothing is late." in operator.status(rows, None, [])
