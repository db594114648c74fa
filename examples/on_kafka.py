"""The daily asset graph of `daily_assets.py` on Kafka, with every service its own process: one
coordinator and two workers, as Argo or Kubeflow would run each step in a container of its own.

    make kafka-up                                      # prints the bootstrap address
    python examples/on_kafka.py --bootstrap 127.0.0.1:40395

It does what these commands do, from a folder of its own (the warehouse's files go there):

    export EVENTFLOW_KAFKA_BOOTSTRAP=127.0.0.1:40395
    export EVENTFLOW_SIGNING_KEY=$(openssl rand -hex 32)
    eventflow topics apply
    eventflow coordinator --app examples/daily_assets.py &
    eventflow worker --app examples/daily_assets.py &
    eventflow worker --app examples/daily_assets.py &
    eventflow watch

On start the coordinator's schedule produces its latest daily tick, so one day goes through
`daily_assets` and then `reporting`; the script prints each task and the worker process that
ran it, then stops the services with SIGTERM. `EVENTFLOW_TOPIC_PREFIX` keeps its topics apart.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import eventflow as ef

APP = Path(__file__).with_name("daily_assets.py")


def start(kind: str, n: int, work: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`eventflow coordinator|worker --app APP`, its output in WORK/KIND-N.log."""
    with open(work / f"{kind}-{n}.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "eventflow", kind, "--app", str(APP)],
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def watch(settings: ef.Settings) -> list[ef.Event]:
    """Task and run outcomes from the topics' start, until a day reached the dashboard and the
    outcome of each task those runs ran was heard (runs and tasks come on topics of their own,
    in no order between them)."""
    seen: list[ef.Event] = []
    ended = False
    async with ef.Subscriber(settings, kinds=["run", "task"], from_beginning=True) as sub:
        async for event in sub.events():
            seen.append(event)
            if isinstance(event, ef.PipelineRunFailed) or (
                isinstance(event, ef.PipelineRunSucceeded) and event.data.pipeline == "reporting"
            ):
                ended = True
            if ended and not unheard(seen):
                return seen
    return seen


def unheard(seen: list[ef.Event]) -> set[str]:
    """Task runs that ended runs name as succeeded and whose own outcome has not come yet (a
    failure may be the coordinator's, for a lost worker, with no outcome of its own)."""
    named = {
        t.run_id
        for e in seen
        if isinstance(e, ef.PipelineRunSucceeded | ef.PipelineRunFailed)
        for t in e.data.tasks
        if t.run_id is not None and t.status == "succeeded"
    }
    heard = {e.data.run_id for e in seen if isinstance(e, ef.TaskSucceeded)}
    return named - heard


def main(bootstrap: str, keep: bool = False, timeout: float = 120) -> int:
    work = Path(tempfile.mkdtemp(prefix="eventflow-kafka-"))
    env = dict(os.environ, EVENTFLOW_KAFKA_BOOTSTRAP=bootstrap)
    env.setdefault("EVENTFLOW_SIGNING_KEY", secrets.token_hex(32))
    settings = ef.Settings(
        kafka_bootstrap=bootstrap, topic_prefix=env.get("EVENTFLOW_TOPIC_PREFIX", "")
    )
    services: list[subprocess.Popen[bytes]] = []
    try:
        applied = subprocess.run(
            [sys.executable, "-m", "eventflow", "topics", "apply"], env=env, cwd=work
        )
        if applied.returncode != 0:
            return 1
        services.append(start("coordinator", 1, work, env))
        services += [start("worker", n, work, env) for n in (1, 2)]
        print(f"started a coordinator and two workers: pids {[p.pid for p in services]}")
        try:
            seen = asyncio.run(asyncio.wait_for(watch(settings), timeout))
        except TimeoutError:
            print(f"no day reached the dashboard in {timeout:.0f}s; logs in {work}")
            keep = True
            return 1
        return report(seen, {str(p.pid): str(n) for n, p in enumerate(services[1:], 1)})
    finally:
        for proc in services:
            proc.send_signal(signal.SIGTERM)
        stopped = [proc.wait(timeout=30) for proc in services]
        print(f"services stopped: exit statuses {stopped}")
        where = "" if keep else " (removed; --keep keeps them)"
        print(f"files and logs in {work}{where}")
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def report(seen: list[ef.Event], workers: dict[str, str]) -> int:
    """Each task with the worker process that ran it; the exit status."""
    runs = [e.data for e in seen if isinstance(e.data, ef.PipelineRunData)]
    for event in seen:
        if isinstance(event, ef.TaskSucceeded | ef.TaskFailed):
            pid = event.data.worker.rsplit(":", 1)[-1]
            status = "ok" if isinstance(event, ef.TaskSucceeded) else "FAILED"
            where = f"worker {workers.get(pid, '?')} (pid {pid})"
            print(f"{event.data.pipeline:<13} {event.data.task:<16} {status:<7} on {where}")
    print(ef.run_summary(runs))
    return 0 if runs and all(r.status == "succeeded" for r in runs) else 1


if __name__ == "__main__":
    args = sys.argv[1:]
    given = args[args.index("--bootstrap") + 1] if "--bootstrap" in args else None
    bootstrap = given or os.environ.get("EVENTFLOW_KAFKA_BOOTSTRAP")
    if not bootstrap:
        sys.exit("error: give --bootstrap HOST:PORT or set EVENTFLOW_KAFKA_BOOTSTRAP")
    sys.exit(main(bootstrap, keep="--keep" in args))
