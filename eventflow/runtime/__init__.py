"""What the runtimes are built on, apart from the core's decisions: for now, the clock."""

from .clock import Cancellable, Clock, SystemClock, micros

__all__ = ["Cancellable", "Clock", "SystemClock", "micros"]
