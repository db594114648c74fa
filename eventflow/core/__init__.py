"""Pure decisions: no I/O, no clock. Runtimes persist the state and carry out the effects."""

from .coordinator import Coordinator, run_id, run_key
from .engine import Effects, Engine, Refused, is_followed
from .pools import PoolGate
from .router import Router

__all__ = [
    "Coordinator",
    "Effects",
    "Engine",
    "PoolGate",
    "Refused",
    "Router",
    "is_followed",
    "run_id",
    "run_key",
]
