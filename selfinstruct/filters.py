"""Heuristic filters: each check returns a Verdict naming the reason, or None to keep."""

from __future__ import annotations

import itertools
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

from selfinstruct.config import FilterConfig
from selfinstruct.similarity import tokenize

# Scripts written without spaces (CJK ideographs, kana): a blacklist entry made of them
# matches inside a longer run of such characters, where no word boundary can be; next to
# them, as in 生成video脚本, a Latin entry needs none either.
_NO_SPACE = "\u3005-\u3007\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_NO_SPACE_SCRIPT = re.compile(f"[{_NO_SPACE}]")
# Full-width marks that cannot open a sentence (separators and closing brackets); opening
# ones such as 《 (a title: 《红楼梦》的作者是谁？) and “ stay allowed, as ¿ and ¡ do.
_CJK_NO_START = frozenset("，。、；：？！…）》」』】〕～")
# Self-Instruct's "Write a program" rule, in English and in our Chinese counterpart
# (编写/写 + optional 一个/一段 + 程序, after an optional 请).
_WRITE_A_PROGRAM = re.compile(r"write a program|请?(?:编写|写)(?:一个|一段)?程序", re.I)


# "Not after (or before) a word character outside the no-space scripts". Case-sensitive
# inside: under re.I, Python folds the case of every character in the class's ranges as it
# compiles, which made the default blacklist's pattern take a quarter of a second to build.
_WORD_EDGE = f"(?-i:[^\\W{_NO_SPACE}])"


def blacklist_pattern(words: Sequence[str]) -> str:
    """Return a pattern whose group 1 is the first of `words` found as a whole word.

    An edge of an entry in a no-space script needs no boundary. Entries with the same
    edges, next to each other in `words`, share one pair of lookarounds: the match is the
    one the entries tried in order would give, and the pattern compiles in milliseconds.
    """

    def edges(word: str) -> tuple[bool, bool]:
        return (
            not _NO_SPACE_SCRIPT.match(word[:1]),
            not _NO_SPACE_SCRIPT.match(word[-1:]),
        )

    alternatives = []
    for (before, after), run in itertools.groupby(words, key=edges):
        alternatives.append(
            (f"(?<!{_WORD_EDGE})" if before else "")
            + "(?:"
            + "|".join(re.escape(w) for w in run)
            + ")"
            + (f"(?!{_WORD_EDGE})" if after else "")
        )
    return "(" + "|".join(alternatives) + ")"


@dataclass(frozen=True)
class Verdict:
    """A rejection decision: the reason name (counted) and a human-readable detail."""

    reason: str
    detail: str = ""


def _too_long(field: str, text: str, limit: int | None) -> Verdict | None:
    """Reject a field over its character limit, with a reason of its own per field."""
    if limit is not None and len(text) > limit:
        return Verdict(f"{field}_too_long_chars", f"{len(text)} characters > {limit}")
    return None


def clip(text: str, limit: int) -> str:
    """Cut `text` to `limit` characters for a rejection record, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]} [... {len(text) - limit} more characters]"


def count_words(text: str, *, english: bool = True) -> int:
    """Count the words that the length limits compare.

    English counts whitespace-separated words, as Self-Instruct does. Other languages
    count the unicode tokenizer's tokens: each CJK character, kana or Hangul syllable is
    one word (those scripts put no spaces between words), any other run of letters and
    digits is one word, and punctuation counts for nothing.
    """
    return len(text.split()) if english else len(tokenize(text, "unicode"))


class InstructionFilters:
    """The instruction-side heuristics of Self-Instruct and Stanford Alpaca.

    With ``english=False`` (every language but English) words are counted by
    `count_words`, full-width separators and closing marks count as punctuation at the
    start too, and the first-character ASCII check is off.
    """

    def __init__(self, config: FilterConfig, *, english: bool = True) -> None:
        self._config = config
        self._english = english
        words = sorted(config.blacklist, key=len, reverse=True)
        self._blacklist = (
            # Lookarounds rather than \b, so entries such as "c++" or ".net" match too.
            re.compile(blacklist_pattern(words), re.I) if words else None
        )

    def check(self, instruction: str) -> Verdict | None:
        """Return why `instruction` is rejected, or None."""
        text = instruction.strip()
        # First: every later check (and the novelty index) costs time per character.
        if verdict := _too_long("instruction", text, self._config.max_instruction_chars):
            return verdict
        if not text:
            return Verdict("too_short", f"0 words < {max(self._config.min_words, 1)}")
        n_words = count_words(text, english=self._english)
        if n_words < self._config.min_words:
            return Verdict("too_short", f"{n_words} words < {self._config.min_words}")
        if n_words > self._config.max_words:
            return Verdict("too_long", f"{n_words} words > {self._config.max_words}")
        if self._blacklist is not None and (hit := self._blacklist.search(text)):
            return Verdict("blacklisted_word", hit.group(1).lower())
        if _WRITE_A_PROGRAM.match(text):
            return Verdict("write_a_program")
        if text[0] in string.punctuation or (not self._english and text[0] in _CJK_NO_START):
            return Verdict("starts_with_punctuation", text[0])
        if self._english and not text[0].isascii():
            return Verdict("starts_with_non_ascii", text[0])
        return None

    def check_sizes(self, task_input: str, output: str | None) -> Verdict | None:
        """Return why an input or output is over its character limit, or None."""
        return _too_long("input", task_input.strip(), self._config.max_input_chars) or _too_long(
            "output", (output or "").strip(), self._config.max_output_chars
        )


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


def check_instances(
    pairs: list[tuple[str, str]],
    max_instances: int,
    *,
    max_input_chars: int | None = None,
    max_output_chars: int | None = None,
) -> InstanceCheck:
    """Apply Self-Instruct's instance filters to (input, output) pairs, in order.

    A pair over a character limit is dropped first, its texts clipped to the limit in the
    record (the whole answer stays in responses.jsonl).
    """
    kept: list[tuple[str, str]] = []
    dropped: list[tuple[Verdict, str, str]] = []
    outputs_by_input: dict[str, str] = {}
    for task_input, output in pairs:
        task_input, output = task_input.strip(), output.strip()
        size = _too_long("input", task_input, max_input_chars) or _too_long(
            "output", output, max_output_chars
        )
        if size is not None:
            clipped_input = clip(task_input, max_input_chars or len(task_input))
            dropped.append((size, clipped_input, clip(output, max_output_chars or len(output))))
            continue
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
