"""Nightly feature pipeline: raw trips -> features -> quality gate -> training -> evaluation gate.

    python examples/ml_pipeline.py          # self-contained demo (what `make demo` runs)
    python examples/ml_pipeline.py --ui     # ... then its web UI until Ctrl-C (make demo UI=1)
    python examples/ml_pipeline.py --keep   # ... and keep its files for a look (make demo KEEP=1)
    eventflow dev examples/ml_pipeline.py   # as a service; then announce data with
    python examples/publisher.py            # ... an external system saying raw data is ready

The moment `raw.trips` is produced for a day, two feature tasks start in parallel; their merge
runs when both are fresh; a blocking quality check guards the merged table; a model is trained
and evaluated against the deployed one, and the evaluation chooses which output to emit: an
approved model is deployed, a worse one raises a regression flag. Paths travel in metadata, the
data stays on disk.
"""

from __future__ import annotations

import asyncio
import csv
import json
import math
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import eventflow as ef
from eventflow.api import ApiServer
from eventflow.operations.embedded import EmbeddedOperations
from eventflow.serving import Supervisor, ui_address

raw_trips = ef.Dataset("raw.trips", ef.daily(), "GPS trips exported by the ingestion job")
speed = ef.Dataset("features.speed", ef.daily())
time_of_day = ef.Dataset("features.time_of_day", ef.daily())
trips = ef.Dataset("features.trips", ef.daily(), "one row per trip, every feature")
candidate = ef.Dataset("model.candidate", ef.daily())
approved = ef.Dataset("model.approved", ef.daily())
regression = ef.Dataset("model.regression", ef.daily())
deployed = ef.Dataset("model.deployed", ef.daily(), "the model now serving")
flagged = ef.Dataset("model.flagged", ef.daily(), "a worse model, kept out of service")

nightly = ef.Pipeline("nightly_features", max_active_runs=2)
cpu = ef.Pool("cpu", slots=2)


