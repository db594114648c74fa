"""The record of alert deliveries on both backends: one row per (rule, event), claims with a
lease (one holder at a time, taken over once it ran out), outcomes, reads, and what pruning and
a rebuild leave of it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from eventflow.history import HistoryStore

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)


def row(rule: str = "oncall", event_id: str = "e1", **values: Any) -> dict[str, Any]:
    return {
        "rule": rule,
        "event_id": event_id,
        "event_type": "eventflow.pipeline.run.failed",
        "event_time": T0,
        "pipeline": "daily",
        "dataset": None,
        "partition": "2026-11-01",
        "target": "${HOOK}",
        "body": "{}",
        "state": "pending",
        "attempts": 0,
        "recorded_at": T0,
        "next_attempt_at": T0,
    } | values


async def test_an_event_recorded_twice_is_one_delivery(store: HistoryStore) -> None:
    await store.record_deliveries([row(), row(rule="chat")])
    await store.record_deliveries([row(attempts=5, target="other")])
    found = await store.deliveries()
    assert sorted((d.rule, d.attempts, d.target) for d in found) == [
        ("chat", 0, "${HOOK}"),
        ("oncall", 0, "${HOOK}"),
    ]


#: A first attempt's outcome: delivered.
DELIVERED = {
    "state": "delivered",
    "attempts": 1,
    "status_code": 200,
    "error": None,
    "last_attempt_at": T0,
    "next_attempt_at": None,
    "finished_at": T0,
}


async def test_a_claimed_delivery_is_held_until_settled_or_its_lease_ends(
    store: HistoryStore,
) -> None:
    await store.record_deliveries(
        [row(), row(event_id="later", next_attempt_at=T0 + timedelta(seconds=60))]
    )
    [mine] = await store.claim_deliveries(T0, "a", 40, limit=10)
    assert mine["event_id"] == "e1" and mine["body"] == "{}"
    assert await store.claim_deliveries(T0, "b", 40, limit=10) == []  # held by a
    assert await store.next_delivery_due() == T0 + timedelta(seconds=40)  # its lease's end
    [taken] = await store.claim_deliveries(T0 + timedelta(seconds=41), "b", 40, limit=10)
    assert taken["event_id"] == "e1"  # a went quiet: b takes it over
    retry_at = T0 + timedelta(seconds=50)
    failed = {
        "state": "retrying",
        "attempts": 1,
        "status_code": 503,
        "error": "HTTP 503",
        "last_attempt_at": T0,
        "next_attempt_at": retry_at,
        "finished_at": None,
    }
    # a's answer comes after b took the delivery over: b's attempt decides.
    await store.settle_delivery("oncall", "e1", mine["lease_owner"], failed | {"state": "given_up"})
    [d] = await store.deliveries(event_id="e1")
    assert (d.state, d.attempts) == ("pending", 0)
    await store.settle_delivery("oncall", "e1", taken["lease_owner"], failed)
    assert await store.next_delivery_due() == retry_at
    [d] = await store.deliveries(state="retrying")
    assert (d.attempts, d.status_code, d.error, d.next_attempt_at) == (1, 503, "HTTP 503", retry_at)


async def test_a_server_claiming_again_settles_only_with_its_latest_claim(
    store: HistoryStore,
) -> None:
    """Server a's attempt outlives its lease and a claims the delivery again: the first
    attempt's late answer is not the outcome, the second's is."""
    await store.record_deliveries([row()])
    [first] = await store.claim_deliveries(T0, "a", 40, limit=10)
    [second] = await store.claim_deliveries(T0 + timedelta(seconds=41), "a", 40, limit=10)
    assert first["lease_owner"] != second["lease_owner"]
    await store.settle_delivery(
        "oncall", "e1", first["lease_owner"], DELIVERED | {"state": "given_up"}
    )
    [d] = await store.deliveries(event_id="e1")
    assert d.state == "pending", "the first claim's answer came too late"
    await store.settle_delivery("oncall", "e1", second["lease_owner"], DELIVERED)
    [d] = await store.deliveries(event_id="e1")
    assert d.state == "delivered"


async def test_a_finished_delivery_stays_finished(store: HistoryStore) -> None:
    await store.record_deliveries([row()])
    done = DELIVERED
    [claim] = await store.claim_deliveries(T0, "a", 40, limit=10)
    await store.settle_delivery("oncall", "e1", claim["lease_owner"], done)
    late = done | {"state": "retrying", "attempts": 2, "next_attempt_at": T0}
    await store.settle_delivery("oncall", "e1", claim["lease_owner"], late)  # a late answer
    [d] = await store.deliveries()
    assert (d.state, d.attempts) == ("delivered", 1)
    assert await store.claim_deliveries(T0 + timedelta(days=1), "a", 40, limit=10) == []
    assert await store.next_delivery_due() is None


async def test_deliveries_are_read_newest_first_and_filtered(store: HistoryStore) -> None:
    await store.record_deliveries(
        [
            row(event_id="old"),
            row(event_id="new", recorded_at=T0 + timedelta(seconds=5), pipeline="other"),
            row(rule="chat", event_id="new", recorded_at=T0 + timedelta(seconds=5)),
        ]
    )
    assert [(d.rule, d.event_id) for d in await store.deliveries()] == [
        ("chat", "new"),
        ("oncall", "new"),
        ("oncall", "old"),
    ]
    assert [d.event_id for d in await store.deliveries(rule="oncall", pipeline="daily")] == ["old"]
    assert [d.rule for d in await store.deliveries(since=T0 + timedelta(seconds=1))] == [
        "chat",
        "oncall",
    ]
    assert len(await store.deliveries(event_id="new", limit=1)) == 1


async def test_pruning_takes_old_finished_deliveries_and_a_rebuild_none(
    store: HistoryStore,
) -> None:
    old = T0 - timedelta(days=40)
    await store.record_deliveries(
        [
            row(event_id="done", state="delivered", finished_at=old, recorded_at=old),
            row(event_id="open", recorded_at=old),  # still retrying: kept
        ]
    )
    await store.prune(T0)
    assert [d.event_id for d in await store.deliveries()] == ["open"]
    await store.clear()
    assert [d.event_id for d in await store.deliveries()] == ["open"]


async def test_a_rule_is_claimed_no_more_than_its_share(store: HistoryStore) -> None:
    """A backlog of one rule, due first, leaves room for another rule's delivery: the claim
    takes at most `per_rule` of a rule, counting those its caller already holds."""
    backlog = [row(rule="stuck", event_id=f"s{i}") for i in range(10)]
    later = T0 + timedelta(seconds=1)
    await store.record_deliveries([*backlog, row(rule="fine", next_attempt_at=later)])
    first = await store.claim_deliveries(later, "a", 40, limit=8, per_rule=3, busy={"stuck": 1})
    assert sorted(r["rule"] for r in first) == ["fine", "stuck", "stuck"]
    assert "rank" not in first[0]
    assert await store.claim_deliveries(later, "a", 40, 8, per_rule=3, busy={"stuck": 3}) == []
    assert await store.next_delivery_due(["stuck"]) == later + timedelta(seconds=40)
    assert await store.next_delivery_due() == T0  # the rest of the backlog, waiting
