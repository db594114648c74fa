"""The alerts service: reads the events its rules want as a durable subscriber, records one
delivery per (rule, event), and delivers them to the webhooks.

It runs beside either runtime the same way, since `Subscriber` means the same on both: inside
`eventflow dev` it reads the embedded event log through the control socket (its position kept in
the state file), inside `eventflow server` it reads the event topics as the consumer group
`eventflow.subscriber.eventflow-alerts`. An event counts as handled (its position stored, its
offset committed) only once its deliveries are recorded, so a crash repeats events rather than
losing them, and the record's key (rule, event id) makes a repeated event one delivery.
Sending works from the record, not from the stream: a receiver that is down holds back only its
own deliveries, which wait in the store (across restarts) and go out when it is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from ..clients import Intake, Subscriber
from ..definitions import App
from ..errors import EventError, StorageError
from ..events import Event, decode, encode
from ..history import HistoryStore
from ..lifecycle import Service, instance_id, pause_after
from ..runtime.clock import Cancellable, Clock, SystemClock
from ..settings import Settings
from ..subscriptions import facts
from .delivery import Answer, Verdict, attempt, judge
from .rules import Alert

log = logging.getLogger("eventflow.alerts")

#: The durable subscription the service reads with (a consumer group's name on Kafka).
SUBSCRIPTION = "eventflow-alerts"
#: Deliveries attempted at once.
CONCURRENCY = 16
#: Deliveries of one rule attempted at once: a receiver that is slow or never answers holds
#: these, never every slot.
PER_RULE = 4
#: Seconds a claimed delivery is held beyond its attempt's timeout before another may take it.
LEASE_MARGIN_S = 30.0
#: The longest pause between two tries to write to a store that refuses writes.
STORE_BACKOFF_MAX_S = 30.0


class AlertService(Service):
    """Delivers the App's alerts (`app.alerts`) and records each delivery in `store` (the
    settings' history store by default). Secrets (`${NAME}`) are read when it starts: one not
    set is a `ConfigurationError` then. `clock` and `transport` are for tests."""

    name = "eventflow alerts"

    def __init__(
        self,
        app: App,
        settings: Settings,
        store: HistoryStore | None = None,
        *,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        subscription: str = SUBSCRIPTION,
    ) -> None:
        super().__init__()
        self.app = app
        self.settings = settings
        self.store = store if store is not None else HistoryStore.of(settings)
        self.clock = clock or SystemClock()
        self.subscription = subscription
        self.instance = instance_id()
        self._transport = transport
        self._rules: dict[str, Alert] = {}
        self._http: httpx.AsyncClient | None = None
        # A repeated event is no new delivery: reading again from the last commit is safe.
        self._intake = Intake(self._subscribe, "alerts", sleep=self.clock.sleep)
        self._wake = asyncio.Event()
        #: The attempts under way, each with its rule.
        self._inflight: dict[asyncio.Task[None], str] = {}
        self._changed = asyncio.Condition()
        #: Events taken in that a rule wanted (their deliveries recorded), since the start.
        self.taken = 0

    # -- lifecycle -------------------------------------------------------------------------------
    async def _open(self) -> None:
        self._rules = {
            name: rule.resolved(self.settings.environment) for name, rule in self.app.alerts.items()
        }
        await self.store.start()
        self._http = httpx.AsyncClient(transport=self._transport, follow_redirects=False)
        if self._rules:
            # Started here, so that what cannot work (a topic missing, no dev instance to
            # read from) fails the start rather than the service later.
            await self._intake.start()
            self.spawn(self._intake.run(self._take), "alert intake")
        self.spawn(self._deliver(), "alert delivery")
        self.ready.set()

    async def _close(self) -> None:
        await self._stop_loops()
        await self.cancel(*self._inflight)
        await self._intake.stop()
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()
        await self.store.stop()

    async def until(self, done: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
        """Until `done()` holds, checked at once and after each delivery recorded or attempt
        settled (for tests and tools that wait on a delivery)."""
        async with asyncio.timeout(timeout), self._changed:
            while not await done():
                if self.error is not None:
                    raise self.error
                await self._changed.wait()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _failing(self, error: BaseException) -> None:
        asyncio.get_running_loop().create_task(self._notify())

    # -- intake ----------------------------------------------------------------------------------
    def _subscribe(self) -> Subscriber:
        types = sorted({t for rule in self._rules.values() for t in rule.event_types})
        return Subscriber(self.settings, kinds=types, name=self.subscription, finished_only=False)

    async def _take(self, event: Event) -> None:
        rows = self.rows(event, self._now())
        if rows:
            await self._stored(self.store.record_deliveries, rows)
            self.taken += 1
            self._wake.set()
            await self._notify()

    def rows(self, event: Event, now: datetime) -> list[dict[str, Any]]:
        """A `pending` delivery per rule that wants `event`. A rule whose filter fails on it
        gets one given up with the reason, so nothing an event holds can stop the service."""
        found: list[dict[str, Any]] = []
        said = facts(event)
        body = encode(event).decode()
        for name, rule in self._rules.items():
            error = None
            try:
                if not rule.wants(event):
                    continue
            except Exception as e:
                log.exception("alert %r: its filter failed on event %s", name, event.id)
                error = f"the rule's filter failed: {type(e).__name__}: {e}"
            found.append(
                {
                    "rule": name,
                    "event_id": event.id,
                    "event_type": event.type,
                    "event_time": event.time,
                    "pipeline": said.get("pipeline"),
                    "dataset": said.get("dataset"),
                    "partition": said.get("partition"),
                    "target": self.app.alerts[name].shown_webhook,
                    "body": body,
                    "state": "pending" if error is None else "given_up",
                    "attempts": 0,
                    "error": error,
                    "recorded_at": now,
                    "next_attempt_at": now if error is None else None,
                    "finished_at": None if error is None else now,
                }
            )
        return found

    # -- delivery --------------------------------------------------------------------------------
    async def _deliver(self) -> None:
        lease_s = max((r.timeout_s for r in self._rules.values()), default=10.0) + LEASE_MARGIN_S
        while True:
            self._wake.clear()
            timer: Cancellable | None = None
            room = CONCURRENCY - len(self._inflight)
            if room > 0:
                busy = Counter(self._inflight.values())

                async def claim(room: int = room, busy: Counter[str] = busy) -> Any:
                    # The time of each try: a claim retried after an outage is due by then.
                    return await self.store.claim_deliveries(
                        self._now(), self.instance, lease_s, room, per_rule=PER_RULE, busy=busy
                    )

                claimed = await self._stored(claim)
                for row in claimed:
                    task = asyncio.create_task(self._one(row), name=f"alert {row['rule']}")
                    self._inflight[task] = row["rule"]
                    task.add_done_callback(self._attempted)
                if len(claimed) == room:
                    continue  # more may be due
                # Rules holding all they may are left out: each attempt's end wakes this.
                busy = Counter(self._inflight.values())
                full = sorted(rule for rule, n in busy.items() if n >= PER_RULE)
                due = await self._stored(self.store.next_delivery_due, full)
                if due is not None:
                    timer = self.clock.call_at(due.timestamp(), self._wake.set)
            try:
                await self._wake.wait()
            finally:
                if timer is not None:
                    timer.cancel()

    def _attempted(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self._wake.set()
        if not task.cancelled() and (error := task.exception()) is not None:
            self.fail(error, "an alert delivery")

    async def _one(self, row: dict[str, Any]) -> None:
        name, event_id = row["rule"], row["event_id"]
        number = row["attempts"] + 1
        answer, verdict = await self._try(row, number)
        now = self._now()
        values = {
            "state": verdict.state,
            "attempts": number,
            "status_code": answer.status_code,
            "error": verdict.error,
            "last_attempt_at": now,
            "next_attempt_at": verdict.next_at,
            "finished_at": now if verdict.next_at is None else None,
        }
        await self._stored(self.store.settle_delivery, name, event_id, row["lease_owner"], values)
        if verdict.state == "given_up":
            log.warning("alert %r gave event %s up: %s", name, event_id, verdict.error)
        elif verdict.state == "retrying":
            log.info("alert %r, event %s: attempt %d failed: %s", name, event_id, number, answer)
        await self._notify()

    async def _try(self, row: dict[str, Any], number: int) -> tuple[Answer, Verdict]:
        """Attempt `number` of the delivery `row`, and the verdict on it."""
        rule = self._rules.get(row["rule"])
        if rule is None:
            why = f"the App has no alert {row['rule']!r} any more"
            return Answer(None, why, retriable=False), Verdict("given_up", None, why)
        try:
            event = decode(row["body"].encode(), max_metadata_bytes=1 << 30)
        except EventError as e:
            why = f"the recorded event does not decode: {e.reason}"
            return Answer(None, why, retriable=False), Verdict("given_up", None, why)
        assert self._http is not None
        answer = await attempt(self._http, rule, event, number, self.settings.ui_url)
        return answer, judge(rule, number, row["recorded_at"], self._now(), answer)

    async def _stored(self, write: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """`write(*args)` on the store, tried again (with backoff) while it refuses: the
        events and deliveries wait meanwhile, nothing is dropped."""
        failures = 0
        while True:
            try:
                return await write(*args)
            except StorageError as e:
                failures += 1
                log.error("alerts: the store refused (%d in a row): %s", failures, e)
                await self.clock.sleep(pause_after(failures, max_s=STORE_BACKOFF_MAX_S))

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.time(), UTC)
