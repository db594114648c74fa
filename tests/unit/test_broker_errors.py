"""Broker errors reach eventflow as `BrokerError`, and retry loops go by its `retriable`."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    NodeNotReadyError,
    ProducerFenced,
    TopicAuthorizationFailedError,
    UnsupportedVersionError,
)

from eventflow.errors import BrokerError
from eventflow.kafka.config import broker_errors, quiet_fences, retrying


@pytest.mark.parametrize(
    ("error", "retriable"),
    [
        (KafkaConnectionError("broker away"), True),
        (NodeNotReadyError("still electing"), True),
        (ConnectionResetError("reset by peer"), True),
        (TopicAuthorizationFailedError(), False),
        (UnsupportedVersionError(), False),
    ],
)
def test_broker_errors_are_wrapped_with_retriable_from_transient(
    error: Exception, retriable: bool
) -> None:
    with pytest.raises(BrokerError) as raised, broker_errors("reading the changelog"):
        raise error
    assert raised.value.retriable is retriable
    assert raised.value.__cause__ is error
    assert str(raised.value).startswith("reading the changelog: ")


def test_other_errors_pass_through() -> None:
    with pytest.raises(ValueError, match="a defect"), broker_errors("anything"):
        raise ValueError("a defect")


class Attempts:
    """Raises the given errors one per call, then returns how many calls it took."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> int:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.calls


async def test_retriable_errors_are_retried_until_the_attempt_succeeds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempt = Attempts(
        BrokerError("busy", retriable=True),
        KafkaConnectionError("away"),  # unwrapped: classified the same way
        BrokerError("busy again", retriable=True),
    )
    assert await retrying("taking over task 3", attempt, pause_s=0) == 4
    retried = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retried) == 3 and all(m.startswith("taking over task 3 failed") for m in retried)


@pytest.mark.parametrize(
    "error", [BrokerError("refused", retriable=False), TopicAuthorizationFailedError()]
)
async def test_a_non_retriable_error_is_raised_at_once(error: Exception) -> None:
    attempt = Attempts(error)
    with pytest.raises(BrokerError) as raised:
        await retrying("taking over task 3", attempt, pause_s=0)
    assert attempt.calls == 1 and raised.value.retriable is False


async def test_errors_that_are_not_the_brokers_are_not_retried() -> None:
    attempt = Attempts(RuntimeError("a defect"))
    with pytest.raises(RuntimeError, match="a defect"):
        await retrying("taking over task 3", attempt, pause_s=0)
    assert attempt.calls == 1


def _drop_failed(loop: asyncio.AbstractEventLoop, error: Exception) -> None:
    """A future that fails and is let go unawaited, as aiokafka does with a fenced batch's."""
    future = loop.create_future()
    future.set_exception(error)
    del future
    gc.collect()


async def _fail_unawaited(error: Exception) -> None:
    """A task that fails and is let go without anyone taking its error: not a send."""

    async def failing() -> None:
        raise error

    task = asyncio.create_task(failing())
    await asyncio.wait([task])
    del task
    gc.collect()


async def test_a_fenced_producers_unawaited_sends_are_not_reported_as_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    seen: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: seen.append(context))
    quiet_fences(loop)
    installed = loop.get_exception_handler()
    quiet_fences(loop)  # a service started again on the same loop
    assert loop.get_exception_handler() is installed, "installed once"
    with caplog.at_level(logging.DEBUG, logger="eventflow.kafka"):
        _drop_failed(loop, ProducerFenced())
        _drop_failed(loop, ValueError("a defect"))
        await _fail_unawaited(ProducerFenced())
    assert [type(c["exception"]) for c in seen] == [ValueError, ProducerFenced], (
        "other reports, a task's fence among them, go on as before"
    )
    assert "a fenced producer's send, never awaited" in caplog.text


async def test_without_a_handler_of_its_own_the_loop_reports_as_it_would(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(None)
    quiet_fences(loop)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        _drop_failed(loop, ValueError("a defect"))
    assert "Future exception was never retrieved" in caplog.text
