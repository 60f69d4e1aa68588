"""The one extension point every teacher implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from selfinstruct.records import Completion, Request


class Backend(ABC):
    """A teacher model: turns requests into completions, in order."""

    # How many requests it can usefully serve at once; None = as many as configured.
    max_concurrency: int | None = None
    # How many it wants in flight at least, whatever the configured concurrency: a backend
    # that gathers requests into batches (the Batch API) needs a whole window at once.
    min_concurrency: int | None = None

    def concurrency(self) -> int | None:
        """Return how many requests it takes at once now (may change); None: no limit."""
        return self.max_concurrency

    def watch_capacity(self, callback: Callable[[], None]) -> None:  # noqa: B027 - optional
        """Call `callback` when concurrency() grows between answers (none do by default)."""

    @abstractmethod
    async def complete(self, requests: Sequence[Request]) -> list[Completion]:
        """Answer every request, retrying transient faults; raise TeacherError when stuck."""

    async def preflight(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Fail fast with a clear error when the teacher cannot be reached at all."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release connections."""

    def describe(self) -> str:
        """Say in a few words what answers, for progress lines and status."""
        return type(self).__name__
