"""Testing pipelines: run an App on either runtime and read what it did, call a task body
with a context built in one line, and move time by hand.

    async with EmbeddedHarness(app) as h:
        await h.emit("raw", "2026-11-22", rows=10)
        [run] = await h.wait_for_runs()
        assert run.status == "succeeded"
"""

from .clock import ManualClock, Timer
from .context import LoggedContext, build_check_context, build_context
from .harness import EmbeddedHarness, Harness, KafkaHarness, TaskResult

__all__ = [
    "EmbeddedHarness",
    "Harness",
    "KafkaHarness",
    "LoggedContext",
    "ManualClock",
    "TaskResult",
    "Timer",
    "build_check_context",
    "build_context",
]
