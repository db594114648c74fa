"""The operations plane: what operators read and do, in either runtime."""

from .base import Operations, Submitted, selected

__all__ = ["Operations", "Submitted", "selected"]
