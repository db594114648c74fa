"""Pure decisions: no I/O, no clock. Runtimes persist the state and carry out the effects."""

from .coordinator import Coordinator, run_id, run_key
from .engine import INTERNAL, Effects, Engine
from .pools import PoolGate
from .router import Router

__all__ = ["INTERNAL", "Coordinator", "Effects", "Engine", "PoolGate", "Router", "run_id", "run_key"]
