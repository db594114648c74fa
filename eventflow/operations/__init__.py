"""The operations plane: what operators read and do, in either runtime."""

from .base import Operations, Submitted

__all__ = ["Operations", "Submitted"]
