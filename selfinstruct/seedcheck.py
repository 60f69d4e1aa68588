"""Describe a validated seed set: sizes, shares, lengths and its closest instructions."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from selfinstruct.filters import count_words
from selfinstruct.records import Task
from selfinstruct.similarity import ROUGE_THRESHOLD, NoveltyIndex, Tokenizer

# How many near-duplicate pairs the report lists (all are counted).
MAX_LISTED = 10


@dataclass(frozen=True)
class Pair:
    """Two seed tasks and the ROUGE-L F-measure of their instructions."""

    score: float
    first: Task
    second: Task


@dataclass(frozen=True)
class SeedStats:
    """Statistics of one seed set."""

    tasks: int
    classification: int
    instances: int
    empty_inputs: int
    instances_per_task: Counter[int]
    lengths: list[int]  # instruction length in words, in file order
    closest: Pair | None  # the pair with the highest ROUGE-L; None if every pair scores 0
    near_duplicates: list[Pair]  # pairs above the threshold (second's nearest earlier task)
    duplicate_instructions: list[list[Task]] = field(default_factory=list)  # exact repeats
    threshold: float = ROUGE_THRESHOLD
    tokenizer: Tokenizer = "rouge"

    @property
    def has_warnings(self) -> bool:
        """Say whether a strict check fails: near-duplicate or repeated instructions."""
        return bool(self.near_duplicates or self.duplicate_instructions)


def _normalized(text: str) -> str:
    return " ".join(text.split()).casefold()


def seed_stats(
    tasks: Sequence[Task],
    *,
    english: bool = True,
    tokenizer: Tokenizer = "rouge",
    threshold: float = ROUGE_THRESHOLD,
    progress: Callable[[int, int], None] | None = None,
) -> SeedStats:
    """Compute a seed set's statistics; the ROUGE-L part is exact over every pair."""
    index = NoveltyIndex(threshold, tokenizer)
    closest: Pair | None = None
    near: list[Pair] = []
    for i, task in enumerate(tasks):
        # Each task against every earlier one covers every pair once.
        match = index.nearest(task.instruction)
        if match is not None:
            pair = Pair(match.score, tasks[match.index], task)
            if closest is None or pair.score > closest.score:
                closest = pair
            if pair.score > threshold:
                near.append(pair)
        index.add(task.instruction)
        if progress is not None:
            progress(i + 1, len(tasks))
    by_text: dict[str, list[Task]] = {}
    for task in tasks:
        by_text.setdefault(_normalized(task.instruction), []).append(task)
    return SeedStats(
        tasks=len(tasks),
        classification=sum(t.is_classification is True for t in tasks),
        instances=sum(len(t.instances) for t in tasks),
        empty_inputs=sum(not i.input.strip() for t in tasks for i in t.instances),
        instances_per_task=Counter(len(t.instances) for t in tasks),
        lengths=[count_words(t.instruction, english=english) for t in tasks],
        closest=closest,
        near_duplicates=near,
        duplicate_instructions=[group for group in by_text.values() if len(group) > 1],
        threshold=threshold,
        tokenizer=tokenizer,
    )


def _share(part: int, whole: int) -> str:
    return f"{part} ({part / whole:.1%})" if whole else str(part)


def _quote(task: Task, limit: int = 70) -> str:
    text = " ".join(task.instruction.split())
    return f"{task.id}: {text if len(text) <= limit else text[: limit - 1] + '…'}"


def _row(label: str, value: str) -> str:
    return f"{label:<24}{value}"


def format_stats(stats: SeedStats, *, unit: str = "words") -> list[str]:
    """Lay out the statistics as report lines."""
    lengths = sorted(stats.lengths)
    per_task = stats.instances_per_task
    histogram = ", ".join(f"{n}: {per_task[n]}" for n in sorted(per_task))
    lines = [
        _row("tasks", str(stats.tasks)),
        _row("classification", _share(stats.classification, stats.tasks)),
        _row("instances", str(stats.instances)),
        _row("  with empty input", _share(stats.empty_inputs, stats.instances)),
        _row(
            "  per task",
            f"min {min(per_task)}, mean {stats.instances / stats.tasks:.2f}, "
            f"max {max(per_task)} ({histogram})",
        ),
        _row(
            f"instruction {unit}",
            f"min {lengths[0]}, median {statistics.median(lengths):g}, "
            f"mean {statistics.fmean(lengths):.1f}, "
            f"p90 {lengths[int(0.9 * (len(lengths) - 1))]}, max {lengths[-1]}",
        ),
    ]
    if stats.closest is None:
        lines.append(_row("max ROUGE-L", f"0 ({stats.tokenizer} tokenizer: no shared token)"))
    else:
        c = stats.closest
        lines += [
            _row("max ROUGE-L", f"{c.score:.3f} ({stats.tokenizer} tokenizer), closest pair:"),
            f"  {_quote(c.first)}",
            f"  {_quote(c.second)}",
        ]
    lines.append(
        _row(
            f"above {stats.threshold:g}",
            f"{len(stats.near_duplicates)} (tasks scoring above it against an earlier task)",
        )
    )
    for pair in stats.near_duplicates[:MAX_LISTED]:
        lines.append(f"  {pair.score:.3f}  {_quote(pair.second, 50)}  ~  {pair.first.id}")
    if len(stats.near_duplicates) > MAX_LISTED:
        lines.append(f"  ... and {len(stats.near_duplicates) - MAX_LISTED} more")
    lines.append(_row("repeated instructions", str(len(stats.duplicate_instructions))))
    for group in stats.duplicate_instructions[:MAX_LISTED]:
        ids = ", ".join(t.id for t in group)
        lines.append(f"  {ids}: {_quote(group[0])[len(group[0].id) + 2 :]}")
    return lines
