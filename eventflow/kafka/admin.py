"""`eventflow topics apply` and `check`: make the cluster's topics match `topics/`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from ..errors import BrokerError
from ..topics import TOPICS, TopicSpec
from .config import KafkaConfig


@dataclass(frozen=True)
class Drift:
    topic: str
    problem: str

    def __str__(self) -> str:
        return f"{self.topic}: {self.problem}"


async def _describe(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for topic in await admin.describe_topics(names):
        if topic.get("error_code", 0) == 0:
            found[topic["topic"]] = len(topic["partitions"])
    return found


async def _configs(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    if not names:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    configs: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(resources):
        for _, _, _, resource, entries in response.resources:
            configs[resource] = {entry[0]: entry[1] for entry in entries}
    return configs


async def _until_visible(admin: AIOKafkaAdminClient, wanted: dict[str, int]) -> None:
    """Topic creation is asynchronous: wait until the metadata shows every new partition."""
    for _ in range(300):
        present = await _describe(admin, list(wanted))
        if all(present.get(name) == count for name, count in wanted.items()):
            return
        await asyncio.sleep(0.1)
    raise BrokerError(f"topics not visible after 30s: {sorted(wanted)}")


def _wanted(config: KafkaConfig, spec: TopicSpec) -> tuple[str, int, dict[str, str]]:
    return config.topic(spec.name), spec.partitions, dict(spec.config)


async def check(config: KafkaConfig) -> list[Drift]:
    """What differs between the cluster and `topics/`: missing topics, partitions, configs."""
    async with _admin(config) as admin:
        names = [config.topic(spec.name) for spec in TOPICS]
        present = await _describe(admin, names)
        configs = await _configs(admin, [n for n in names if n in present])
    drift: list[Drift] = []
    for spec in TOPICS:
        name, partitions, wanted = _wanted(config, spec)
        if name not in present:
            drift.append(Drift(name, "missing"))
            continue
        if present[name] != partitions:
            drift.append(Drift(name, f"{present[name]} partitions, spec says {partitions}"))
        for key, value in wanted.items():
            actual = configs.get(name, {}).get(key)
            if actual != value:
                drift.append(Drift(name, f"{key} is {actual}, spec says {value}"))
    return drift


async def apply(config: KafkaConfig) -> list[str]:
    """Create missing topics, add partitions, and set configs; returns what was done."""
    done: list[str] = []
    async with _admin(config) as admin:
        names = [config.topic(spec.name) for spec in TOPICS]
        present = await _describe(admin, names)
        new = []
        for spec in TOPICS:
            name, partitions, wanted = _wanted(config, spec)
            if name in present:
                continue
            new.append(
                NewTopic(
                    name, partitions, config.settings.kafka_replication_factor, topic_configs=wanted
                )
            )
            done.append(f"created {name} ({partitions} partitions)")
        if new:
            await admin.create_topics(new)
            await _until_visible(admin, {t.name: t.num_partitions for t in new})
        grow = {}
        for spec in TOPICS:
            name, partitions, _ = _wanted(config, spec)
            if name in present and present[name] < partitions:
                grow[name] = NewPartitions(partitions)
                done.append(f"{name}: {present[name]} -> {partitions} partitions")
        if grow:
            await admin.create_partitions(grow)
        existing = [n for n in names if n in present]
        configs = await _configs(admin, existing)
        for spec in TOPICS:
            name, _, wanted = _wanted(config, spec)
            if name not in present:
                continue
            changed = {k: v for k, v in wanted.items() if configs.get(name, {}).get(k) != v}
            if changed:
                # AlterConfigs replaces a topic's whole config: send every key the spec sets.
                await admin.alter_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, name, configs=wanted)]
                )
                done.append(f"{name}: set {', '.join(f'{k}={v}' for k, v in changed.items())}")
    return done


class _admin:
    def __init__(self, config: KafkaConfig) -> None:
        self.client = AIOKafkaAdminClient(**config.client())

    async def __aenter__(self) -> AIOKafkaAdminClient:
        try:
            await self.client.start()
        except KafkaError as e:
            raise BrokerError(f"cannot reach Kafka: {e}") from e
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()
