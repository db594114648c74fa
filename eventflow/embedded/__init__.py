"""The embedded runtime: everything in one process, state in a SQLite file, no broker."""

from .control import ControlClient, ControlServer
from .runtime import EmbeddedRuntime
from .store import Store

__all__ = ["ControlClient", "ControlServer", "EmbeddedRuntime", "Store"]
