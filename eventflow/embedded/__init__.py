"""The embedded runtime: everything in one process, state in a SQLite file, no broker."""

from .control import ControlClient, ControlServer
from .runtime import Accepted, EmbeddedRuntime
from .store import Store

__all__ = ["Accepted", "ControlClient", "ControlServer", "EmbeddedRuntime", "Store"]
