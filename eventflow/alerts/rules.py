"""Alert rules: which events go to which webhook, in which shape, retried how.

A rule is declared in the App (`App(..., alerts=[Alert(...)])`) and validated with it, so a
typo in an event kind, a filter naming a pipeline the App lacks or a webhook that is not a URL
fails at load time, not when the first failure should have been told. Which events a rule
wants is the subscribers' own selection (`subscriptions.Selection`), so `ef.Subscriber` and an
alert read the same filters the same way.

Secrets stay out of code: a header value or the webhook may name environment variables as
`${NAME}`, read when the alerts service starts.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigurationError, DefinitionError
from ..events import (
    CheckCompleted,
    DeadLetter,
    Event,
    FreshnessRecovered,
    FreshnessViolated,
    PipelineRunFailed,
    PipelineRunSucceeded,
    TaskFailed,
)
from ..subscriptions import Selection

if TYPE_CHECKING:
    from ..definitions import App

Format = Literal["json", "slack"]
FORMATS: tuple[str, ...] = ("json", "slack")

#: What a rule may be `on`: each kind is one event type, and for checks the status wanted.
KINDS: dict[str, tuple[str, str | None]] = {
    "run.failed": (PipelineRunFailed.event_type, None),
    "run.succeeded": (PipelineRunSucceeded.event_type, None),
    "task.failed": (TaskFailed.event_type, None),
    "check.failed": (CheckCompleted.event_type, "failed"),
    "freshness.violated": (FreshnessViolated.event_type, None),
    "freshness.recovered": (FreshnessRecovered.event_type, None),
    "deadletter": (DeadLetter.event_type, None),
}

#: What the events of each kind name, which is what filters can keep them by.
NAMES: dict[str, tuple[str, ...]] = {
    "run.failed": ("pipeline", "partition"),
    "run.succeeded": ("pipeline", "partition"),
    "task.failed": ("pipeline", "partition"),
    "check.failed": ("dataset", "partition"),
    "freshness.violated": ("pipeline", "dataset", "partition"),  # a task's, or a dataset's
    "freshness.recovered": ("pipeline", "dataset", "partition"),
    "deadletter": (),
}

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,99}")
_HEADER = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: A header value HTTP takes: visible ASCII, spaces and tabs inside only.
_HEADER_VALUE = re.compile(r"(?:[!-~](?:[ \t!-~]*[!-~])?)?")
#: A literal webhook path this long may be a secret (a Slack webhook's is), so it is not shown.
SECRET_PATH = 16
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: Headers every delivery sets itself.
RESERVED_HEADERS = frozenset({"content-type", "content-length", "host", "idempotency-key"})


@dataclass(frozen=True)
class Alert:
    """Send the events named by `on` to `webhook`, as `format` (`json`: the CloudEvent as it
    is; `slack`: a Slack message saying what failed, where and why).

    `on` takes `run.failed`, `run.succeeded`, `task.failed` (every failed attempt),
    `check.failed`, `freshness.violated`, `freshness.recovered` and `deadletter`. `pipelines`,
    `datasets` and `partitions` keep only events naming one of them (an empty one keeps all).
    `headers` are sent with each request; a value (and the webhook) may hold `${NAME}`, read
    from the environment when the alerts service starts.

    A failed delivery is tried again after `backoff_s`, doubling up to `max_backoff_s`, until
    `max_attempts` attempts or `max_age_s` since the event was recorded (at the default backoff,
    the age is what ends it: a receiver down for hours still gets the alert); each attempt,
    answer included, may take `timeout_s`. A 2xx answer delivers it; 408, 425, 429, a 5xx, a
    timeout or an unreachable host are tried again; any other answer gives it up at once, with
    the reason.
    """

    name: str
    on: Sequence[str]
    webhook: str
    pipelines: Sequence[str] = ()
    datasets: Sequence[str] = ()
    partitions: Sequence[str] = ()
    format: Format = "json"
    headers: Mapping[str, str] = field(default_factory=dict)
    max_attempts: int = 1000
    max_age_s: float = 24 * 3600.0
    backoff_s: float = 1.0
    max_backoff_s: float = 300.0
    timeout_s: float = 10.0

    def selections(self) -> tuple[Selection, ...]:
        """One subscriber's selection per kind of `on`, with the rule's filters."""
        return tuple(
            Selection(
                kinds=(KINDS[kind][0],),
                pipelines=frozenset(self.pipelines),
                datasets=frozenset(self.datasets),
                partitions=frozenset(self.partitions),
                statuses=frozenset({s}) if (s := KINDS[kind][1]) else frozenset(),
            )
            for kind in self.on
        )

    def wants(self, event: Event) -> bool:
        """Whether `event` is one this rule sends."""
        return any(s.wants(event) for s in self.selections())

    @property
    def shown_webhook(self) -> str:
        """The webhook as the API and the history show it: `${NAME}` as written, a literal
        query or long path (where a Slack webhook keeps its secret) as `***`."""
        parts = urlsplit(self.webhook)
        path, query = parts.path, parts.query
        if len(path) >= SECRET_PATH and "${" not in path:
            path = "/***"
        if query and "${" not in query:
            query = "***"
        netloc = parts.netloc
        if parts.password and "${" not in parts.password:
            netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc, path=path, query=query, fragment=""))

    @property
    def event_types(self) -> frozenset[str]:
        """The event types its kinds stand for: what the alerts service subscribes to."""
        return frozenset(KINDS[kind][0] for kind in self.on)

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th attempt failed."""
        # The exponent is bounded: 2.0 ** 1024 overflows, and a rule may allow more attempts.
        doubled = self.backoff_s * 2.0 ** min(max(attempts - 1, 0), 64)
        return float(min(self.max_backoff_s, doubled))

    def resolved(self, environ: Callable[[str], str | None]) -> Alert:
        """This rule with every `${NAME}` replaced by the variable's value; a variable not
        set, or a webhook that is not a URL once resolved, is a `ConfigurationError`."""

        def fill(text: str, what: str) -> str:
            def value(match: re.Match[str]) -> str:
                found = environ(match[1])
                if found is None:
                    raise ConfigurationError(
                        f"alert {self.name!r}: {what} reads ${{{match[1]}}}, which is not set"
                    )
                return found

            return _VARIABLE.sub(value, text)

        webhook = fill(self.webhook, "the webhook")
        if _url_problem(webhook):
            # Not the value in the message: it may be a secret (a Slack webhook is one).
            raise ConfigurationError(
                f"alert {self.name!r}: the webhook {self.webhook!r} is not an http(s) URL with "
                f"a host once {', '.join(f'${{{v}}}' for v in variables(self))} is read"
            )
        headers = {k: fill(v, f"header {k}") for k, v in self.headers.items()}
        for key, v in headers.items():
            if not _HEADER_VALUE.fullmatch(v):
                raise ConfigurationError(
                    f"alert {self.name!r}: header {key} holds what HTTP does not allow in a "
                    "header (a line break, a control or non-ASCII character, or white space at "
                    "either end) once its variables are read"
                )
        return replace(self, webhook=webhook, headers=headers, on=tuple(self.on))


