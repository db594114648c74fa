"""An ETL flow, Prefect style: extract -> validate -> features -> load -> notify.

    python examples/etl.py          # self-contained: three deliveries of the source file
    python examples/etl.py --keep   # ... and keeps its files for a look
    eventflow dev examples/etl.py   # as a service (files under ./etl); then announce a file:
    eventflow emit source.customers --meta path=/data/customers.csv

A source system announces `source.customers` each time it drops its export. `extract` copies it
to staging and is retried on a flaky connection (`retries=`). It skips when the file's content
hash is the one it extracted last (`raise ef.Skip`): a re-delivered export with nothing new
costs no load and no notification, and the run says why. `validate` fails the run without a
retry on bad rows (`ef.Fail`: no retry could fix the data); `features`, `load` and `notify`
follow, each the moment its input is produced.

Run as a script, it delivers one export, the same export again, then a changed one, and prints
each run: the first extract needs a second attempt, the second run skips everything after it.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

import eventflow as ef

source = ef.Dataset("source.customers", description="the export a source system drops")
staged = ef.Dataset("staging.customers", description="a copy of the export, with its hash")
valid = ef.Dataset("valid.customers", description="the rows that passed validation")
features = ef.Dataset("features.customers", description="per-customer features")
loaded = ef.Dataset("warehouse.customers", description="the table the warehouse serves")

etl = ef.Pipeline("customers_etl", description="extract, validate, features, load, notify")


class Store:
    """Where the flow's files go: `./etl` as a service, a temporary folder as a script."""

    root = Path("etl")

    @classmethod
    def path(cls, *parts: str) -> Path:
        path = cls.root.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


def content_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read(path: str) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@etl.task(inputs=[source], outputs=[staged], retries=ef.Retry(3, backoff_s=0.05))
def extract(ctx: ef.TaskContext) -> None:
    """Skip-if-unchanged: the hash of what was extracted last is kept beside the staging copy,
    so an export delivered twice runs nothing after this task."""
    export = Path(ctx.inputs[source].metadata["path"])
    flaky = Store.path("flaky-once")
    if flaky.exists():  # the source's first connection drops; the retry gets through
        flaky.unlink()
        raise ConnectionError("source closed the connection")
    digest = content_hash(export)
    last = Store.path("staging", "last.sha256")
    if last.exists() and last.read_text() == digest:
        raise ef.Skip(f"unchanged since the last extract (sha256 {digest[:12]})")
    copy = Store.path("staging", "customers.csv")
    shutil.copyfile(export, copy)
    last.write_text(digest)
    ctx.emit(staged, path=str(copy), sha256=digest, rows=len(_read(str(copy))))


@etl.task(inputs=[staged], outputs=[valid])
def validate(ctx: ef.TaskContext) -> None:
    meta = ctx.inputs[staged].metadata
    rows = _read(meta["path"])
    bad = [r["id"] for r in rows if "@" not in r["email"] or float(r["spent"]) < 0]
    if bad:
        raise ef.Fail(f"{len(bad)} invalid rows, first {bad[0]}")
    ctx.emit(valid, path=meta["path"], rows=len(rows), sha256=meta["sha256"])


@etl.task(inputs=[valid], outputs=[features])
def compute_features(ctx: ef.TaskContext) -> None:
    rows = _read(ctx.inputs[valid].metadata["path"])
    out = Store.path("features", "customers.json")
    table = {r["id"]: {"spent": float(r["spent"]), "big": float(r["spent"]) > 500} for r in rows}
    out.write_text(json.dumps(table))
    ctx.emit(features, path=str(out), rows=len(table))


@etl.task(inputs=[features], outputs=[loaded], retries=2)
def load(ctx: ef.TaskContext) -> None:
    meta = ctx.inputs[features].metadata
    table = Store.path("warehouse", "customers.json")
    shutil.copyfile(meta["path"], table)
    ctx.emit(loaded, path=str(table), rows=meta["rows"])


@etl.task(inputs=[loaded], outputs=[])
def notify(ctx: ef.TaskContext) -> None:
    """A real flow posts to chat; this one appends to a file the script prints."""
    message = f"warehouse.customers reloaded: {ctx.inputs[loaded].metadata['rows']} rows"
    with open(Store.path("notifications.txt"), "a") as f:
        f.write(message + "\n")
    ctx.log.info("%s", message)


app = ef.App([etl])


def write_export(folder: Path, n: int, seed: int) -> Path:
    """What the source system would drop: `n` customers."""
    rng = random.Random(seed)
    path = folder / "export" / f"customers-{seed}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "email", "spent"])
        writer.writeheader()
        for i in range(n):
            spent = round(rng.uniform(0, 1000), 2)
            writer.writerow({"id": f"c{i}", "email": f"c{i}@example.com", "spent": spent})
    return path


async def main(keep: bool = False) -> int:
    work = Path(tempfile.mkdtemp(prefix="eventflow-etl-"))
    Store.root = work / "etl"
    try:
        status = await _deliveries(work)
    finally:
        where = "" if keep else " (removed; --keep keeps them)"
        print(f"files and state in {work}{where}")
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return status


async def _deliveries(work: Path) -> int:
    first = write_export(work, 200, seed=1)
    again = work / "export" / "customers-1-redelivered.csv"
    shutil.copyfile(first, again)  # another file, the same content
    changed = write_export(work, 250, seed=2)
    Store.path("flaky-once").touch()
    runs: list[ef.PipelineRunData] = []
    async with ef.EmbeddedRuntime(app, ef.Settings(home=work / ".eventflow")) as runtime:
        events = runtime.subscribe()
        for label, export in (("export", first), ("same export", again), ("new export", changed)):
            await runtime.emit(source.name, metadata={"path": str(export)})
            await runtime.wait_idle()
            done = _finished_runs(events)
            print(f"{label}: {export.name}")
            print(ef.run_summary(done))
            print()
            runs += done
        runtime.unsubscribe(events)
    print(Store.path("notifications.txt").read_text(), end="")
    return 0 if len(runs) == 3 and all(r.status == "succeeded" for r in runs) else 1


def _finished_runs(events: asyncio.Queue[ef.Event]) -> list[ef.PipelineRunData]:
    runs = []
    while not events.empty():
        event = events.get_nowait()
        if isinstance(event.data, ef.PipelineRunData) and event.data.status != "running":
            runs.append(event.data)
    return runs


if __name__ == "__main__":
    sys.exit(asyncio.run(main(keep="--keep" in sys.argv[1:])))
