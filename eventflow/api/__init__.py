"""The operations plane's HTTP API (FastAPI), served by `eventflow server` and `eventflow dev`."""

import typing

from .. import lazy

if typing.TYPE_CHECKING:
    from .app import create_app
    from .server import ApiServer

__all__ = ["ApiServer", "create_app"]
lazy.exports(globals(), {"ApiServer": ".server", "create_app": ".app"})
