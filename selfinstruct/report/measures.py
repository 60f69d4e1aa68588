"""Measure tasks so that runs of any size compare: diversity, lengths, language, judge, yield.

Pure functions over records; nothing here reads a file or draws.

Distinct-n and compression ratio grow or shrink with the number of texts measured (a larger
set repeats more n-grams and gives gzip more to share), so they are comparable only between
sets of the same size. `sample_tasks` therefore draws fixed-size samples, deterministically:
the tasks whose instruction has the lowest SHA-256, which depends on neither the pool's order
nor the run's seed, and nests (a smaller sample lies inside a larger one).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from selfinstruct.filters import count_words
from selfinstruct.records import Task
from selfinstruct.similarity import Tokenizer, tokenize

# The larger fixed sample: our choice, big enough that distinct-2 settles to two decimals on
# the synthetic teacher's runs, small enough to embed on a CPU in seconds.
SAMPLE_MAX = 1_000
# Candidates per point of the acceptance figure, once a run has this many points of them.
ACCEPTANCE_BIN = 1_000
ACCEPTANCE_MIN_POINTS = 10  # a shorter run gets a smaller bin, so its curve has a shape
_SMALL_BINS = (10, 20, 50, 100, 200, 500)
LOWEST_JUDGED = 10  # the judge section lists this many lowest-scored tasks
REFUSED = "teacher_refused"  # engine.REFUSED: a whole request refused, not a candidate

# Scripts of the language-share rule, by the first letter of a token. CJK Unified Ideographs
# with extensions A-H and the compatibility block (Unicode 15 code charts), as similarity.py.
_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff]")
_KANA = re.compile("[\u3040-\u30ff\u31f0-\u31ff]")
_HANGUL = re.compile("[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]")
_ASCII_LETTER = re.compile("[A-Za-z]")
LANGUAGE_SCRIPTS = {"en": "Latin", "zh": "Han"}


def instruction_key(task: Task) -> tuple[bytes, str]:
    """Order tasks for sampling: by the SHA-256 of the instruction, then by id."""
    digest = hashlib.sha256(task.instruction.encode("utf-8", "surrogatepass")).digest()
    return digest, task.id


def sample_tasks(tasks: Sequence[Task], size: int) -> list[Task]:
    """Return the `size` tasks with the lowest instruction hash (all of them when fewer)."""
    if size >= len(tasks):
        return sorted(tasks, key=instruction_key)
    return sorted(tasks, key=instruction_key)[:size]


def ngrams(tokens: Sequence[str], n: int) -> Iterable[tuple[str, ...]]:
    """Yield the n-grams of one text's tokens (none when it has fewer than n)."""
    return zip(*(tokens[i:] for i in range(n)), strict=False)


def distinct_n(token_lists: Iterable[Sequence[str]], n: int) -> float | None:
    """Return distinct n-grams over all n-grams (Li et al. 2016), or None when there are none.

    N-grams are taken within each text, never across two; the count is over the whole set.
    """
    seen: set[tuple[str, ...]] = set()
    total = 0
    for tokens in token_lists:
        for gram in ngrams(tokens, n):
            seen.add(gram)
            total += 1
    return len(seen) / total if total else None


def compression_ratio(texts: Sequence[str]) -> float | None:
    """Return the texts' UTF-8 size over their gzip size (Shaib et al. 2024), or None if empty.

    Texts are joined by newlines and compressed at level 9 with a zero timestamp, so the
    value is the same on every machine. Higher means more repetitive.
    """
    data = "\n".join(texts).encode("utf-8", "surrogatepass")
    if not data:
        return None
    return len(data) / len(gzip.compress(data, compresslevel=9, mtime=0))


def script_of(token: str) -> str | None:
    """Name the script of a token's first letter (Latin, Han, Kana, Hangul, other), or None."""
    letter = next((c for c in token if c.isalpha()), None)
    if letter is None:
        return None  # digits only: no script
    if letter.isascii():
        return "Latin"
    if _HAN.match(letter):
        return "Han"
    if _KANA.match(letter):
        return "Kana"
    if _HANGUL.match(letter):
        return "Hangul"
    return "Latin" if unicodedata.name(letter, "").startswith("LATIN") else "other"


