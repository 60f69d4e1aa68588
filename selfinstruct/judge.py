"""The judge stage's pure parts: reading a verdict, and summing up a pool's scores.

A verdict is a score from 1 to 5 and a one-sentence reason (prompts/judge.txt asks for
``Score: N`` then ``Reason: ...``). A completions model continues the prompt's last
``Score:`` line, so its text starts with the number; a chat model writes both labels.
The engine (engine.py) sends the requests and records what this module reads.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from selfinstruct.records import Task
from selfinstruct.text import escape_invalid, normalise

SCORES = (1, 2, 3, 4, 5)
# Longest reason kept: one sentence, not an essay (a runaway answer is cut, not stored).
MAX_REASON_CHARS = 300
# The labels of prompts/judge.txt; a Chinese judge may write its own words or a full-width
# colon even when told to keep the English labels.
_SCORE = re.compile(r"(?:score|评分|分数)\s*[:：]?\s*\**\s*([1-5])(?![0-9.])", re.IGNORECASE)
_LEADING = re.compile(r"\A\s*\**\s*([1-5])(?![0-9.])")
_REASON = re.compile(r"(?:reason|理由)\s*[:：]\s*(.+)", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    """A judge's answer, read: the score and its reason."""

    score: int
    reason: str


def parse_verdict(text: str) -> Verdict | None:
    """Read a score from 1 to 5 and its reason from a judge's answer; None when there is none.

    The score is the number after the first ``Score:`` label, or the number the answer
    starts with (a continued ``Score:`` line). The reason is the first line after
    ``Reason:``, else the rest of the answer's first lines; it may be empty.
    """
    # Teacher text is untrusted (text.py): a reason is stored, so what a dataset must not
    # hold is escaped rather than kept; the verdict itself is never refused for it.
    text = escape_invalid(normalise(text))
    match = _LEADING.match(text) or _SCORE.search(text)
    if match is None:
        return None
    reason_match = _REASON.search(text, match.end())
    if reason_match is not None:
        reason = reason_match.group(1)
    else:
        rest = text[match.end() :].strip().lstrip(".)-:：").strip()
        reason = rest.split("\n\n", 1)[0]
    reason = " ".join(reason.split()).strip("* ")
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 1].rstrip() + "…"
    return Verdict(int(match.group(1)), reason)


def unparsed_reason(first: str, second: str) -> str:
    """Say why a task has no score: what the judge answered, both times."""
    return f"no score in the judge's answers {_excerpt(first)} and {_excerpt(second)}"


def _excerpt(text: str) -> str:
    return repr(" ".join(escape_invalid(normalise(text)).split())[:60])


@dataclass(frozen=True)
class ScoreSummary:
    """How a pool's tasks were scored: counts per score, and the lowest-scored tasks."""

    judged: int
    counts: dict[int, int]  # score -> tasks, for every score 1..5
    unscored: int  # judged, but no verdict could be read
    lowest: list[Task]  # lowest score first, then pool order

    @property
    def mean(self) -> float | None:
        """Return the mean score of the scored tasks, None when none has a score."""
        scored = sum(self.counts.values())
        if not scored:
            return None
        return sum(score * n for score, n in self.counts.items()) / scored


def summarize(tasks: Iterable[Task], lowest: int = 5) -> ScoreSummary:
    """Count the pool's scores and pick its `lowest` lowest-scored tasks (unscored after)."""
    counts: Counter[int] = Counter()
    judged: list[Task] = []
    unscored = 0
    for task in tasks:
        if task.judge is None:
            continue
        judged.append(task)
        if task.judge.score is None:
            unscored += 1
        else:
            counts[task.judge.score] += 1
    scored = [t for t in judged if t.judge is not None and t.judge.score is not None]
    # sorted() is stable: ties keep pool order, so the list is the same on every call.
    worst = sorted(scored, key=lambda t: t.judge.score if t.judge and t.judge.score else 0)
    return ScoreSummary(
        judged=len(judged),
        counts={score: counts[score] for score in SCORES},
        unscored=unscored,
        lowest=worst[:lowest],
    )


def format_summary(summary: ScoreSummary, model: str, width: int = 30) -> list[str]:
    """Lay out a score summary for `selfinstruct status`: a bar per score, then the lowest."""
    mean = summary.mean
    lines = [
        f"judge      {summary.judged} tasks judged by {model}"
        + (f", mean score {mean:.2f}" if mean is not None else "")
    ]
    most = max([*summary.counts.values(), summary.unscored, 1])
    for score, count in summary.counts.items():
        bar = "#" * round(width * count / most)
        lines.append(f"  score {score}{count:>10}  {bar}")
    if summary.unscored:
        lines.append(f"  no score{summary.unscored:>9}  (no readable verdict, twice)")
    if summary.lowest:
        lines.append(f"lowest     the {len(summary.lowest)} lowest-scored tasks")
    for task in summary.lowest:
        assert task.judge is not None
        lines.append(f"  {task.id}  {task.judge.score}  {_clip(task.instruction, 60)}")
        lines.append(f"      {_clip(task.judge.reason, 90)}")
    return lines


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
