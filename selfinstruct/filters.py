"""Heuristic filters: each check returns a Verdict naming the reason, or None to keep."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from selfinstruct.config import FilterConfig


@dataclass(frozen=True)
class Verdict:
    """A rejection decision: the reason name (counted) and a human-readable detail."""

    reason: str
    detail: str = ""


class InstructionFilters:
    """The instruction-side heuristics of Self-Instruct and Stanford Alpaca."""

    def __init__(self, config: FilterConfig, *, english: bool = True) -> None:
        self._config = config
        self._english = english
        words = sorted(config.blacklist, key=len, reverse=True)
        self._blacklist = (
            # Lookarounds rather than \b, so entries such as "c++" or ".net" match too.
            re.compile(r"(?<!\w)(" + "|".join(re.escape(w) for w in words) + r")(?!\w)", re.I)
            if words
            else None
        )

    def check(self, instruction: str) -> Verdict | None:
        """Return why `instruction` is rejected, or None."""
        text = instruction.strip()
        if not text:
            return Verdict("too_short", f"0 words < {max(self._config.min_words, 1)}")
        n_words = len(text.split())
        if n_words < self._config.min_words:
            return Verdict("too_short", f"{n_words} words < {self._config.min_words}")
        if n_words > self._config.max_words:
            return Verdict("too_long", f"{n_words} words > {self._config.max_words}")
        if self._blacklist is not None and (hit := self._blacklist.search(text)):
            return Verdict("blacklisted_word", hit.group(1).lower())
        if text.lower().startswith("write a program"):
            return Verdict("write_a_program")
        if text[0] in string.punctuation:
            return Verdict("starts_with_punctuation", text[0])
        if self._english and not text[0].isascii():
            return Verdict("starts_with_non_ascii", text[0])
        return None


def check_output(task_input: str, output: str | None) -> Verdict | None:
    """Return why an instance's output is unusable, or None."""
    if output is None or not output.strip():
        return Verdict("empty_output")
    if output.strip() == task_input.strip():
        return Verdict("output_equals_input")
    if output.strip().endswith(":"):
        # Self-Instruct's instance filter: such outputs announce content that never came.
        return Verdict("output_ends_with_colon")
    return None
