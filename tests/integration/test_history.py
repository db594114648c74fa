"""The Kafka history projector on a real broker: a cascade run by a real coordinator and worker
lands in the store, a projector restarted later resumes at its stored offsets, what a trusted
consumer refuses is not history, and a rebuild from the topics equals the live projection."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventflow import Publisher
from eventflow.events import DatasetProduced, DatasetProducedData, encode
from eventflow.history import HistoryStore
from eventflow.kafka.history import HistoryProjector, rebuild
from eventflow.testing import KafkaHarness

from ..history.cascade import D1, D2, cascade, views
from ..kafka_broker import Broker

pytestmark = pytest.mark.kafka


async def test_the_topics_are_projected_resumed_and_rebuilt(
    kafka: Broker, history_url: str, tmp_path: Path
) -> None:
    app = cascade()
    async with KafkaHarness(app, kafka.bootstrap, history_url=history_url) as h:
        async with HistoryProjector(h.settings, app=app) as projector:
            await h.emit("src", D1, 1)
            unknown = DatasetProduced.of(DatasetProducedData(dataset="nope", version=1))
            await h.publish_raw(encode(unknown))
            # Claims to be a task's output but comes unsigned: no trusted consumer takes it.
            claimed = DatasetProducedData(dataset="src", partition=D1, version=99, producer="x:1")
            outsider = h.settings.model_copy(update={"signing_key": None})
            async with Publisher(outsider) as publisher:
                await publisher.publish_raw(encode(DatasetProduced.of(claimed)), key="src")
            [run] = await h.wait_for_runs(timeout=120)
            await h.wait_idle()
            await projector.caught_up()
            store = projector.store
            detail = await store.run(run.run_id)
            assert detail is not None and detail.run.status == "succeeded"
            assert [(a.task, a.attempt, a.status) for a in detail.attempts] == [
                ("first", 1, "failed"),
                ("first", 2, "succeeded"),
                ("second", 1, "succeeded"),
                ("third", 1, "succeeded"),
            ]
            assert all(a.worker == "worker-0" for a in detail.attempts)
            [end] = await store.freshness("end")
            lineage = await store.lineage("end", D1, end.version)
            assert lineage is not None and [u.dataset for u in lineage.upstream] == ["mid"]
            assert [u.dataset for u in lineage.upstream[0].upstream] == ["src"]
            assert await store.versions("nope") == []
            assert [v.version for v in await store.versions("src")] == [1]
            reasons = sorted(d.reason for d in await store.dead_letters())
            assert "unknown dataset 'nope'" in reasons[1]
            assert "without a valid signature" in reasons[0]
            assert await projector.lag() == 0

        # Published while no projector runs: the next one starts where the last one stopped.
        await h.emit("src", D2, 1)
        await h.wait_for_runs(2, timeout=120)
        await h.wait_idle()
        async with HistoryProjector(h.settings, app=app) as again:
            await again.caught_up()
            live = await views(again.store)
        assert sorted((r.partition, r.status) for r in live["runs"]) == [
            (D1, "succeeded"),
            (D2, "succeeded"),
        ]

        rebuilt = HistoryStore(f"sqlite+aiosqlite:///{tmp_path / 'rebuilt.db'}")
        await rebuild(h.settings, rebuilt, app=app)
        async with rebuilt:
            assert await views(rebuilt) == live
