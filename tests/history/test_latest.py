"""The queries a graph of the whole App is coloured from, on SQLite and PostgreSQL: the newest
version of each dataset, the last attempt of each task, and what versions were made from."""

from __future__ import annotations

from eventflow.events import CheckCompleted, CheckCompletedData
from eventflow.history import HistoryStore

from .events import PART, at, chain, produced, task_run, version

OTHER = "2026-11-02"


async def test_the_newest_version_of_each_dataset_over_its_partitions_or_in_one(
    store: HistoryStore,
) -> None:
    await store.apply(
        [
            produced("a", 1, 0),
            produced("a", 3, 10),
            produced("a", 2, 20),  # announced later, yet not newer than 3
            produced("a", 5, 5, partition=OTHER),
            produced("b", 7, 1, partition=""),
        ]
    )
    latest = await store.latest_versions(now=at(60))
    assert [(x.dataset, x.partition, x.version, x.partitions, x.age_s) for x in latest] == [
        ("a", PART, 3, 2, 50.0),
        ("b", "", 7, 1, 59.0),
    ]
    in_other = await store.latest_versions(partition=OTHER, now=at(60))
    assert [(x.dataset, x.partition, x.version, x.partitions) for x in in_other] == [
        ("a", OTHER, 5, 2)
    ]
    assert await store.latest_versions(partition="2030-01-01") == []
    assert await store.partitions() == [PART, OTHER]
    assert await store.partitions(dataset="b") == []


async def test_the_last_attempt_of_each_task_in_one_query(store: HistoryStore) -> None:
    await store.apply(chain())
    later = task_run("t1", [version("a", 9, OTHER)], [], 100, fail="late", partition=OTHER)
    await store.apply(later)
    latest = {(a.pipeline, a.task): a for a in await store.latest_attempts()}
    assert sorted(latest) == [("p", "t1"), ("p", "t2"), ("p", "t3")]
    assert (latest["p", "t1"].partition, latest["p", "t1"].status) == (OTHER, "failed")
    assert latest["p", "t3"].status == "succeeded"
    in_part = {a.task: a for a in await store.latest_attempts(partition=PART)}
    assert (in_part["t1"].attempt, in_part["t1"].status) == (2, "succeeded")
    assert [a.task for a in await store.latest_attempts(partition=OTHER)] == ["t1"]


async def test_provenance_sets_what_a_version_was_made_from_beside_the_newest_now(
    store: HistoryStore,
) -> None:
    await store.apply(chain())  # a1 -> t1 -> b2 -> t2 -> c3 -> t3 -> d4, check c1 passed on a1
    failed = CheckCompletedData(
        run_id="c1:a:1:again",
        check="c1",
        target=version("a", 1),
        passed=False,
        blocking=True,
        message="no rows",
        worker="w1",
    )
    await store.apply([produced("c", 9, 60), CheckCompleted.of(failed, time=at(61))])
    d, b, a = [(await store.versions(name, limit=1))[0] for name in ("d", "b", "a")]
    found = await store.provenance([d, b, a])
    assert [p.version.dataset for p in found] == ["d", "b", "a"]
    made_d, made_b, made_a = found
    assert made_d.producer is not None and made_d.producer.task == "t3"
    assert [(i.dataset, i.version, i.newest, i.newest_time) for i in made_d.inputs] == [
        ("c", 3, 9, at(60))
    ]
    assert [(i.dataset, i.version, i.newest) for i in made_b.inputs] == [("a", 1, 1)]
    # announced from outside: no producer, nothing it was made from; its check's newest outcome
    assert (made_a.producer, made_a.inputs) == (None, [])
    assert [(c.check, c.passed, c.message) for c in made_a.checks] == [("c1", False, "no rows")]
    assert await store.provenance([]) == []
