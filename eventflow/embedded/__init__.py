"""The embedded runtime: everything in one process, state in a SQLite file, no broker."""

import typing

from .. import lazy

if typing.TYPE_CHECKING:
    from .control import ControlClient, ControlServer
    from .runtime import EmbeddedRuntime
    from .store import Store

__all__ = ["ControlClient", "ControlServer", "EmbeddedRuntime", "Store"]
lazy.exports(
    globals(),
    {
        "ControlClient": ".control",
        "ControlServer": ".control",
        "EmbeddedRuntime": ".runtime",
        "Store": ".store",
    },
)
