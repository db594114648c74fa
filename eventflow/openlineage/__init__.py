"""OpenLineage in and out: RunEvents of other tools as dataset announcements (`intake`, from
the API's `/api/v1/lineage` and the `eventflow.openlineage` topic), and RunEvents of
eventflow's own task runs (`emitter`)."""

from __future__ import annotations

from .mapping import SUBSET, LineageMapping

__all__ = ["SUBSET", "LineageMapping"]
