"""Kafka connection options, topic and group names, how keys map to partitions, and which
errors are worth retrying."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, ProducerFenced
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import murmur2

from ..errors import BrokerError, ConfigurationError
from ..settings import Settings
from ..topics import TOPICS, TopicSpec

log = logging.getLogger("eventflow.kafka")

T = TypeVar("T")

#: The most a transactional producer puts in one batch (one partition's records in one produce
#: request). aiokafka's default of 16 KiB split a busy coordinator step's changelog records into
#: many batches (27 requests a step in a throughput run), and a partition's next batch waits
#: until the one before it is acknowledged: a round trip each, and a request each for the
#: broker. Half of the broker's default `message.max.bytes` (1 MiB), which a batch must stay
#: under.
BATCH_BYTES = 1 << 19


def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for `key` (murmur2, as the Java client)."""
    return int((murmur2(key.encode()) & 0x7FFFFFFF) % partitions)


def transient(error: Exception) -> bool:
    """A Kafka or network error worth retrying: the broker is away or busy, not refusing us."""
    if isinstance(error, OSError | KafkaConnectionError | KafkaTimeoutError):
        return True
    return isinstance(error, KafkaError) and bool(error.retriable)


@contextmanager
def broker_errors(what: str) -> Iterator[None]:
    """Raise the errors of aiokafka, and of the sockets under it, as `BrokerError` (`what`
    failed), `retriable` when they are `transient`."""
    try:
        yield
    except (KafkaError, OSError) as e:
        raise BrokerError(f"{what}: {e}", retriable=transient(e)) from e


def quiet_fences(loop: asyncio.AbstractEventLoop) -> None:
    """A fenced producer's pending sends end holding the fence in futures that aiokafka never
    awaits, so asyncio reports each at ERROR, with a traceback, as "never retrieved", after the
    service has handled the fence. Those reports go to DEBUG; every other report is as before."""
    previous = loop.get_exception_handler()
    if getattr(previous, "quiets_fences", False):
        return

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        future = context.get("future")
        fenced = isinstance(context.get("exception"), ProducerFenced)
        if fenced and future is not None and not isinstance(future, asyncio.Task):
            log.debug("a fenced producer's send, never awaited: %s", context["exception"])
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    handler.quiets_fences = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handler)


def owns_nothing_for_sure(consumer: Any) -> bool:
    """An empty assignment means "owning nothing" only if this member knows every partition of
    the topics it subscribes to: a group formed before the metadata of new topics arrived also
    assigns nothing, and rebalances again once it has it."""
    topics = consumer.subscription()
    return bool(topics) and all(consumer.partitions_for_topic(topic) for topic in topics)


async def retrying(what: str, attempt: Callable[[], Awaitable[T]], *, pause_s: float = 1.0) -> T:
    """`attempt()` until it succeeds. A retriable `BrokerError` (or a transient aiokafka error)
    is logged and tried again after `pause_s`; any other error is raised."""
    while True:
        try:
            with broker_errors(what):
                return await attempt()
        except BrokerError as e:
            if not e.retriable:
                raise
            log.warning("%s failed, retrying: %s", what, e.__cause__ or e)
        await asyncio.sleep(pause_s)


class KafkaConfig:
    """Everything a Kafka client of eventflow needs from the settings."""

    def __init__(self, settings: Settings) -> None:
        if not settings.kafka_bootstrap:
            raise ConfigurationError(
                "no Kafka bootstrap servers: set EVENTFLOW_KAFKA_BOOTSTRAP or pass --bootstrap"
            )
        self.settings = settings
        self.bootstrap = settings.kafka_bootstrap
        self.specs: dict[str, TopicSpec] = {spec.name: spec for spec in TOPICS}

    def client(self) -> dict[str, Any]:
        """Connection and security options for any aiokafka client."""
        s = self.settings
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": s.kafka_security_protocol,
        }
        if s.kafka_security_protocol in ("SSL", "SASL_SSL"):
            options["ssl_context"] = create_ssl_context(
                cafile=str(s.kafka_ssl_cafile) if s.kafka_ssl_cafile else None,
                certfile=str(s.kafka_ssl_certfile) if s.kafka_ssl_certfile else None,
                keyfile=str(s.kafka_ssl_keyfile) if s.kafka_ssl_keyfile else None,
            )
        if s.kafka_sasl_mechanism:
            options["sasl_mechanism"] = s.kafka_sasl_mechanism
            options["sasl_plain_username"] = s.kafka_sasl_username
            password = s.kafka_sasl_password
            options["sasl_plain_password"] = password.get_secret_value() if password else None
        return options

    def transactional(
        self, transactional_id: str, client_id: str, **options: Any
    ) -> AIOKafkaProducer:
        """A producer of exactly-once steps: idempotent, acks=all, under `transactional_id`
        (unprefixed)."""
        return AIOKafkaProducer(
            transactional_id=self.name(transactional_id),
            client_id=client_id,
            enable_idempotence=True,
            acks="all",
            max_batch_size=BATCH_BYTES,
            **options,
            **self.client(),
        )

    def topic(self, name: str) -> str:
        """Full name of one of eventflow's topics, e.g. `eventflow.datasets`."""
        return self.settings.topic_prefix + name

    def name(self, name: str) -> str:
        """A consumer group or transactional id, under the same prefix as the topics."""
        return self.settings.topic_prefix + name

    def partitions(self, name: str) -> int:
        return self.specs[name].partitions

    def unprefixed(self, topic: str) -> str:
        return topic[len(self.settings.topic_prefix) :]
