"""Count what the report draws: novelty, lengths, rejections, usage, classification."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from selfinstruct.filters import count_words
from selfinstruct.records import Task
from selfinstruct.report.load import Progress
from selfinstruct.similarity import NoveltyIndex


def novelty_scores(
    seeds: Sequence[str],
    admitted: dict[int, str],
    wanted: set[int],
    threshold: float,
    tokenizer: Literal["rouge", "unicode"] = "rouge",
    progress: Progress | None = None,
) -> dict[int, float]:
    """Return {seq: highest ROUGE-L F against the pool as it was when seq was admitted}.

    The index is rebuilt as the run built it: seeds, then every admitted instruction in
    seq order (tasks dropped after admission stayed in the index, so they count too).
    Scores are computed for the seqs in `wanted` only.
    """
    index = NoveltyIndex(threshold, tokenizer)
    index.add_many(seeds)
    scores: dict[int, float] = {}
    order = sorted(admitted)
    for n, seq in enumerate(order, start=1):
        text = admitted[seq]
        if seq in wanted:
            match = index.nearest(text)
            scores[seq] = match.score if match is not None else 0.0
        index.add(text)
        if progress is not None and (n % 500 == 0 or n == len(order)):
            progress("scoring novelty", n, len(order))
    return scores


@dataclass(frozen=True)
class Lengths:
    """Word counts of instructions (one per task) and of inputs and outputs (per instance)."""

    instructions: list[int]
    inputs: list[int]  # non-empty inputs only
    outputs: list[int]
    empty_inputs: int


def lengths(pool: Sequence[Task], *, english: bool = True) -> Lengths:
    """Measure the pool in words as the length filters count them (see count_words).

    English counts whitespace-separated words; other languages count each CJK character as
    a word, since Chinese puts no spaces between words.
    """
    instances = [i for t in pool for i in t.instances]

    def words(text: str) -> int:
        return count_words(text, english=english)

    return Lengths(
        instructions=[words(t.instruction) for t in pool],
        inputs=[words(i.input) for i in instances if i.input.strip()],
        outputs=[words(i.output) for i in instances],
        empty_inputs=sum(1 for i in instances if not i.input.strip()),
    )


def rejection_label(entry: dict[str, Any]) -> str:
    """Name a rejection by reason and stage, e.g. 'near_duplicate (instructions)'."""
    return f"{entry['reason']} ({entry['stage']})"


def rejections_by_round(rejections: Sequence[dict[str, Any]], rounds: int) -> dict[str, list[int]]:
    """Return {label: rejections in each round 0..rounds-1}, most frequent label first."""
    counts: dict[str, list[int]] = {}
    for entry in rejections:
        series = counts.setdefault(rejection_label(entry), [0] * rounds)
        r = int(entry["round"])
        if 0 <= r < rounds:
            series[r] += 1
    return dict(sorted(counts.items(), key=lambda kv: (-sum(kv[1]), kv[0])))


def accepted_by_round(pool: Sequence[Task], rounds: int) -> list[int]:
    """Count the tasks each committed round added."""
    counts = [0] * rounds
    for task in pool:
        if task.round is not None and 0 <= task.round < rounds:
            counts[task.round] += 1
    return counts


@dataclass(frozen=True)
class StageTotals:
    """Requests and tokens of one stage."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def usage_by_round(
    responses: Sequence[tuple[int, str, int, int]],
) -> tuple[int, dict[str, list[tuple[int, int]]]]:
    """Return (rounds seen, {stage: [(prompt, completion) tokens of each round]})."""
    rounds = max((r for r, *_ in responses), default=-1) + 1
    series: dict[str, list[tuple[int, int]]] = {}
    for r, stage, p, c in responses:
        row = series.setdefault(stage, [(0, 0)] * rounds)
        old = row[r]
        row[r] = (old[0] + p, old[1] + c)
    return rounds, dict(sorted(series.items()))


def stage_totals(responses: Sequence[tuple[int, str, int, int]]) -> dict[str, StageTotals]:
    """Sum requests and tokens per stage over every logged response."""
    totals: dict[str, StageTotals] = {}
    for _, stage, p, c in responses:
        t = totals.get(stage, StageTotals())
        totals[stage] = StageTotals(t.requests + 1, t.prompt_tokens + p, t.completion_tokens + c)
    return dict(sorted(totals.items()))


def classification_share(pool: Sequence[Task]) -> dict[str, int]:
    """Count classification, other and never-asked (alpaca mode) tasks."""
    counts = Counter(
        "not asked"
        if t.is_classification is None
        else ("classification" if t.is_classification else "other")
        for t in pool
    )
    return {k: counts[k] for k in ("classification", "other", "not asked") if counts[k]}
