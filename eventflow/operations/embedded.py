"""The operations plane of a dev instance: the runtime in the same process."""

from __future__ import annotations

from ..core import Engine, Explanation
from ..embedded import EmbeddedRuntime
from ..embedded.control import control_allows
from ..events import Event, encode
from .base import Feed, Operations, Submitted


class EmbeddedOperations(Operations):
    """Reads and acts on an `EmbeddedRuntime` that runs alongside (started and stopped by its
    owner, not by this)."""

    name = "operations (embedded)"

    def __init__(self, runtime: EmbeddedRuntime) -> None:
        super().__init__(runtime.app, runtime.settings, runtime.history.history)
        self.runtime = runtime

    async def _open(self) -> None:
        self.ready.set()

    async def _close(self) -> None:
        pass

    async def submit(self, event: Event) -> Submitted:
        """As the control socket takes it: logged, decided, or dead-lettered with the reason."""
        receipt = await self.runtime.publish_raw(encode(event), "api", allowed=control_allows)
        return Submitted(receipt.event.id, receipt.dead_letter)

    async def refuse(self, raw: bytes, reason: str, origin: str) -> None:
        await self.runtime.refuse(raw, reason, origin)

    async def explain(self, pipeline: str, task: str, partition: str) -> Explanation:
        return await self.runtime.explain(pipeline, task, partition)

    async def engine(self) -> Engine:
        return self.runtime.engine

    async def backfill_engine(self, pipeline: str) -> Engine:
        await self.runtime.page_in_pipeline(pipeline)
        return self.runtime.engine

    def live(self) -> Feed:
        queue = self.runtime.subscribe()
        return Feed(queue, lambda: self.runtime.unsubscribe(queue))
