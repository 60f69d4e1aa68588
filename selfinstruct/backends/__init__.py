"""Teacher backends: one abstract method, `complete`, batch-first and async."""

from selfinstruct.backends.base import Backend

__all__ = ["Backend"]