def in_language(text: str, language: str) -> bool | None:
    """Say whether a text is in `language` by script, or None when it has no letter at all.

    The rule: split the text with the unicode tokenizer (every CJK character a token, every
    other run of letters and digits one word), name each token's script by its first letter,
    and call the text the language's when at least half of its tokens with a letter are in
    the language's script (Latin for en, Han for zh). It tells scripts apart, not languages:
    French counts as English, and Japanese written mostly in kanji as Chinese.
    """
    wanted = LANGUAGE_SCRIPTS.get(language)
    if wanted is None:
        return None
    if text.isascii():  # the common case, decided without tokenizing: Latin or no letter
        return wanted == "Latin" if _ASCII_LETTER.search(text) else None
    scripts = [s for s in map(script_of, tokenize(text, "unicode")) if s is not None]
    if not scripts:
        return None
    return 2 * sum(1 for s in scripts if s == wanted) >= len(scripts)


def language_share(texts: Iterable[str], language: str) -> float | None:
    """Return the share of texts with a letter that are in `language` (see `in_language`)."""
    verdicts = [v for v in (in_language(t, language) for t in texts) if v is not None]
    return sum(verdicts) / len(verdicts) if verdicts else None


def median(values: Sequence[float]) -> float | None:
    """Return the median, or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return float(ordered[mid]) if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def mean_pairwise_cosine(vectors: Sequence[Sequence[float]]) -> float | None:
    """Return the mean cosine similarity over all pairs of distinct rows, or None under two.

    Exact, in O(rows x dimensions): for unit rows u_i, the sum over pairs i < j of u_i . u_j
    is (|sum u_i|^2 - n) / 2. A zero row counts as similar to nothing.
    """
    units: list[list[float]] = []
    for row in vectors:
        norm = math.sqrt(sum(x * x for x in row))
        units.append([x / norm for x in row] if norm else [0.0] * len(row))
    n = len(units)
    if n < 2:
        return None
    total = [math.fsum(col) for col in zip(*units, strict=True)]
    self_sum = sum(1 for u in units if any(u))
    return (math.fsum(x * x for x in total) - self_sum) / (n * (n - 1))


@dataclass(frozen=True)
class TextMeasures:
    """The measures of one set of tasks: one column of the report's measures table."""

    tasks: int
    distinct_1: float | None
    distinct_2: float | None
    compression: float | None
    language_instructions: float | None
    language_outputs: float | None
    median_words: tuple[float | None, float | None, float | None]  # instruction, input, output
    judge_mean: float | None
    judged: int


def measure(tasks: Sequence[Task], tokenizer: Tokenizer, language: str) -> TextMeasures:
    """Measure a set of tasks: diversity of the instructions, lengths, language, judge."""
    instructions = [t.instruction for t in tasks]
    tokens = [tokenize(text, tokenizer) for text in instructions]
    instances = [i for t in tasks for i in t.instances]
    english = language == "en"
    scores = [t.judge.score for t in tasks if t.judge is not None and t.judge.score is not None]
    return TextMeasures(
        tasks=len(tasks),
        distinct_1=distinct_n(tokens, 1),
        distinct_2=distinct_n(tokens, 2),
        compression=compression_ratio(instructions),
        language_instructions=language_share(instructions, language),
        language_outputs=language_share((i.output for i in instances), language),
        median_words=(
            median([count_words(s, english=english) for s in instructions]),
            median([count_words(i.input, english=english) for i in instances if i.input.strip()]),
            median([count_words(i.output, english=english) for i in instances]),
        ),
        judge_mean=sum(scores) / len(scores) if scores else None,
        judged=sum(1 for t in tasks if t.judge is not None),
    )


@dataclass(frozen=True)
class LengthSample:
    """Lengths of one set of tasks, in words and in characters, per field."""

    words: dict[str, list[int]]  # "instructions", "inputs" (non-empty only), "outputs"
    chars: dict[str, list[int]]


FIELDS = ("instructions", "inputs", "outputs")


