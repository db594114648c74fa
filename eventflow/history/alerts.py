"""The record of alert deliveries: one row per (rule, event id), kept in the history store.

The row is written when the alerts service takes an event in (state `pending`), before the
event counts as handled, so a delivery is never lost between reading the event and sending it,
and the key makes an event read twice (a redelivery, a restart) one delivery. The deliverer
works from these rows: it claims the ones due with a lease (so several servers sharing one
PostgreSQL store never send the same row at once, and a row whose sender died is taken up once
its lease has run out) and writes each attempt's outcome back.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, TypeAlias

from pydantic import Field
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from ..errors import StorageError
from . import schema as t
from .models import Record
from .queries import Queries, whole

#: `pending`: not tried yet; `retrying`: tried, tried again at `next_attempt_at`; `delivered`;
#: `given_up`: refused by the receiver, or out of attempts or time (`error` says which).
DeliveryState: TypeAlias = Literal["pending", "retrying", "delivered", "given_up"]
OPEN: tuple[str, ...] = ("pending", "retrying")


class AlertDelivery(Record):
    """One event sent (or being sent) to one rule's webhook."""

    rule: str = Field(description="The alert rule.")
    event_id: str = Field(description="The event's id; with the rule, the delivery's key.")
    event_type: str = Field(description="The event's type.")
    event_time: datetime = Field(description="When the event happened.")
    pipeline: str | None = Field(default=None, description="The pipeline it names, if any.")
    dataset: str | None = Field(default=None, description="The dataset it names, if any.")
    partition: str | None = Field(default=None, description="The partition it names, if any.")
    target: str = Field(
        description="The webhook as the API shows the rule's (secrets unresolved or `***`)."
    )
    state: DeliveryState = Field(description="Where the delivery stands.")
    attempts: int = Field(description="Attempts made.")
    status_code: int | None = Field(
        default=None, description="HTTP status of the last answer; absent if none came."
    )
    error: str | None = Field(
        default=None, description="What went wrong last (or why it was given up)."
    )
    recorded_at: datetime = Field(description="When the alerts service took the event in.")
    last_attempt_at: datetime | None = Field(default=None, description="The last attempt.")
    next_attempt_at: datetime | None = Field(
        default=None, description="When it is tried next; absent once finished."
    )
    finished_at: datetime | None = Field(
        default=None, description="When it was delivered or given up."
    )