def _read(path: str) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _write(path: Path, rows: list[dict[str, object]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@nightly.task(inputs=[raw_trips], outputs=[speed], pool="cpu", timeout_s=60)
def compute_speed(ctx: ef.TaskContext) -> None:
    raw = ctx.inputs[raw_trips].metadata["path"]
    rows = [
        {
            "trip_id": r["trip_id"],
            "speed_kmh": round(float(r["km"]) / (float(r["minutes"]) / 60), 3),
        }
        for r in _read(raw)
    ]
    out = Path(raw).with_name("speed.csv")
    _write(out, rows)
    ctx.emit(speed, path=str(out), rows=len(rows))


@nightly.task(inputs=[raw_trips], outputs=[time_of_day], pool="cpu", timeout_s=60)
def compute_time_of_day(ctx: ef.TaskContext) -> None:
    raw = ctx.inputs[raw_trips].metadata["path"]
    rows = []
    for r in _read(raw):
        started = datetime.fromisoformat(r["started_at"])
        rush = started.hour in (7, 8, 9, 16, 17, 18)
        rows.append({"trip_id": r["trip_id"], "hour": started.hour, "rush_hour": int(rush)})
    out = Path(raw).with_name("time_of_day.csv")
    _write(out, rows)
    ctx.emit(time_of_day, path=str(out), rows=len(rows))


@nightly.task(inputs=[raw_trips, speed, time_of_day], outputs=[trips], trigger="all")
def merge_features(ctx: ef.TaskContext) -> None:
    raw = {r["trip_id"]: r for r in _read(ctx.inputs[raw_trips].metadata["path"])}
    speeds = {r["trip_id"]: r for r in _read(ctx.inputs[speed].metadata["path"])}
    times = {r["trip_id"]: r for r in _read(ctx.inputs[time_of_day].metadata["path"])}
    rows: list[dict[str, object]] = []
    for trip_id, r in raw.items():
        rows.append(
            {
                "trip_id": trip_id,
                "km": r["km"],
                "minutes": r["minutes"],
                "speed_kmh": speeds[trip_id]["speed_kmh"],
                "rush_hour": times[trip_id]["rush_hour"],
            }
        )
    out = Path(ctx.inputs[raw_trips].metadata["path"]).with_name("trips.csv")
    _write(out, rows)
    ctx.emit(trips, path=str(out), rows=len(rows))


@nightly.check(trips, blocking=True)
def quality_gate(ctx: ef.CheckContext) -> tuple[bool, str]:
    """Enough rows, and every speed physically possible for a car."""
    rows = _read(ctx.metadata["path"])
    if len(rows) < 100:
        return False, f"only {len(rows)} rows"
    bad = [r for r in rows if not 1 <= float(r["speed_kmh"]) <= 200]
    if bad:
        return False, f"{len(bad)} trips with impossible speeds"
    return True, f"{len(rows)} rows, speeds plausible"


@nightly.task(inputs=[trips], outputs=[candidate], retries=ef.Retry(2, backoff_s=0.2), timeout_s=60)
def train_model(ctx: ef.TaskContext) -> None:
    """Least squares: minutes ~ km, separately for rush hour; 20% held out for evaluation."""
    rows = _read(ctx.inputs[trips].metadata["path"])
    random.Random(ctx.partition).shuffle(rows)
    cut = len(rows) * 4 // 5
    train, test = rows[:cut], rows[cut:]
    model = {}
    for rush in ("0", "1"):
        part = [r for r in train if r["rush_hour"] == rush]
        fit = statistics.linear_regression(
            [float(r["km"]) for r in part], [float(r["minutes"]) for r in part]
        )
        model[rush] = {"slope": fit.slope, "intercept": fit.intercept}
    errors = [
        float(r["minutes"])
        - (model[r["rush_hour"]]["slope"] * float(r["km"]) + model[r["rush_hour"]]["intercept"])
        for r in test
    ]
    rmse = math.sqrt(sum(e * e for e in errors) / len(errors))
    out = Path(ctx.inputs[trips].metadata["path"]).with_name("model.json")
    out.write_text(json.dumps(model))
    ctx.emit(candidate, path=str(out), rmse=round(rmse, 4), trained_on=len(train))


@nightly.task(inputs=[candidate], outputs=[approved, regression])
def evaluate_model(ctx: ef.TaskContext) -> None:
    """The branch: emit `model.approved` or `model.regression`, never both."""
    meta = ctx.inputs[candidate].metadata
    registry = Path(meta["path"]).parent.parent / "deployed.json"
    baseline = json.loads(registry.read_text())["rmse"] if registry.exists() else math.inf
    if meta["rmse"] <= baseline * 1.05:
        ctx.emit(approved, path=meta["path"], rmse=meta["rmse"], baseline=baseline)
    else:
        ctx.emit(regression, path=meta["path"], rmse=meta["rmse"], baseline=baseline)


@nightly.task(inputs=[approved], outputs=[deployed], deadline="0 7 * * *")
def deploy_model(ctx: ef.TaskContext) -> None:
    """The SLA: each day's model serves by 07:00 UTC of the next day, or the coordinator
    publishes `eventflow.freshness.violated` for it (an `ef.Alert` can page on that)."""
    meta = ctx.inputs[approved].metadata
    registry = Path(meta["path"]).parent.parent / "deployed.json"
    registry.write_text(json.dumps({"model": meta["path"], "rmse": meta["rmse"]}))
    ctx.log.info("deployed %s (rmse %.3f)", meta["path"], meta["rmse"])
    ctx.emit(deployed, path=meta["path"], rmse=meta["rmse"])


@nightly.task(inputs=[regression], outputs=[flagged])
def flag_regression(ctx: ef.TaskContext) -> None:
    meta = ctx.inputs[regression].metadata
    alert = Path(meta["path"]).with_name("REGRESSION.json")
    alert.write_text(json.dumps(meta))
    ctx.emit(flagged, path=str(alert), rmse=meta["rmse"], baseline=meta["baseline"])


@nightly.task(inputs=[deployed, flagged], outputs=[], trigger="any")
def notify(ctx: ef.TaskContext) -> None:
    """Whichever branch ran, the team hears of it: `trigger="any"` runs on the one produced.
    Here the message goes to a file beside the model; a real one posts it to chat."""
    if deployed.name in ctx.inputs:
        meta, text = ctx.inputs[deployed].metadata, "deployed a new model"
    else:
        meta, text = ctx.inputs[flagged].metadata, "kept the old model: the new one is worse"
    message = f"nightly_features {ctx.partition}: {text} (rmse {meta['rmse']:.3f})"
    Path(meta["path"]).with_name("NOTIFIED.txt").write_text(message + "\n")
    ctx.log.info("%s", message)


app = ef.App([nightly], pools=[cpu])


def generate_trips(folder: Path, day: str, n: int = 5000) -> Path:
    """What the ingestion job would have written: `n` trips for one day."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(day)
    start = datetime.fromisoformat(day)
    rows: list[dict[str, object]] = []
    for i in range(n):
        began = start + timedelta(seconds=rng.randrange(86400))
        km = round(rng.uniform(0.5, 30), 3)
        rush = began.hour in (7, 8, 9, 16, 17, 18)
        minutes = km / (24 if rush else 38) * 60 + rng.gauss(4, 1.5)
        rows.append(
            {
                "trip_id": f"{day}-{i}",
                "started_at": began.isoformat(),
                "km": km,
                "minutes": round(max(minutes, km / 150 * 60), 2),
            }
        )
    path = folder / "trips.raw.csv"
    _write(path, rows)
    return path


async def serve_ui(runtime: ef.EmbeddedRuntime) -> None:
    """The web UI over the demo's runtime, as `eventflow dev --ui` serves it, until Ctrl-C."""
    ops = EmbeddedOperations(runtime)
    api = ApiServer(ops, token=secrets.token_urlsafe(32), ui=True)
    async with Supervisor(ops, api) as supervisor:
        print(f"\nweb UI: {ui_address(api)}\nCtrl-C stops.", flush=True)
        await supervisor.run()


async def demo(ui: bool = False, keep: bool = False) -> int:
    """`ui`: after the cascade, serve the web UI over the runtime until Ctrl-C. The demo's
    files are removed when it ends, unless `keep`: runs of it leave nothing behind."""
    work = Path(tempfile.mkdtemp(prefix="eventflow-ml-"))
    try:
        return await _demo(work, ui, keep)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


async def _demo(work: Path, ui: bool, keep: bool) -> int:
    settings = ef.Settings(home=work / ".eventflow")
    day = (date.today() - timedelta(days=1)).isoformat()
    raw = generate_trips(work / day, day)
    print(f"ingestion: wrote {raw}")
    async with ef.EmbeddedRuntime(app, settings) as runtime:
        events = runtime.subscribe()
        sent = time.perf_counter()
        await runtime.emit("raw.trips", day, metadata={"path": str(raw), "rows": 5000})
        print(f"ingestion: announced raw.trips@{day}")
        await runtime.wait_idle()
        elapsed = time.perf_counter() - sent
        runtime.unsubscribe(events)
        status = _report(events, elapsed, work, kept=keep)
        if ui:
            await serve_ui(runtime)
    return status


def _report(events: asyncio.Queue[ef.Event], elapsed: float, work: Path, *, kept: bool) -> int:
    """What the cascade did, from its events; the exit status."""
    runs, checks, announced, first_start = [], [], None, None
    while not events.empty():
        event = events.get_nowait()
        if isinstance(event, ef.DatasetProduced) and event.data.producer is None:
            announced = event.time
        elif isinstance(event, ef.TaskStarted) and first_start is None:
            first_start = event.time
        elif isinstance(event.data, ef.PipelineRunData) and event.data.status != "running":
            runs.append(event.data)
        elif isinstance(event, ef.CheckCompleted):
            verdict = "passed" if event.data.passed else "FAILED"
            checks.append(f"{event.data.check} {verdict}: {event.data.message}")
    print()
    print(ef.run_summary(runs))
    print()
    for line in checks:
        print(f"check {line}")
    if announced and first_start:
        reaction = (first_start - announced).total_seconds() * 1000
        print(f"first task started {reaction:.1f} ms after raw.trips was announced")
    where = "" if kept else " (removed when the demo ends; --keep keeps them)"
    print(f"whole cascade: {elapsed:.2f}s; files and state in {work}{where}")
    return 0 if runs and all(r.status == "succeeded" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(demo(ui="--ui" in sys.argv[1:], keep="--keep" in sys.argv[1:])))
