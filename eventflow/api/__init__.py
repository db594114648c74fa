"""The operations plane's HTTP API (FastAPI), served by `eventflow server` and `eventflow dev`."""

from .app import create_app
from .server import ApiServer

__all__ = ["ApiServer", "create_app"]
