"""The embedded runtime feeds the history store: a real cascade, projection resumed after a
restart without losing what was logged meanwhile, log trimming held back by the projector, and
a rebuild from the log equal to the live projection."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import eventflow as ef
from eventflow.embedded.history import rebuild
from eventflow.errors import StorageError
from eventflow.history import HistoryStore
from eventflow.testing import EmbeddedHarness

from .cascade import D1, D2, cascade, views


async def test_a_cascade_lands_in_the_history(tmp_path: Path, history_url: str) -> None:
    async with EmbeddedHarness(cascade(), tmp_path, history_url=history_url) as h:
        await h.emit("src", D1, 1)
        [run] = await h.wait_for_runs(timeout=60)
        await h.wait_idle()
        await h.runtime.history.flush()
        committed = {e.id for e in h.events}
    assert run.status == "succeeded"
    logged = {e.id for _, e in await _log(tmp_path)}
    assert committed < logged  # and the task requests
    async with HistoryStore(history_url) as store:
        assert {e.id for e in await store.events(limit=1000)} == logged
        [stored] = (await store.runs(pipeline="chain", partition=D1)).items
        assert (stored.run_id, stored.status) == (run.run_id, "succeeded")
        detail = await store.run(run.run_id)
        assert detail is not None
        assert [(a.task, a.attempt, a.status) for a in detail.attempts] == [
            ("first", 1, "failed"),
            ("first", 2, "succeeded"),
            ("second", 1, "succeeded"),
            ("third", 1, "succeeded"),
        ]
        assert detail.attempts[0].error is not None and "flaky" in detail.attempts[0].error
        assert all(a.worker and a.started_at and a.ended_at for a in detail.attempts)
        [end] = await store.freshness("end")
        lineage = await store.lineage("end", D1, end.version, depth=3)
        assert lineage is not None and lineage.producer is not None
        assert lineage.producer.task == "second"
        [mid] = lineage.upstream
        assert mid.producer is not None and mid.producer.task == "first"
        [src] = mid.upstream
        assert (src.dataset, src.version, src.producer) == ("src", 1, None)


async def test_projection_resumes_after_a_restart_without_losing_events(
    tmp_path: Path, history_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with EmbeddedHarness(cascade(), tmp_path, history_url=history_url) as h:
        await h.emit("src", D1, 1)
        await h.wait_for_runs(timeout=60)
        await h.wait_idle()
        await h.runtime.history.flush()
        projected = h.runtime.history.position

        async def down(*_: object) -> int:
            raise StorageError("the history store is away")

        # From here the history takes nothing: the second cascade stays in the log only. Its
        # store refuses writes, so a projection the runtime had begun already fails too.
        monkeypatch.setattr(h.runtime.history.history, "apply_logged", down)
        await h.emit("src", D2, 1)
        await h.wait_for_runs(2, timeout=60)
        await h.wait_idle()
        # Retention trims only what the history has.
        await h.runtime.store.trim(time.time() + 10**6, upto=projected)
        left = [e for _, e in await h.runtime.store.events(limit=100_000)]
        assert left and all(e.data for e in left)
        unprojected = {e.id for e in left}
        async with HistoryStore(history_url) as store:
            assert [r.partition for r in (await store.runs()).items] == [D1]
            assert not unprojected & {e.id for e in await store.events(limit=1000)}

        await h.restart()
        await h.runtime.history.flush()
    async with HistoryStore(history_url) as store:
        runs = (await store.runs()).items
        assert sorted((r.partition, r.status) for r in runs) == [
            (D1, "succeeded"),
            (D2, "succeeded"),
        ]
        assert unprojected <= {e.id for e in await store.events(limit=1000)}
        position = await store.positions("embedded:")
        assert list(position.values()) == [max(s for s, _ in await _log(tmp_path))]


async def _log(home: Path) -> list[tuple[int, ef.Event]]:
    from eventflow.embedded.store import Store

    async with Store(home / "eventflow.db") as log:
        return await log.events(limit=100_000)


async def test_a_rebuild_from_the_log_equals_the_live_projection(
    tmp_path: Path, history_url: str
) -> None:
    async with EmbeddedHarness(cascade(), tmp_path, history_url=history_url) as h:
        for day in (D1, D2):
            await h.emit("src", day, 1)
        await h.wait_for_runs(2, timeout=60)
        await h.wait_idle()
    async with HistoryStore(history_url) as store:
        live = await views(store)
        assert len(live["runs"]) == 2
        read = await rebuild(tmp_path / "eventflow.db", store)
        assert read == len(live["events"])
        await store.start()  # the rebuild stopped it
        assert await views(store) == live
