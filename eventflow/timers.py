"""Timers of the decisions: the core asks to be woken (`Wake`) and a runtime calls `tick` then.

At most one wake is kept per pipeline, the earliest: a tick recomputes the pipeline's next wake
from its whole state, so later wakes asked in between add nothing. Memory stays bounded by the
number of pipelines however many tasks start (each start asks for a wake at its deadline).
Freshness subjects have wakes of their own, under keys no pipeline name can take
(`core.freshness.timer_key`).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable


class Timers:
    def __init__(self) -> None:
        self._next: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def add(self, at: float, pipeline: str) -> bool:
        """Keep `at` if it is the pipeline's earliest wake; True when the earliest changed."""
        current = self._next.get(pipeline)
        if current is not None and current <= at:
            return False
        self._next[pipeline] = at
        heapq.heappush(self._heap, (at, pipeline))
        return True

    def next_at(self) -> float | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def due(self, now: float) -> list[str]:
        """Pipelines whose wake time has come, in name order; they are forgotten here."""
        due: set[str] = set()
        self._drop_stale()
        while self._heap and self._heap[0][0] <= now:
            at, pipeline = heapq.heappop(self._heap)
            if self._next.get(pipeline) == at:
                del self._next[pipeline]
                due.add(pipeline)
        return sorted(due)

    def forget(self, which: Callable[[str], bool]) -> None:
        """Drop the wakes of the pipelines `which` selects (their state moved elsewhere)."""
        self._next = {p: at for p, at in self._next.items() if not which(p)}
        self._heap = [(at, p) for p, at in self._next.items()]
        heapq.heapify(self._heap)

    def __len__(self) -> int:
        return len(self._next)

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap and self._next.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        if len(heap) > 4 * len(self._next) + 64:  # superseded entries: compact now and then
            self._heap = [(at, p) for p, at in self._next.items()]
            heapq.heapify(self._heap)
