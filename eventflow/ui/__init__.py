"""The web UI: server-rendered pages over the operations port, kept live by server-sent events
of what the history store has just taken in. Served by `eventflow dev --ui` and `eventflow
server` beside the HTTP API; needs no Node toolchain."""

from .site import mount

__all__ = ["mount"]
