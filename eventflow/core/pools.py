"""Pools: shared concurrency limits across tasks and pipelines, first come first served.

The gate holds task requests that name a full pool and lets them go as slots free up. Its state is
a function of the runs in flight, so a runtime rebuilds it on restart by submitting them again.
"""

from __future__ import annotations

from collections import deque

import orjson

from ..events import TaskRequestedData


class PoolGate:
    def __init__(self, slots: dict[str, int]) -> None:
        self.slots = dict(slots)
        self.running: dict[str, set[str]] = {name: set() for name in slots}
        self.queued: dict[str, deque[TaskRequestedData]] = {name: deque() for name in slots}

    def submit(self, request: TaskRequestedData) -> list[TaskRequestedData]:
        """The requests that may go to workers now: this one, or none if its pool is full."""
        pool = request.pool
        if pool is None:
            return [request]
        running = self.running[pool]
        if request.run_id in running or any(q.run_id == request.run_id for q in self.queued[pool]):
            return []
        if len(running) < self.slots[pool]:
            running.add(request.run_id)
            return [request]
        self.queued[pool].append(request)
        return []

    def release(self, run_id: str, pool: str | None) -> list[TaskRequestedData]:
        """Free the slot of a finished run (or drop it from the queue); return what may start."""
        if pool is None:
            return []
        queue = self.queued[pool]
        for waiting in list(queue):
            if waiting.run_id == run_id:
                queue.remove(waiting)
                return []
        running = self.running[pool]
        running.discard(run_id)
        admitted: list[TaskRequestedData] = []
        while queue and len(running) < self.slots[pool]:
            nxt = queue.popleft()
            running.add(nxt.run_id)
            admitted.append(nxt)
        return admitted

    def dump(self, pool: str) -> bytes:
        return orjson.dumps(
            {
                "running": sorted(self.running[pool]),
                "queued": [r.model_dump(mode="json") for r in self.queued[pool]],
            }
        )

    def load(self, pool: str, raw: bytes) -> None:
        if pool not in self.slots:
            return
        state = orjson.loads(raw)
        self.running[pool] = set(state["running"])
        self.queued[pool] = deque(TaskRequestedData.model_validate(r) for r in state["queued"])

    def forget(self, pool: str) -> None:
        if pool in self.slots:
            self.running[pool] = set()
            self.queued[pool] = deque()

    def usage(self) -> dict[str, tuple[int, int, int]]:
        """Per pool: (running, queued, slots)."""
        return {
            name: (len(self.running[name]), len(self.queued[name]), self.slots[name])
            for name in self.slots
        }
