"""The README's Kafka quick start, command by command, and the Kafka clients."""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from pydantic import SecretStr

import eventflow as ef
from eventflow.topics import TOPICS

from ..kafka_broker import Broker
from .cluster import Cluster, wait_for

pytestmark = pytest.mark.kafka

HELLO = Path(__file__).parents[2] / "examples" / "hello.py"


def run(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventflow", *args],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def says_ready(log: Path) -> bool:
    return "ready, owns partitions" in log.read_text()


def test_quick_start(kafka: Broker, tmp_path: Path) -> None:
    cluster = Cluster.__new__(Cluster)
    Cluster.__init__(cluster, kafka.bootstrap, HELLO, tmp_path)  # applies the topics
    fresh = dict(cluster.env, EVENTFLOW_TOPIC_PREFIX=cluster.env["EVENTFLOW_TOPIC_PREFIX"] + "q.")
    cluster.env = fresh
    cluster.settings = cluster.settings.model_copy(
        update={"topic_prefix": fresh["EVENTFLOW_TOPIC_PREFIX"]}
    )
    drift = run(cluster, "topics", "check")
    assert drift.returncode == 1 and "eventflow.datasets: missing" in drift.stdout
    applied = run(cluster, "topics", "apply")
    assert applied.returncode == 0 and f"{len(TOPICS)} changes applied" in applied.stdout
    assert run(cluster, "topics", "check").stdout.strip() == "no drift"
    try:
        coordinator, worker = cluster.start("coordinator"), cluster.start("worker")
        cluster.ready(coordinator, worker)
        for log in (coordinator.log, worker.log):
            wait_for(functools.partial(says_ready, log), 30, "ready")
            said = log.read_text()
            assert said.index(": joining its group;") < said.index(": ready, owns partitions")
        watch = subprocess.Popen(
            [sys.executable, "-m", "eventflow", "watch"],
            env=cluster.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert watch.stderr is not None and watch.stdout is not None
            assert watch.stderr.readline().startswith("watching 127.0.0.1:")
            sent = run(cluster, "emit", "greetings.requested", "--meta", "name=kafka", "-v", "7")
            assert sent.returncode == 0 and sent.stdout.startswith("published "), sent.stderr
            assert "  hello: requested draft in hello:-:1\n" in sent.stdout
            assert "hello  -  running" in watch.stdout.readline()
            assert "hello  -  ok" in watch.stdout.readline()
            older = run(cluster, "emit", "greetings.requested", "-v", "6")
            assert older.returncode == 3, older.stdout + older.stderr
            assert "router: version 6 is not newer than 7, already seen" in older.stdout
            typo = run(cluster, "emit", "greetings.requsted")
            assert typo.returncode == 1
            assert typo.stderr == "error: dead-lettered: unknown dataset 'greetings.requsted'\n"
        finally:
            watch.terminate()
            watch.communicate(timeout=10)
        assert "Hello kafka!" in (tmp_path / "worker-1.log").read_text()
        replay = run(cluster, "watch", "--all", "--json", "--from-beginning", "--until-caught-up")
        assert replay.returncode == 0, replay.stderr
        events = [orjson.loads(line) for line in replay.stdout.splitlines()]
        times = [e["time"] for e in events]
        assert times == sorted(times), "a replay across topics prints in event-time order"
        assert {
            "eventflow.dataset.produced",
            "eventflow.task.succeeded",
            "eventflow.deadletter",
        } <= {e["type"] for e in events}
        unchecked = run(cluster, "watch", "helo", "--until-caught-up", "--app", str(HELLO))
        assert unchecked.stderr == "error: no pipeline 'helo'; did you mean hello?\n"
    finally:
        cluster.stop()
    for name in ("coordinator-0", "worker-1"):
        assert "stopped" in (tmp_path / f"{name}.log").read_text(), "SIGTERM stops gracefully"


def test_services_refuse_to_start_without_topics(kafka: Broker, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "eventflow",
            "worker",
            "--app",
            str(HELLO),
            "--bootstrap",
            kafka.bootstrap,
        ],
        env={
            "PATH": "/usr/bin:/bin",
            "EVENTFLOW_TOPIC_PREFIX": "absent.",
            "EVENTFLOW_SIGNING_KEY": "s" * 32,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: topic absent.eventflow.datasets does not exist: run `eventflow topics apply` first"
    )


async def test_subscriber_replays_from_the_beginning_a_time_or_as_a_group(
    kafka: Broker, tmp_path: Path
) -> None:
    cluster = await asyncio.to_thread(Cluster, kafka.bootstrap, HELLO, tmp_path)
    settings = cluster.settings
    from eventflow.kafka.coordinator import KafkaCoordinator
    from eventflow.kafka.worker import KafkaWorker

    app = ef.load_app(str(HELLO))
    async with KafkaCoordinator(app, settings) as coordinator, KafkaWorker(app, settings) as worker:
        await coordinator.wait_ready()
        await worker.ready.wait()
        async with ef.Publisher(settings) as publisher:
            await publisher.publish("greetings.requested", version=1, metadata={"name": "a"})
            async with ef.Subscriber(settings, name="dashboard", from_beginning=True) as group:
                first = await asyncio.wait_for(anext(aiter(group)), 60)
            middle = datetime.now(UTC)
            await publisher.publish("greetings.requested", version=2, metadata={"name": "b"})
            async with ef.Subscriber(settings, from_beginning=True) as replay:
                runs = aiter(replay)
                replayed = [await asyncio.wait_for(anext(runs), 60) for _ in range(2)]
            async with ef.Subscriber(settings, since=middle) as later:
                since = await asyncio.wait_for(anext(aiter(later)), 60)
            async with ef.Subscriber(settings, name="dashboard", from_beginning=True) as group:
                resumed = await asyncio.wait_for(anext(aiter(group)), 60)
            everywhere = {f"eventflow.pipeline-runs/{p}": 0 for p in range(6)}
            async with ef.Subscriber(settings, position=everywhere) as exact:
                runs = aiter(exact)
                from_offsets = [await asyncio.wait_for(anext(runs), 60) for _ in range(2)]
    assert first.status == "succeeded"
    assert [r.run_id for r in replayed] == ["hello:-:1", "hello:-:2"]
    assert since.run_id == "hello:-:2"
    assert resumed.run_id == "hello:-:2", "a group member resumes where the group left off"
    assert [r.run_id for r in from_offsets] == ["hello:-:1", "hello:-:2"]


def test_security_settings_reach_the_kafka_clients(tmp_path: Path) -> None:
    from eventflow.kafka.config import KafkaConfig

    settings = ef.Settings(
        kafka_bootstrap="broker:9093",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="svc",
        kafka_sasl_password=SecretStr("secret"),
        signing_key=SecretStr("k" * 32),
    )
    assert "secret" not in repr(settings) and "k" * 32 not in repr(settings)
    options = KafkaConfig(settings).client()
    assert options == {
        "bootstrap_servers": "broker:9093",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "secret",
    }
    with pytest.raises(ef.ConfigurationError, match="no Kafka bootstrap servers"):
        KafkaConfig(ef.Settings(kafka_bootstrap=None))
