"""A service that reacts when a pipeline run finishes, e.g. to refresh a dashboard or page someone.

eventflow dev examples/ml_pipeline.py
python examples/subscriber.py nightly_features
"""

from __future__ import annotations

import asyncio
import sys

import eventflow as ef


async def main(pipelines: list[str]) -> None:
    async with ef.Subscriber(pipelines=pipelines or None) as runs:
        print("waiting for pipeline runs", flush=True)
        async for run in runs:
            tasks = ", ".join(f"{t.task}={t.status}" for t in run.tasks)
            print(f"{run.pipeline} {run.partition} {run.status}: {tasks}", flush=True)
            if run.status == "failed":
                print(f"  why: {run.reason}", flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1:]))
    except KeyboardInterrupt:
        pass
