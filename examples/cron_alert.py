"""A cron job whose failure pages someone: an hourly export, and an alert on its failed runs.

    export ALERT_WEBHOOK=https://hooks.example.com/eventflow   # where failures are posted
    eventflow dev examples/cron_alert.py     # from the folder holding exports/orders.csv
    eventflow alerts                         # from another terminal: each delivery and its state

The schedule produces `clock.hourly` at minute 0 of each hour (and its latest tick on start), and
`export_orders` copies the source system's `exports/orders.csv` into `published/`. When the file
is not there it is tried twice more, then the run fails, and the `oncall` rule posts the
`eventflow.pipeline.run.failed` CloudEvent to `${ALERT_WEBHOOK}`, retrying until the receiver
takes it. `format="slack"` would post a chat message instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import eventflow as ef

clock = ef.Dataset("clock.hourly", ef.hourly(), "a tick per hour, from the schedule")
exported = ef.Dataset("orders.exported", ef.hourly(), "the hour's orders, published")

export = ef.Pipeline("hourly_export", description="publishes the source's export every hour")
export.schedule(clock, "0 * * * *")


@export.task(inputs=[clock], outputs=[exported], retries=ef.Retry(2, backoff_s=0.1))
def export_orders(ctx: ef.TaskContext) -> None:
    source = Path("exports", "orders.csv")
    if not source.exists():
        raise FileNotFoundError(f"no export at {source.resolve()}")
    target = Path("published", f"orders-{ctx.partition}.csv")
    target.parent.mkdir(exist_ok=True)
    shutil.copyfile(source, target)
    ctx.emit(exported, path=str(target))


app = ef.App(
    [export],
    alerts=[
        ef.Alert("oncall", on=["run.failed"], webhook="${ALERT_WEBHOOK}", pipelines=[export.name])
    ],
)
