"""Alert rules as the App validates them, which events they select, what an attempt's answer
means (`judge`), and the bodies posted (no I/O here: the wire is in the conformance suite)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

import eventflow as ef
from eventflow.alerts.delivery import Answer, attempt, judge
from eventflow.alerts.formats import body, slack
from eventflow.events import (
    CheckCompleted,
    CheckCompletedData,
    DatasetVersion,
    FreshnessData,
    FreshnessViolated,
    PipelineRunData,
    PipelineRunFailed,
    TaskOutcome,
    decode,
)

HOOK = "https://hooks.example.com/x"
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def app(*alerts: ef.Alert) -> ef.App:
    p = ef.Pipeline("daily")

    @p.task(inputs=[ef.Dataset("src", ef.daily())], outputs=[ef.Dataset("out", ef.daily())])
    def make(ctx: ef.TaskContext) -> None:
        pass

    return ef.App([p], alerts=alerts)


def failed_run(pipeline: str = "daily", partition: str = "2026-11-01") -> PipelineRunFailed:
    data = PipelineRunData(
        pipeline=pipeline,
        partition=partition,
        run_id=f"{pipeline}:{partition}:1",
        status="failed",
        started_at=T0,
        finished_at=T0,
        tasks=[TaskOutcome(task="make", status="failed", attempts=1, error="disk full")],
    )
    return PipelineRunFailed.of(data, source="eventflow")


def failed_check(dataset: str = "out", passed: bool = False) -> CheckCompleted:
    target = DatasetVersion(dataset=dataset, partition="2026-11-01", version=7)
    data = CheckCompletedData(
        run_id="c", check="rows", target=target, passed=passed, blocking=True, message="0 rows"
    )
    return CheckCompleted.of(data, source="eventflow")


@pytest.mark.parametrize(
    ("alert", "said"),
    [
        (ef.Alert("a", on=["run.faild"], webhook=HOOK), "did you mean 'run.failed'?"),
        (ef.Alert("a", on="run.failed", webhook=HOOK), "on= is a list"),
        (ef.Alert("a", on=[], webhook=HOOK), "on= is a list"),
        (ef.Alert("a", on=["run.failed"], webhook="ftp://x"), "not an http(s) URL"),
        (ef.Alert("a", on=["run.failed"], webhook="hooks.example.com"), "not an http(s) URL"),
        (
            ef.Alert("a", on=["run.failed"], webhook=HOOK, pipelines=["dialy"]),
            "unknown pipeline 'dialy'; did you mean 'daily'?",
        ),
        (
            ef.Alert("a", on=["run.failed"], webhook=HOOK, datasets=["zzz"]),
            "unknown dataset 'zzz'; datasets: out, src",
        ),
        (ef.Alert("a", on=["run.failed"], webhook=HOOK, format="slak"), "did you mean 'slack'?"),  # type: ignore[arg-type]  # a typo is what is tested
        (
            ef.Alert("a", on=["run.failed"], webhook=HOOK, headers={"Content-Type": "x"}),
            "not a header it may set",
        ),
        (
            ef.Alert("a", on=["run.failed"], webhook=HOOK, headers={"X-Token": "a\nb"}),
            "one line",
        ),
        (ef.Alert("a", on=["run.failed"], webhook=HOOK, max_attempts=0), "max_attempts"),
        (ef.Alert("a b", on=["run.failed"], webhook=HOOK), "name must be a word"),
    ],
)
def test_a_bad_rule_is_refused_when_the_app_is_built(alert: ef.Alert, said: str) -> None:
    with pytest.raises(ef.DefinitionError, match="alert 'a") as e:
        app(alert)
    assert said in str(e.value)


def test_two_rules_of_one_name_are_refused() -> None:
    rule = ef.Alert("oncall", on=["run.failed"], webhook=HOOK)
    with pytest.raises(ef.DefinitionError, match="duplicate alert name 'oncall'"):
        app(rule, rule)


def test_secrets_are_read_from_the_environment_when_resolved() -> None:
    rule = ef.Alert(
        "a",
        on=["run.failed"],
        webhook="${HOOK_URL}",
        headers={"Authorization": "Bearer ${TOKEN}"},
    )
    assert app(rule).alerts["a"] is rule  # a webhook that is all a variable waits for it
    env = {"HOOK_URL": HOOK, "TOKEN": "t0k"}
    resolved = rule.resolved(env.get)
    assert resolved.webhook == HOOK and resolved.headers == {"Authorization": "Bearer t0k"}
    with pytest.raises(ef.ConfigurationError, match=r"reads \$\{TOKEN\}, which is not set"):
        rule.resolved({"HOOK_URL": HOOK}.get)
    with pytest.raises(ef.ConfigurationError, match="not an http"):
        rule.resolved({"HOOK_URL": "nope", "TOKEN": "t"}.get)


def test_a_rule_selects_by_kind_and_filters() -> None:
    every = ef.Alert("a", on=["run.failed", "check.failed"], webhook=HOOK)
    assert every.wants(failed_run()) and every.wants(failed_check())
    assert not every.wants(failed_check(passed=True))
    assert ef.Alert("b", on=["run.failed"], webhook=HOOK, pipelines=["daily"]).wants(failed_run())
    assert not ef.Alert("c", on=["run.failed"], webhook=HOOK, pipelines=["x"]).wants(failed_run())
    assert not ef.Alert("d", on=["run.failed"], webhook=HOOK, partitions=["2026-11-02"]).wants(
        failed_run()
    )
    by_dataset = ef.Alert("e", on=["check.failed", "freshness.violated"], webhook=HOOK)
    only_out = ef.Alert("e", on=by_dataset.on, webhook=HOOK, datasets=["out"])
    late = FreshnessViolated.of(
        FreshnessData(
            kind="dataset",
            name="out",
            partition="2026-11-01",
            policy="deadline",
            expected_by=T0,
            since=T0,
            message="out@2026-11-01 was expected by 06:00",
        ),
        source="eventflow",
    )
    assert only_out.wants(late) and only_out.wants(failed_check("out"))
    assert not only_out.wants(failed_check("src"))


RULE = ef.Alert("a", on=["run.failed"], webhook=HOOK, max_attempts=4, max_age_s=60)


@pytest.mark.parametrize(
    ("answer", "attempts", "state", "delay", "error"),
    [
        (Answer(200), 1, "delivered", None, None),
        (Answer(204), 3, "delivered", None, None),
        (Answer(503, "HTTP 503: busy"), 1, "retrying", 1.0, "HTTP 503: busy"),
        (Answer(503, "HTTP 503"), 3, "retrying", 4.0, "HTTP 503"),
        (Answer(429, "HTTP 429", retry_after_s=30), 1, "retrying", 30.0, "HTTP 429"),
        (Answer(None, "ConnectError"), 2, "retrying", 2.0, "ConnectError"),
        (Answer(404, "HTTP 404"), 1, "given_up", None, "refused: HTTP 404"),
        (Answer(301, "HTTP 301"), 1, "given_up", None, "refused: HTTP 301"),
        (Answer(None, "InvalidURL", retriable=False), 1, "given_up", None, "refused: InvalidURL"),
        (Answer(500, "HTTP 500"), 4, "given_up", None, "gave up after 4 attempts: HTTP 500"),
    ],
)
def test_an_answer_delivers_retries_or_gives_up(
    answer: Answer, attempts: int, state: str, delay: float | None, error: str | None
) -> None:
    verdict = judge(RULE, attempts, T0, T0, answer)
    assert verdict.state == state and verdict.error == error
    assert verdict.next_at == (T0 + timedelta(seconds=delay) if delay is not None else None)


def test_backoff_is_capped_and_the_age_bounds_the_retries() -> None:
    rule = ef.Alert("a", on=["run.failed"], webhook=HOOK, max_backoff_s=5, max_age_s=100)
    assert [rule.delay(n) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    late = T0 + timedelta(seconds=97)
    verdict = judge(rule, 9, T0, late, Answer(None, "ReadTimeout"))
    assert verdict.state == "given_up"
    assert verdict.error == "gave up after 9 attempts in 97s (max_age_s 100): ReadTimeout"


def test_json_posts_the_cloudevent_as_it_is() -> None:
    event = failed_run()
    content, kind = body(event, "json", None)
    assert kind == "application/cloudevents+json" and decode(content) == event


def test_slack_says_what_failed_where_and_why_with_a_link() -> None:
    message: dict[str, Any] = slack(failed_run(), "https://ui.example/")
    assert (
        message["text"]
        == "Run of daily failed: pipeline daily, partition 2026-11-01: make: disk full"
    )
    section = message["blocks"][0]["text"]["text"]
    assert "<https://ui.example/ui/runs/daily%3A2026-11-01%3A1|Open in eventflow>" in section
    assert "make: disk full" in section
    assert "Open in" not in orjson.dumps(slack(failed_run(), None)).decode()
    check = slack(failed_check(), None)
    assert (
        check["text"] == "Check rows failed: dataset out, partition 2026-11-01, version 7: 0 rows"
    )
    # Slack reads <, > and & as markup: what an event says is escaped.
    odd = slack(failed_run(partition="<!channel>&"), None)
    assert "<!channel>" not in orjson.dumps(odd).decode()


# -- found in review -----------------------------------------------------------------------------
def test_slacks_section_stays_within_3000_characters_once_escaped() -> None:
    """Slack refuses (400 invalid_blocks, given up at once) a section over 3,000 characters;
    escaping turns each `<` of an error (a repr, an HTML page) into four."""
    run = failed_run().data.model_copy(update={"reason": "<div>&" * 1000})
    message = slack(PipelineRunFailed.of(run, source="eventflow"), "https://ui.example/")
    section = message["blocks"][0]["text"]["text"]
    assert len(section) <= 3000 and "&lt;div&gt;&amp;" in section
    assert section.endswith(
        "…```\n<https://ui.example/ui/runs/daily%3A2026-11-01%3A1|Open in eventflow>"
    )
    assert "&" not in section.replace("&lt;", "").replace("&gt;", "").replace("&amp;", "")
    assert len(message["text"]) <= 400


def test_the_default_rule_outlasts_a_receiver_down_for_hours() -> None:
    """At the default backoff, 20 attempts were spent in under an hour, so a receiver down
    longer lost every alert although `max_age_s` is a day."""
    rule = ef.Alert("a", on=["run.failed"], webhook=HOOK)
    now, attempts = T0, 0
    while now < T0 + timedelta(hours=12):
        attempts += 1
        verdict = judge(rule, attempts, T0, now, Answer(None, "ConnectError"))
        assert verdict.state == "retrying", verdict.error
        assert verdict.next_at is not None
        now = verdict.next_at
    late = T0 + timedelta(seconds=rule.max_age_s)
    assert judge(rule, attempts, T0, late, Answer(None, "ConnectError")).state == "given_up"


def test_backoff_after_a_thousand_attempts_does_not_overflow() -> None:
    rule = ef.Alert("a", on=["run.failed"], webhook=HOOK, max_attempts=10**6, max_age_s=1e9)
    assert rule.delay(1025) == rule.delay(10**6) == rule.max_backoff_s


def test_a_webhook_secret_is_not_in_the_error_when_it_is_no_url() -> None:
    rule = ef.Alert("a", on=["run.failed"], webhook="${HOOK_URL}")
    with pytest.raises(ef.ConfigurationError, match="not an http") as e:
        rule.resolved({"HOOK_URL": "hooks.slack.com/services/T0/B0/s3cretpart"}.get)
    assert "s3cretpart" not in str(e.value) and "${HOOK_URL}" in str(e.value)


@pytest.mark.parametrize("token", ["s3cret ", "s3cret\t", "\x00s3cret", "s3crét"])
def test_a_header_http_refuses_is_refused_at_start_without_its_value(token: str) -> None:
    rule = ef.Alert("a", on=["run.failed"], webhook=HOOK, headers={"X-Token": "${TOKEN}"})
    with pytest.raises(ef.ConfigurationError, match="header X-Token holds") as e:
        rule.resolved({"TOKEN": token}.get)
    assert "s3cr" not in str(e.value)


async def test_an_error_quoting_a_secret_is_recorded_without_it() -> None:
    rule = ef.Alert(
        "a",
        on=["run.failed"],
        webhook="https://hooks.example.com/services/T0/B0/pathsecret?token=querysecret",
        headers={"Authorization": "Bearer hdrsecret"},
    )

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.LocalProtocolError(
            f"Illegal header value {b'Bearer hdrsecret'!r} for {request.url}"
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        answer = await attempt(client, rule, failed_run(), 1, None)
    assert answer.error and "Illegal header value" in answer.error
    assert not any(s in answer.error for s in ("hdrsecret", "pathsecret", "querysecret"))


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nx-slow: ",  # headers never end
        b"HTTP/1.1 500 Oops\r\ncontent-length: 100000\r\n\r\n",  # the body never ends
    ],
)
async def test_an_attempt_ends_within_its_timeout_when_the_receiver_trickles(
    answer: bytes,
) -> None:
    """httpx's timeouts bound each read: a receiver sending a byte now and then held the
    attempt (its slot, and past its lease) for as long as it liked."""
    stop = asyncio.Event()

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        with contextlib.suppress(ConnectionError):
            while not stop.is_set():
                writer.write(b"x")
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.05)
        writer.close()

    server = await asyncio.start_server(trickle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    rule = ef.Alert("a", on=["run.failed"], webhook=f"http://127.0.0.1:{port}/", timeout_s=0.5)
    try:
        async with httpx.AsyncClient() as client, asyncio.timeout(10):
            got = await attempt(client, rule, failed_run(), 1, None)
    finally:
        stop.set()
        server.close()
    assert got.retriable and not got.ok
    if answer.startswith(b"HTTP/1.1 500"):
        assert got.status_code == 500 and got.error and got.error.startswith("HTTP 500: xxx")
    else:
        assert got.status_code is None and got.error == "no answer within 0.5s"


@pytest.mark.parametrize(
    ("rule", "said"),
    [
        (
            ef.Alert("a", on=["run.failed", "check.failed"], webhook=HOOK, pipelines=["daily"]),
            "check.failed events name no pipeline, so pipelines= would keep none of them",
        ),
        (
            ef.Alert("a", on=["run.failed"], webhook=HOOK, datasets=["out"]),
            "run.failed events name no dataset",
        ),
        (
            ef.Alert("a", on=["deadletter"], webhook=HOOK, partitions=["2026-11-01"]),
            "deadletter events name no partition",
        ),
    ],
)
def test_a_filter_that_a_kinds_events_cannot_pass_is_refused(rule: ef.Alert, said: str) -> None:
    """`on=["run.failed", "check.failed"], pipelines=[...]` (the README's example) sent the
    runs and silently no check failure: checks name a dataset, never a pipeline."""
    with pytest.raises(ef.DefinitionError, match="alert 'a'") as e:
        app(rule)
    assert said in str(e.value)
