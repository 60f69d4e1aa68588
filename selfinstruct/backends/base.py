"""The one extension point every teacher implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from selfinstruct.records import Completion, Request

if TYPE_CHECKING:
    from selfinstruct.config import RunConfig

Notify = Callable[[str], None]
# (stage, key, answer): an answer the backend paid for on its own, outside complete() (a
# room probe), so the run can log and count it like any other.
Spend = Callable[[str, str, Completion], None]


class RequestRefused(Exception):  # noqa: N818 - a refusal is an answer, not a failure
    """The teacher refuses this one request the same way every time (a poison request).

    Raised by `complete` after the retries for an answer that is no answer: a content
    filter's HTTP 400, a 200 with no choices, an unparseable body. The engine records it as
    a rejection and goes on; `message` is the server's reason, redacted and one line.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SendsHeld(Exception):  # noqa: N818 - not a failure: the run asked for it
    """The run holds new sends (target reached, budget spent, a stop signal): not sent.

    Raised by `complete` for a request still waiting for its turn (a slot, a rate limit's
    refill, a retry's pause) once `hold()` was called: it was never paid for.
    """


class Backend(ABC):
    """A teacher model: turns requests into completions, in order."""

    # How many requests it can usefully serve at once; None = as many as configured.
    max_concurrency: int | None = None
    # Whether what it sent is answered within --timeout: a run that reaches its target
    # waits for those answers, so that they land in the log (the Batch API's take hours:
    # its batches go on at OpenAI and a later run finds them again).
    answers_promptly: bool = True
    # How many it wants in flight at least, whatever the configured concurrency: a backend
    # that gathers requests into batches (the Batch API) needs a whole window at once.
    min_concurrency: int | None = None

    # What the server says it runs (e.g. from /v1/models), once known; recorded with the run.
    reported_model: str | None = None

    @classmethod
    def resolve(cls, config: RunConfig) -> dict[str, Any]:
        """Return the teacher settings this backend implies, as updates; refuse conflicts.

        Called before the config is used, so the identity stored with a run holds the
        resolved values (the local backend names its GGUF file, say).
        """
        return {}

    @classmethod
    def identity(cls, config: RunConfig) -> dict[str, Any]:
        """Return identity entries beyond the config's own (a model file's digest, say)."""
        return {}

    @classmethod
    def from_config(
        cls, config: RunConfig, api_key: str | None, *, notify: Notify | None = None
    ) -> Backend:
        """Build the backend a resolved config asks for."""
        raise NotImplementedError(f"{cls.__name__} is not built from a config")

    def concurrency(self) -> int | None:
        """Return how many requests it takes at once now (may change); None: no limit."""
        return self.max_concurrency

    def watch_capacity(self, callback: Callable[[], None]) -> None:  # noqa: B027 - optional
        """Call `callback` when concurrency() grows between answers (none do by default)."""

    def watch_spend(self, callback: Spend) -> None:  # noqa: B027 - optional
        """Call `callback` for each answer paid outside complete() (none are, by default)."""

    def hold(self, held: bool = True) -> None:  # noqa: B027 - optional
        """Send nothing more: requests still waiting for their turn raise SendsHeld.

        Requests already sent go on to their answers; `held=False` sends again (a new run
        on the same backend). Backends that send at once, with no wait of their own
        between the engine's slot and the wire, have nothing to hold.
        """

    @abstractmethod
    async def complete(self, requests: Sequence[Request]) -> list[Completion]:
        """Answer every request, retrying transient faults; raise TeacherError when stuck.

        Raise RequestRefused for a request the teacher refuses persistently, by itself.
        """

    async def preflight(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Fail fast with a clear error when the teacher cannot be reached at all."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release connections."""
