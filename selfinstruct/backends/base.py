"""The one extension point every teacher implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from selfinstruct.records import Completion, Request


class RequestRefused(Exception):  # noqa: N818 - a refusal is an answer, not a failure
    """The teacher refuses this one request the same way every time (a poison request).

    Raised by `complete` after the retries for an answer that is no answer: a content
    filter's HTTP 400, a 200 with no choices, an unparseable body. The engine records it as
    a rejection and goes on; `message` is the server's reason, redacted and one line.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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

    @abstractmethod
    async def complete(self, requests: Sequence[Request]) -> list[Completion]:
        """Answer every request, retrying transient faults; raise TeacherError when stuck.

        Raise RequestRefused for a request the teacher refuses persistently, by itself.
        """

    async def preflight(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Fail fast with a clear error when the teacher cannot be reached at all."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release connections."""

    def describe(self) -> str:
        """Say in a few words what answers, for progress lines and status."""
        return type(self).__name__
