"""Exceptions raised by selfinstruct.

Every error a user can cause or meet derives from :class:`SelfInstructError`; the CLI turns
each into a one-line message and a non-zero exit, never a traceback. A class's ``hint``
says what to do next; the CLI adds it only where it is true (a run with saved progress)::

    SelfInstructError
    ├── ConfigError        a setting is invalid, or conflicts with the stored run
    ├── InputError         a user-supplied file (seeds, prompts, dataset) is malformed
    │   ├── SeedError      a seed file: names file, line and field
    │   └── PromptError    a prompt template: names file and variable
    ├── RunDirError        the run directory is locked, foreign or damaged
    ├── BudgetSpent        --max-cost or --max-tokens is reached; the run is saved
    └── TeacherError       the teacher failed persistently (names the endpoint)
        └── AuthError      the teacher rejected or lacks credentials
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from selfinstruct.engine import Progress


class SelfInstructError(Exception):
    """Base class of every error selfinstruct raises on purpose."""

    # What to do next, when the run directory holds progress to resume; None: nothing to add.
    hint: ClassVar[str | None] = None


class ConfigError(SelfInstructError):
    """Report an invalid setting or one that conflicts with the stored run."""


class InputError(SelfInstructError):
    """Report a malformed user-supplied file."""


class SeedError(InputError):
    """Report a malformed seed file, naming file, line and field."""


class PromptError(InputError):
    """Report a malformed prompt template, naming file and variable."""


class RunDirError(SelfInstructError):
    """Report a run directory that is locked, foreign or damaged."""


class BudgetSpent(SelfInstructError):
    """Report that the run's budget is spent; committed work is saved and resumable.

    `progress` is where the run stood when it stopped, set by the engine before the error
    leaves it.
    """

    hint: ClassVar[str | None] = (
        "the run is saved: re-run with a larger --max-cost or --max-tokens to continue"
    )

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.progress: Progress | None = None


class TeacherError(SelfInstructError):
    """Report a teacher that keeps failing after bounded retries."""

    hint: ClassVar[str | None] = "progress is saved: re-run the same command to resume"


class AuthError(TeacherError):
    """Report missing or rejected teacher credentials."""

    hint: ClassVar[str | None] = None  # re-running cannot help until the key is fixed


def field_path(loc: Sequence[int | str]) -> str:
    """Name a field from a pydantic error location: ``instances[0].output``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
