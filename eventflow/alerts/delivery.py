"""One delivery attempt, and what its answer means.

`judge` is the decision, pure: a 2xx delivers; 408, 425, 429, a 5xx or no answer at all (a
timeout, a refused connection, a name that does not resolve) is tried again after the rule's
backoff (or the receiver's `Retry-After`, up to the rule's cap) while attempts and time remain;
anything else (another 4xx, a redirect) is given up at once, since sending it again would get
the same answer. `attempt` makes the request and never raises: whatever goes wrong is an answer.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from importlib.metadata import version
from urllib.parse import urlsplit

import httpx

from ..events import Event
from ..history import DeliveryState
from .formats import body
from .rules import SECRET_PATH, Alert

#: Statuses that say "not now" rather than "no".
AGAIN = frozenset({408, 425, 429})
#: Characters of a receiver's answer kept as the reason.
EXCERPT = 200
USER_AGENT = f"eventflow/{version('eventflow')}"


@dataclass(frozen=True)
class Answer:
    """What one attempt got: a status (None when no answer came), what went wrong, whether it
    may pass on its own, and how long the receiver asked to wait."""

    status_code: int | None
    error: str | None = None
    retriable: bool = True
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class Verdict:
    """Where a delivery stands after an attempt."""

    state: DeliveryState
    next_at: datetime | None
    error: str | None


def judge(rule: Alert, attempts: int, recorded_at: datetime, now: datetime, got: Answer) -> Verdict:
    """The delivery after its `attempts`-th attempt got `got` at `now`."""
    if got.ok:
        return Verdict("delivered", None, None)
    why = got.error or f"HTTP {got.status_code}"
    code = got.status_code
    if not got.retriable or (code is not None and code < 500 and code not in AGAIN):
        return Verdict("given_up", None, f"refused: {why}")
    if attempts >= rule.max_attempts:
        return Verdict("given_up", None, f"gave up after {attempts} attempts: {why}")
    delay = rule.delay(attempts)
    if got.retry_after_s is not None:
        delay = min(max(delay, got.retry_after_s), rule.max_backoff_s)
    next_at = now + timedelta(seconds=delay)
    if next_at - recorded_at > timedelta(seconds=rule.max_age_s):
        return Verdict(
            "given_up",
            None,
            f"gave up after {attempts} attempts in {(now - recorded_at).total_seconds():.0f}s "
            f"(max_age_s {rule.max_age_s:g}): {why}",
        )
    return Verdict("retrying", next_at, why)


def idempotency_key(rule: str, event_id: str) -> str:
    """The same for every attempt of one delivery, and only for it."""
    return hashlib.sha256(f"{rule}\0{event_id}".encode()).hexdigest()[:32]


async def attempt(
    client: httpx.AsyncClient, rule: Alert, event: Event, number: int, ui_url: str | None
) -> Answer:
    """Post `event` as `rule` says (its secrets resolved); the answer, whatever happens. The
    whole attempt, answer included, takes at most `timeout_s` (httpx's own timeouts bound each
    read, so a receiver trickling its answer would hold the attempt, past its lease, for
    ever), and only the start of a failure's answer is read. An error never holds the rule's
    secrets (the HTTP library quotes a header value it refuses)."""
    response: httpx.Response | None = None
    said = bytearray()
    try:
        content, content_type = body(event, rule.format, ui_url)
        headers = {
            "User-Agent": USER_AGENT,
            **rule.headers,
            "Content-Type": content_type,
            "Idempotency-Key": idempotency_key(rule.name, event.id),
            "X-Eventflow-Alert": rule.name,
            "X-Eventflow-Event-Id": event.id,
            "X-Eventflow-Event-Type": event.type,
            "X-Eventflow-Attempt": str(number),
        }
        request = client.build_request(
            "POST", rule.webhook, content=content, headers=headers, timeout=rule.timeout_s
        )
        async with asyncio.timeout(rule.timeout_s):
            response = await client.send(request, stream=True)
            if not 200 <= response.status_code < 300:
                async for chunk in response.aiter_bytes():
                    said += chunk
                    if len(said) >= 4 * EXCERPT:
                        break
    except (httpx.TimeoutException, TimeoutError):
        if response is None:
            return Answer(None, f"no answer within {rule.timeout_s:g}s")
        # The status came, the rest of the answer did not: the status is the answer.
    except httpx.TransportError as e:
        if response is None:
            why = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            return Answer(None, _secret_free(why, rule))
    except Exception as e:  # a bug or a URL httpx refuses: recorded, never raised
        return Answer(None, _secret_free(f"{type(e).__name__}: {e}", rule), retriable=False)
    finally:
        if response is not None:
            await response.aclose()
    assert response is not None
    status = response.status_code
    if 200 <= status < 300:
        return Answer(status)
    text = bytes(said).decode(response.encoding or "utf-8", errors="replace")[:EXCERPT].strip()
    error = f"HTTP {status}" + (f": {text}" if text else "")
    if 300 <= status < 400 and "location" in response.headers:
        error += f" (redirected to {response.headers['location'][:EXCERPT]})"
    return Answer(status, _secret_free(error, rule), retry_after_s=_retry_after(response))


def _secret_free(text: str, rule: Alert) -> str:
    """`text` with the rule's resolved header values, and its webhook's query and long path
    (where a Slack webhook keeps its secret), replaced by `***`, as written or as quoted."""
    parts = urlsplit(rule.webhook)
    secrets = {v for v in rule.headers.values() if len(v) >= 4}
    secrets |= {x for x in (parts.query, parts.path if len(parts.path) >= SECRET_PATH else "") if x}
    for secret in sorted(secrets, key=len, reverse=True):
        for form in (secret, repr(secret)[1:-1], repr(secret.encode())[2:-1]):
            text = text.replace(form, "***")
    return text


def _retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds, from seconds or an HTTP date; None if absent or unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - datetime.now(when.tzinfo)).total_seconds())
