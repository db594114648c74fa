"""Pure decisions: no I/O, no clock. Runtimes persist the state and carry out the effects."""

from .engine import Effects, Engine, Refused, is_followed
from .explain import ExplainItem, Explanation
from .pools import PoolGate
from .router import Router
from .runs import Runs, run_id, run_key

__all__ = [
    "Effects",
    "Engine",
    "ExplainItem",
    "Explanation",
    "PoolGate",
    "Refused",
    "Router",
    "Runs",
    "is_followed",
    "run_id",
    "run_key",
]
