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


@dataclass(frozen=True)
class InstanceCheck:
    """The outcome of the instance filters for one task."""

    kept: list[tuple[str, str]]  # (input, output)
    dropped: list[tuple[Verdict, str, str]]  # (why, input, output) of each dropped instance
    task_verdict: Verdict | None  # set when the whole task must go


def check_instances(pairs: list[tuple[str, str]], max_instances: int) -> InstanceCheck:
    """Apply Self-Instruct's instance filters to (input, output) pairs, in order."""
    kept: list[tuple[str, str]] = []
    dropped: list[tuple[Verdict, str, str]] = []
    outputs_by_input: dict[str, str] = {}
    for task_input, output in pairs:
        task_input, output = task_input.strip(), output.strip()
        if (verdict := check_output(task_input, output)) is not None:
            dropped.append((verdict, task_input, output))
            continue
        if (task_input, output) in kept:
            dropped.append((Verdict("duplicate_instance"), task_input, output))
            continue
        if task_input in outputs_by_input and task_input:
            # One input, two answers: the task is ill-posed, so none of it can be trusted.
            detail = f"input {task_input[:80]!r} has outputs {outputs_by_input[task_input][:80]!r}"
            detail += f" and {output[:80]!r}"
            return InstanceCheck([], dropped, Verdict("conflicting_outputs", detail))
        outputs_by_input[task_input] = output
        kept.append((task_input, output))
    for task_input, output in kept[max_instances:]:
        dropped.append((Verdict("too_many_instances", f"kept {max_instances}"), task_input, output))
    kept = kept[:max_instances]
    if not kept:
        return InstanceCheck([], dropped, Verdict("no_instances"))
    return InstanceCheck(kept, dropped, None)
