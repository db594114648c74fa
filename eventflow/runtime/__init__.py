"""What the runtimes are built on, apart from the core's decisions: for now, the clock."""

from .clock import Cancellable, Clock, SystemClock

__all__ = ["Cancellable", "Clock", "SystemClock"]
