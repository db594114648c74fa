"""`examples/ml_pipeline.py`'s notify step and SLA, which the demo's single happy run cannot show:
the regression branch is notified too, and a day whose model is not deployed by 07:00 UTC is
reported late."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import eventflow as ef
from eventflow.testing import EmbeddedHarness, ManualClock, build_context

ML = Path(__file__).parents[2] / "examples" / "ml_pipeline.py"


def test_notify_reports_whichever_branch_ran(tmp_path: Path) -> None:
    app = ef.load_app(str(ML))
    notify = app.tasks["notify"]
    model = tmp_path / "model.json"
    ctx = build_context(notify, "2026-11-21", {"model.flagged": {"path": str(model), "rmse": 2.5}})
    notify.fn(ctx)
    said = "nightly_features 2026-11-21: kept the old model: the new one is worse (rmse 2.500)"
    assert (tmp_path / "NOTIFIED.txt").read_text() == said + "\n"
    assert ctx.messages() == [said]
    ctx = build_context(notify, "2026-11-21", {"model.deployed": {"path": str(model), "rmse": 1}})
    notify.fn(ctx)
    assert "deployed a new model (rmse 1.000)" in (tmp_path / "NOTIFIED.txt").read_text()


async def test_a_day_not_deployed_by_seven_is_late(tmp_path: Path) -> None:
    clock = ManualClock(datetime(2026, 11, 22, 6, 0, 30, tzinfo=UTC))
    async with EmbeddedHarness(ef.load_app(str(ML)), tmp_path, clock=clock) as h:
        await clock.advance(3600)  # 07:00:30: no model deployed for 11-21
        await h.wait_for(lambda: h.freshness("deploy_model"))
    [(what, late)] = h.freshness("deploy_model")
    assert (what, late.kind, late.pipeline, late.partition, late.policy) == (
        "violated",
        "task",
        "nightly_features",
        "2026-11-21",
        "deadline",
    )