def validate(alerts: Iterable[Alert], app: App) -> dict[str, Alert]:
    """The App's rules by name, each checked against the App; `DefinitionError` otherwise."""
    found: dict[str, Alert] = {}
    for alert in alerts:
        if not isinstance(alert, Alert):
            raise DefinitionError(f"alerts= takes ef.Alert rules, not {type(alert).__name__}")
        where = f"alert {alert.name!r}"
        if not isinstance(alert.name, str) or not _NAME.fullmatch(alert.name):
            raise DefinitionError(f"{where}: name must be a word like 'oncall' (1-100 chars)")
        if alert.name in found:
            raise DefinitionError(f"duplicate alert name {alert.name!r}")
        if isinstance(alert.on, str) or not alert.on:
            raise DefinitionError(f"{where}: on= is a list of kinds, e.g. on=['run.failed']")
        for kind in alert.on:
            _known(where, "kind", kind, KINDS)
        for what, names, known in (
            ("pipeline", alert.pipelines, app.pipelines),
            ("dataset", alert.datasets, app.datasets),
        ):
            if isinstance(names, str):
                raise DefinitionError(f"{where}: {what}s= is a list, not {names!r}")
            for name in names:
                _known(where, what, name, known)
        if isinstance(alert.partitions, str):
            raise DefinitionError(f"{where}: partitions= is a list, not {alert.partitions!r}")
        for what, names in (
            ("pipeline", alert.pipelines),
            ("dataset", alert.datasets),
            ("partition", alert.partitions),
        ):
            # A filter keeps only events naming one of its values: a kind whose events never
            # name that field would be dropped, every one of them, without a word.
            blind = [kind for kind in alert.on if names and what not in NAMES[kind]]
            if blind:
                raise DefinitionError(
                    f"{where}: {', '.join(blind)} events name no {what}, so {what}s= would "
                    f"keep none of them; give them a rule of their own"
                    + (f" (filtered by {' or '.join(f'{n}s=' for n in NAMES[blind[0]])})")
                    * bool(NAMES[blind[0]])
                )
        if alert.format not in FORMATS:
            raise DefinitionError(
                f"{where}: format {alert.format!r} is one of {', '.join(FORMATS)}"
                + _hint(str(alert.format), FORMATS)
            )
        if not _VARIABLE.search(alert.webhook) and (problem := _url_problem(alert.webhook)):
            raise DefinitionError(f"{where}: the webhook {problem}")
        for key, value in alert.headers.items():
            if not _HEADER.fullmatch(key) or key.lower() in RESERVED_HEADERS:
                raise DefinitionError(f"{where}: {key!r} is not a header it may set")
            if not isinstance(value, str) or "\r" in value or "\n" in value:
                raise DefinitionError(f"{where}: header {key} must be one line of text")
        limits: tuple[tuple[str, float], ...] = (
            ("max_attempts", alert.max_attempts),
            ("max_age_s", alert.max_age_s),
            ("backoff_s", alert.backoff_s),
            ("max_backoff_s", alert.max_backoff_s),
            ("timeout_s", alert.timeout_s),
        )
        for what, limit in limits:
            if not limit > 0:
                raise DefinitionError(f"{where}: {what} must be above 0, not {limit!r}")
        found[alert.name] = alert
    return found


def variables(alert: Alert) -> list[str]:
    """The environment variables a rule reads."""
    texts = [alert.webhook, *alert.headers.values()]
    return sorted({m for text in texts for m in _VARIABLE.findall(text)})


def _known(where: str, what: str, name: str, known: Iterable[str]) -> None:
    names = sorted(known)
    if name not in names:
        raise DefinitionError(f"{where}: unknown {what} {name!r}" + _hint(name, names, what))


def _hint(name: str, known: Sequence[str], what: str = "") -> str:
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; {what}s: {', '.join(known)}" if what and known else ""


def _url_problem(url: str) -> str | None:
    """Why `url` is not a webhook address, or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError as e:
        return f"{url!r} is not a URL: {e}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL with a host"
    if any(c.isspace() for c in url):
        return f"{url!r} holds white space"
    return None
