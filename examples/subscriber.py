"""A service that reacts when a pipeline run finishes (to refresh a dashboard or page someone),
the way a real one must: durable and idempotent.

- Durable: its subscription has a name, so after a crash or a redeploy it resumes after the
  last run outcome it handled, missing none that finished while it was down.
- Idempotent: delivery is at least once, so the outcome it was handling when it died comes
  again. It keeps the ids of the events it handled in its own SQLite file, in the same
  transaction as what handling does (here: a row in `notifications`), and skips an event it
  has seen (and says so: a redelivery is printed as `already handled`).
- Stopped with SIGTERM (a redeploy), it lets go of its subscription cleanly and exits 0.

eventflow dev examples/ml_pipeline.py
python examples/subscriber.py --state notifier.db nightly_features
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sqlite3
from pathlib import Path

import eventflow as ef

SCHEMA = """
CREATE TABLE IF NOT EXISTS handled (event_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS notifications (
    event_id TEXT NOT NULL, pipeline TEXT NOT NULL, partition TEXT NOT NULL,
    run_id TEXT NOT NULL, status TEXT NOT NULL);
"""


def handle(db: sqlite3.Connection, event: ef.Event, run: ef.PipelineRunData) -> bool:
    """Notify once per event: False if this event was handled before (a redelivery)."""
    with db:  # one transaction: the notification and the record that it was sent
        if db.execute("SELECT 1 FROM handled WHERE event_id = ?", (event.id,)).fetchone():
            return False
        db.execute("INSERT INTO handled VALUES (?)", (event.id,))
        db.execute(
            "INSERT INTO notifications VALUES (?, ?, ?, ?, ?)",
            (event.id, run.pipeline, run.partition, run.run_id, run.status),
        )
    return True


async def main(pipelines: list[str], state: Path, name: str) -> None:
    """Serve until SIGTERM, which cancels the wait for the next event: each event handled was
    acknowledged when the next was asked for, and leaving the block hands the subscription
    back."""
    serving = asyncio.ensure_future(serve(pipelines, state, name))
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, serving.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await serving
    print("stopped", flush=True)


async def serve(pipelines: list[str], state: Path, name: str) -> None:
    subscriber = ef.Subscriber(
        name=name, kinds=["run"], pipelines=pipelines or None, from_beginning=True
    )
    with contextlib.closing(sqlite3.connect(state)) as db:
        db.executescript(SCHEMA)
        async with subscriber:
            print("waiting for pipeline runs", flush=True)
            async for event in subscriber.events():
                if not isinstance(event.data, ef.PipelineRunData):
                    continue
                run = event.data
                if not handle(db, event, run):
                    print(f"already handled {event.id}", flush=True)
                    continue
                tasks = ", ".join(f"{t.task}={t.status}" for t in run.tasks)
                print(f"{run.pipeline} {run.partition} {run.status}: {tasks}", flush=True)
                if run.status == "failed":
                    print(f"  why: {run.reason}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipelines", nargs="*", help="only these pipelines (default: all)")
    parser.add_argument("--state", type=Path, default=Path("notifier.db"))
    parser.add_argument("--name", default="notifier", help="the durable subscription's name")
    args = parser.parse_args()
    try:
        asyncio.run(main(args.pipelines, args.state, args.name))
    except KeyboardInterrupt:
        pass
