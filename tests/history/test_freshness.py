"""Freshness violations in the history store, on SQLite and PostgreSQL: what is late now and
since when is one query, whichever of a violation and its recovery is stored first."""

from __future__ import annotations

from eventflow.events import FreshnessData, FreshnessRecovered, FreshnessViolated
from eventflow.history import HistoryStore

from .events import at


def late(name: str, partition: str, due: float, found: float) -> FreshnessData:
    return FreshnessData(
        kind="dataset",
        name=name,
        partition=partition,
        policy="deadline",
        expected_by=at(due),
        since=at(found),
        newest_version=1,
        message=f"{name} partition {partition} has no version by its deadline",
    )


def recovered(data: FreshnessData, t: float, version: int) -> FreshnessRecovered:
    back = data.model_copy(update={"newest_version": version})
    return FreshnessRecovered.of(back, time=at(t))


async def test_open_violations_and_since_when(store: HistoryStore) -> None:
    a = late("orders", "2026-11-01", 10, 11)
    b = late("orders", "2026-11-02", 20, 21)
    c = late("clicks", "", 30, 31)
    await store.apply([FreshnessViolated.of(x) for x in (a, b, c)])
    await store.apply([recovered(a, 15, 7)])
    now = await store.violations()
    assert [(v.name, v.partition, v.violated_at) for v in now] == [
        ("clicks", "", at(31)),
        ("orders", "2026-11-02", at(21)),
    ]
    every = await store.violations(name="orders", open_only=False)
    assert [(v.partition, v.recovered_at, v.recovered_version) for v in every] == [
        ("2026-11-02", None, None),
        ("2026-11-01", at(15), 7),
    ]
    assert await store.violations(name="orders", partition="2026-11-01") == []


async def test_a_recovery_stored_before_its_violation_still_closes_it(
    store: HistoryStore,
) -> None:
    a = late("orders", "2026-11-01", 10, 11)
    await store.apply([recovered(a, 15, 7)])
    assert await store.violations(open_only=False) == [], "nothing violated is known yet"
    await store.apply([FreshnessViolated.of(a)])
    await store.apply([FreshnessViolated.of(a)])  # a replay changes nothing
    [v] = await store.violations(open_only=False)
    assert (v.violated_at, v.message, v.recovered_at) == (at(11), a.message, at(15))
    assert await store.violations() == []
