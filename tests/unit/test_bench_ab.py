"""`python -m bench --against REV`: what it forwards, refuses and combines (no runs here)."""

from __future__ import annotations

from typing import Any

import pytest

from bench import ab

MAIN = """
SCENARIOS = ("latency", "chain10")
ONLY_BY_NAME: tuple[str, ...] = ("soak",)
OTHER = ("ui",)
"""


def test_the_scenarios_of_a_revision_are_read_from_its_bench_main() -> None:
    assert ab.scenarios_of(MAIN) == {"latency", "chain10", "soak"}


def test_a_revision_without_the_scenario_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ab, "git", lambda *args, **kw: MAIN)
    ab.check_scenarios("old", "a" * 40, ["latency", "soak"])
    with pytest.raises(ab.Refused, match="old .* has no scenario ui; it has: chain10, latency"):
        ab.check_scenarios("old", "a" * 40, ["latency", "ui"])


def test_the_drivers_own_options_are_not_forwarded() -> None:
    argv = ["latency", "--against", "HEAD~1", "--rounds=2", "--events", "5", "--out", "x.json"]
    assert ab.forwarded([*argv, "--bootstrap=h:1", "--runtime", "embedded"]) == [
        "latency",
        "--events",
        "5",
        "--runtime",
        "embedded",
    ]


def report(**figures: Any) -> dict[str, Any]:
    return {"results": {"latency/embedded": figures}}


def test_each_figure_is_the_median_of_its_side_with_the_ratio_current_over_other() -> None:
    current = [report(to_body_ms={"n": 5, "p50": v}, label="x") for v in (1.0, 3.0, 2.0)]
    other = [report(to_body_ms={"n": 5, "p50": v}, label="x") for v in (4.0, 4.0, 8.0)]
    rows = ab.combine(current, other)
    assert list(rows) == ["latency/embedded to_body_ms.p50"]  # counts and text left out
    row = rows["latency/embedded to_body_ms.p50"]
    assert (row["current"], row["other"], row["ratio"]) == (2.0, 4.0, 0.5)
    assert row["rounds"] == {"current": [1.0, 3.0, 2.0], "other": [4.0, 4.0, 8.0]}
    assert "latency/embedded to_body_ms.p50" in ab.table(rows)
    assert "0.500" in ab.table(rows)


def test_a_figure_only_one_side_measures_is_shown_without_a_ratio() -> None:
    rows = ab.combine([report(new_ms=1.0, old=2)], [report(old=4)])
    assert rows["latency/embedded new_ms"]["other"] is None
    assert rows["latency/embedded new_ms"]["ratio"] is None
    assert rows["latency/embedded old"]["ratio"] == 0.5
    line = next(x for x in ab.table(rows).splitlines() if x.startswith("latency/embedded new_ms"))
    assert line.split()[-2:] == ["-", "-"]