def length_sample(tasks: Sequence[Task], *, english: bool) -> LengthSample:
    """Measure every instruction, non-empty input and output in words and characters."""
    texts = {
        "instructions": [t.instruction for t in tasks],
        "inputs": [i.input for t in tasks for i in t.instances if i.input.strip()],
        "outputs": [i.output for t in tasks for i in t.instances],
    }
    return LengthSample(
        words={k: [count_words(s, english=english) for s in v] for k, v in texts.items()},
        chars={k: [len(s) for s in v] for k, v in texts.items()},
    )


@dataclass(frozen=True)
class Acceptance:
    """Candidate instructions and accepted tasks per committed round."""

    candidates: list[int]
    accepted: list[int]

    @property
    def total(self) -> int:
        """Count every candidate of the run."""
        return sum(self.candidates)


def acceptance_by_round(
    rejections: Iterable[dict[str, Any]], pool: Sequence[Task], rounds: int
) -> Acceptance:
    """Count candidates and accepted tasks per round from rejected.jsonl and the pool.

    A candidate is an instruction the teacher proposed: each instructions-stage rejection
    (it never reached the novelty index; a refused request is not one) plus each instruction
    admitted to the index (a seq, whether its task was kept or dropped later). Accepted
    means in the pool.
    """
    candidates = [0] * rounds
    admitted: dict[int, int] = {}  # seq -> round
    for entry in rejections:
        r = int(entry["round"])
        seq = entry.get("seq")
        if seq is not None:
            admitted.setdefault(int(seq), r)
        elif entry["stage"] == "instructions" and entry["reason"] != REFUSED:
            if 0 <= r < rounds:
                candidates[r] += 1
    accepted = [0] * rounds
    for task in pool:
        if task.round is None or not 0 <= task.round < rounds:
            continue
        accepted[task.round] += 1
        if task.seq is not None:
            admitted[task.seq] = task.round
    for r in admitted.values():
        if 0 <= r < rounds:
            candidates[r] += 1
    return Acceptance(candidates, accepted)


def acceptance_bin(total: int) -> int:
    """Choose candidates per point: 1,000, or less for a run too short for 10 such points."""
    if total >= ACCEPTANCE_BIN * ACCEPTANCE_MIN_POINTS:
        return ACCEPTANCE_BIN
    fitting = [b for b in _SMALL_BINS if total >= b * ACCEPTANCE_MIN_POINTS]
    return fitting[-1] if fitting else _SMALL_BINS[0]


def acceptance_curve(acceptance: Acceptance, size: int) -> list[tuple[int, float]]:
    """Return (candidates so far, share accepted) for each whole block of `size` candidates.

    Rounds record no order between their candidates, so a round's acceptances are spread
    evenly over its candidates: a block that splits a round gets its share pro rata.
    """
    points: list[tuple[int, float]] = []
    edge, before, seen, kept = size, 0.0, 0, 0.0
    for n, a in zip(acceptance.candidates, acceptance.accepted, strict=True):
        while n and edge <= seen + n:
            at = kept + a * (edge - seen) / n  # accepted by candidate `edge`
            points.append((edge, (at - before) / size))
            before, edge = at, edge + size
        seen, kept = seen + n, kept + a
    return points


@dataclass(frozen=True)
class JudgeStats:
    """What the judge said of a set of tasks: scores counted, and the lowest-scored tasks."""

    judged: int
    counts: dict[int | None, int]  # score 1..5 -> tasks; None: no verdict parsed
    lowest: list[Task]


def judge_stats(tasks: Sequence[Task], lowest: int = LOWEST_JUDGED) -> JudgeStats | None:
    """Count the judge's scores; None when no task carries a judgement."""
    judged = [t for t in tasks if t.judge is not None]
    if not judged:
        return None
    counts = Counter(t.judge.score for t in judged if t.judge is not None)
    scored = [t for t in judged if t.judge is not None and t.judge.score is not None]
    # Ties by pool order (seq), so the list is the same on every report of the run.
    scored.sort(key=lambda t: (t.judge.score if t.judge else 0, _order(t)))
    ordered: dict[int | None, int] = {s: counts[s] for s in (1, 2, 3, 4, 5)}
    if counts[None]:
        ordered[None] = counts[None]
    return JudgeStats(len(judged), ordered, scored[:lowest])


def _order(task: Task) -> tuple[int, str]:
    return (task.seq if task.seq is not None else -1), task.id