class AlertDeliveries(Queries):
    """The deliveries' writes and reads; `HistoryStore` supplies the engine."""

    def _insert(self, table: Any) -> Any:
        raise NotImplementedError

    @whole
    async def record_deliveries(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Add `pending` deliveries (every column but the attempt's); one that exists (same
        rule and event id) is left as it is."""
        if not rows:
            return
        try:
            async with self._writing() as conn:
                insert = self._insert(t.alert_deliveries).on_conflict_do_nothing()
                # Every column named in every row: one statement takes many rows only so.
                columns = [c.name for c in t.alert_deliveries.columns]
                await conn.execute(insert, [{c: r.get(c) for c in columns} for r in rows])
        except SQLAlchemyError as e:
            raise StorageError(f"cannot record alert deliveries: {e}") from e

    @whole
    async def claim_deliveries(
        self,
        now: datetime,
        owner: str,
        lease_s: float,
        limit: int,
        *,
        per_rule: int | None = None,
        busy: Mapping[str, int] | None = None,
    ) -> list[dict[str, Any]]:
        """Open deliveries due by `now` that no one holds, each leased to `owner` for
        `lease_s`; their rows (with the body), whose `lease_owner` names this claim: the one
        `settle_delivery` takes. With `per_rule`, a rule gets no more than that
        many at once, counting the `busy` ones its caller holds: a receiver that is slow or
        never answers then holds back only its own deliveries, not every rule's."""
        d = t.alert_deliveries
        free = or_(d.c.lease_until.is_(None), d.c.lease_until <= now)
        due = and_(d.c.state.in_(OPEN), d.c.next_attempt_at <= now, free)
        held = Counter(busy or {})
        if per_rule is None:
            sql = select(d).where(due).order_by(d.c.next_attempt_at).limit(limit)
        else:
            full = sorted(rule for rule, n in held.items() if n >= per_rule)
            order = func.row_number().over(partition_by=d.c.rule, order_by=d.c.next_attempt_at)
            ranked = select(d, order.label("rank")).where(due, d.c.rule.not_in(full)).subquery()
            sql = (
                select(*(ranked.c[c.name] for c in d.columns))
                .where(ranked.c.rank <= per_rule)
                .order_by(ranked.c.next_attempt_at)
            )
        claimed: list[dict[str, Any]] = []
        try:
            async with self._writing() as conn:
                rows = [dict(r) for r in (await conn.execute(sql)).mappings()]
                for row in rows:
                    if len(claimed) >= limit:
                        break
                    if per_rule is not None and held[row["rule"]] >= per_rule:
                        continue
                    key = and_(d.c.rule == row["rule"], d.c.event_id == row["event_id"])
                    # Per claim: a server that claims the same delivery again after its lease
                    # ran out must not settle it with the first claim's attempt.
                    lease = {
                        "lease_owner": f"{owner}/{secrets.token_hex(6)}",
                        "lease_until": now + timedelta(seconds=lease_s),
                    }
                    taken = await conn.execute(update(d).where(key, due).values(**lease))
                    if taken.rowcount == 1:
                        claimed.append(row | lease)
                        held[row["rule"]] += 1
        except SQLAlchemyError as e:
            raise StorageError(f"cannot claim alert deliveries: {e}") from e
        return claimed

    @whole
    async def settle_delivery(
        self, rule: str, event_id: str, owner: str, values: Mapping[str, Any]
    ) -> None:
        """Write the outcome of the attempt of claim `owner` (its row's `lease_owner`) to an
        open delivery and let go of its lease. A delivery already finished, or claimed since
        (this attempt was too slow, and is being repeated), stays as it is."""
        d = t.alert_deliveries
        sql = (
            update(d)
            .where(
                d.c.rule == rule,
                d.c.event_id == event_id,
                d.c.state.in_(OPEN),
                d.c.lease_owner == owner,
            )
            .values(**values, lease_owner=None, lease_until=None)
        )
        try:
            async with self._writing() as conn:
                await conn.execute(sql)
        except SQLAlchemyError as e:
            raise StorageError(f"cannot record an alert delivery: {e}") from e

    async def next_delivery_due(self, besides: Sequence[str] = ()) -> datetime | None:
        """When an open delivery is next due: the earliest `next_attempt_at` of those no one
        holds, or the end of a lease, whichever is first; the rules `besides` left out (their
        caller holds as many as it may: it is told when one is done)."""
        d = t.alert_deliveries
        open_ = and_(d.c.state.in_(OPEN), d.c.rule.not_in(list(besides)))
        async with self._read() as conn:
            due = await conn.scalar(
                select(func.min(d.c.next_attempt_at)).where(open_, d.c.lease_until.is_(None))
            )
            leased = await conn.scalar(select(func.min(d.c.lease_until)).where(open_))
        found = [w for w in (due, leased) if w is not None]
        return min(found) if found else None

    async def deliveries(
        self,
        *,
        rule: str | None = None,
        state: str | None = None,
        event_type: str | None = None,
        event_id: str | None = None,
        pipeline: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[AlertDelivery]:
        """Deliveries, newest recorded first, filtered; `since`: recorded at or after."""
        d = t.alert_deliveries
        where: list[Any] = []
        for column, value in (
            (d.c.rule, rule),
            (d.c.state, state),
            (d.c.event_type, event_type),
            (d.c.event_id, event_id),
            (d.c.pipeline, pipeline),
        ):
            if value is not None:
                where.append(column == value)
        if since is not None:
            where.append(d.c.recorded_at >= since)
        sql = (
            select(*(c for c in d.columns if c.name not in ("body", "lease_owner", "lease_until")))
            .where(*where)
            .order_by(d.c.recorded_at.desc(), d.c.rule, d.c.event_id)
            .limit(max(1, min(limit, 1000)))
        )
        async with self._read() as conn:
            return [AlertDelivery(**row) for row in (await conn.execute(sql)).mappings()]
