"""Measure a run's quality and diversity, draw the measures' figures, lay out their tables.

Used by both pages: a run's report (seeds beside generated tasks) and the comparison of two
runs (one run beside the other). The numbers come from `measures`; the embedding model of
the ``[semantic]`` extra is loaded only when that extra is installed.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from selfinstruct.records import Task
from selfinstruct.report import draw
from selfinstruct.report.load import Progress, RunData
from selfinstruct.report.measures import (
    FIELDS,
    LANGUAGE_SCRIPTS,
    SAMPLE_MAX,
    Acceptance,
    JudgeStats,
    LengthSample,
    TextMeasures,
    acceptance_by_round,
    acceptance_curve,
    judge_stats,
    length_sample,
    mean_pairwise_cosine,
    measure,
    sample_tasks,
)
from selfinstruct.similarity import Tokenizer
from selfinstruct.text import escape_invalid

# Characters of a text the embedding model reads: far past its 256 tokens, so a huge field
# costs no more to tokenize than a long one.
EMBED_MAX_CHARS = 4_000
EMBED_BATCH = 64  # texts per model call, as semantic.SemanticIndex.load batches them
# Characters of an instruction or a judge's reason shown in the lowest-scored table.
SHOWN_MAX_CHARS = 400
LENGTH_QUANTILE = 0.99  # the length figure's axes end here; longer values join the last bin
LENGTH_BINS = 30
COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52")
SEED_COLOR = "0.45"


@dataclass(frozen=True)
class Column:
    """One column of the measures table: what was measured, and the values."""

    head: str
    measures: TextMeasures
    cosine: float | None  # mean pairwise cosine; None when not measured
    size: int | None = None  # the sample size asked for; None for a whole set

    @property
    def short(self) -> bool:
        """Say whether this sample asked for more tasks than the run has."""
        return self.size is not None and self.measures.tasks < self.size


@dataclass(frozen=True)
class RunMeasures:
    """Everything the measures sections show of one run."""

    label: str
    language: str
    tokenizer: Tokenizer
    seeds: Column
    samples: list[Column]  # one per sample size
    everything: Column
    lengths: dict[str, LengthSample]  # "seeds" and "generated"
    acceptance: Acceptance
    judge: JudgeStats | None
    semantic_missing: str | None  # why no embedding similarity was measured, if it was not


def semantic_status() -> str | None:
    """Return why embedding similarity cannot be measured here, or None when it can."""
    from selfinstruct import semantic

    if semantic.available():
        return None
    return f"the [semantic] extra is not installed ({semantic.INSTALL_HINT})"


def embed(texts: Sequence[str]) -> list[list[float]]:
    """Embed texts with the [semantic] extra's model, one unit row per text."""
    from selfinstruct.semantic import Embedder

    embedder = Embedder(threads=1)  # one thread: the same vectors on every run
    clipped = [t[:EMBED_MAX_CHARS] for t in texts]
    # Batches of similar lengths pad little; padding never changes a vector.
    order = sorted(range(len(clipped)), key=lambda i: len(clipped[i]))
    rows: list[list[float]] = [[] for _ in clipped]
    for start in range(0, len(order), EMBED_BATCH):
        chosen = order[start : start + EMBED_BATCH]
        vectors = embedder.embed([clipped[i] for i in chosen])
        for i, vector in zip(chosen, vectors, strict=True):
            rows[i] = [float(x) for x in vector]
    return rows


def measure_run(
    data: RunData,
    sizes: Sequence[int],
    *,
    label: str = "generated",
    semantic: bool = True,
    progress: Progress | None = None,
) -> RunMeasures:
    """Measure a run's seeds, its generated tasks at each fixed sample size, and all of them."""
    config = data.header["config"]
    tokenizer: Tokenizer = config["filters"].get("tokenizer", "rouge")
    language = data.language
    seeds = list(data.seed_tasks)
    pool = data.pool
    missing = semantic_status() if semantic else "not asked for"
    largest = sample_tasks(pool, max(sizes, default=0))
    samples = [largest[:size] for size in sizes]
    vectors: dict[str, list[float]] = {}
    if missing is None:
        texts = list(dict.fromkeys([t.instruction for t in seeds + largest]))
        if progress is not None:
            progress("embedding instructions", 0, len(texts))
        vectors = dict(zip(texts, embed(texts), strict=True))
        if progress is not None:
            progress("embedding instructions", len(texts), len(texts))

    def cosine(tasks: Sequence[Task]) -> float | None:
        if missing is not None:
            return None
        return mean_pairwise_cosine([vectors[t.instruction] for t in tasks])

    english = language == "en"
    return RunMeasures(
        label=label,
        language=language,
        tokenizer=tokenizer,
        seeds=Column(f"seeds ({len(seeds):,})", measure(seeds, tokenizer, language), cosine(seeds)),
        samples=[
            Column(
                f"sample of {size:,}",
                measure(sample, tokenizer, language),
                cosine(sample),
                size=size,
            )
            for size, sample in zip(sizes, samples, strict=True)
        ],
        everything=Column(f"all {len(pool):,}", measure(pool, tokenizer, language), None),
        lengths={
            "seeds": length_sample(seeds, english=english),
            "generated": length_sample(pool, english=english),
        },
        acceptance=acceptance_by_round(data.rejections, pool, data.rounds),
        judge=judge_stats(pool),
        semantic_missing=missing,
    )


def sample_sizes(seed_count: int) -> tuple[int, ...]:
    """Return the fixed sample sizes: the seed count, and 1,000 (one size when they agree)."""
    return tuple(sorted({seed_count, SAMPLE_MAX}))


# -- the table --------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _words(values: tuple[float | None, float | None, float | None]) -> str:
    return " / ".join("—" if v is None else f"{v:g}" for v in values)


def measures_rows(columns: Sequence[Column], language: str) -> list[list[str]]:
    """Return the measures table's rows, one per measure, one cell per column."""
    script = LANGUAGE_SCRIPTS.get(language, "?")
    rows: list[tuple[str, Callable[[Column], str]]] = [
        ("tasks measured", lambda c: f"{c.measures.tasks:,}" + (" (short)" if c.short else "")),
        ("distinct-1 of instructions", lambda c: _num(c.measures.distinct_1)),
        ("distinct-2 of instructions", lambda c: _num(c.measures.distinct_2)),
        ("compression ratio of instructions (gzip)", lambda c: _num(c.measures.compression, 2)),
        ("mean pairwise cosine of instructions", lambda c: _num(c.cosine)),
        (
            f"instructions in {script} script ({language})",
            lambda c: _share(c.measures.language_instructions),
        ),
        (f"outputs in {script} script ({language})", lambda c: _share(c.measures.language_outputs)),
        ("median words: instruction / input / output", lambda c: _words(c.measures.median_words)),
    ]
    if any(c.measures.judged for c in columns):
        rows.append(
            (
                "judge: mean score (tasks judged)",
                lambda c: f"{_num(c.measures.judge_mean, 2)} ({c.measures.judged:,})",
            )
        )
    return [[name, *(cell(c) for c in columns)] for name, cell in rows]


def measures_table(columns: Sequence[Column], language: str) -> str:
    """Lay out the measures table: one row per measure, one column per set of tasks."""
    head = ["measure", *(c.head for c in columns)]
    return draw.table(head, measures_rows(columns, language), set(range(1, len(columns) + 1)))


def measures_notes(
    measured: Sequence[RunMeasures], sizes: Sequence[int], semantic_missing: str | None
) -> str:
    """Say how each measure was taken, so that a reader can compare it with another run's."""
    tokenizers = sorted({m.tokenizer for m in measured})
    words = {
        "rouge": "rouge-score's tokenizer (lower-cased ASCII letters and digits)",
        "unicode": "the unicode tokenizer (NFKC, lower-cased Unicode words, each CJK "
        "character a token)",
    }
    said = "; ".join(f"{words.get(t, t)}" for t in tokenizers)
    shown = " and ".join(f"{s:,}" for s in sizes)
    semantic = (
        f"Mean pairwise embedding similarity: not measured: {html.escape(semantic_missing)}."
        if semantic_missing is not None
        else "Mean pairwise cosine: the mean cosine similarity of every pair of instructions "
        "in the set, embedded with all-MiniLM-L6-v2 (the [semantic] extra's model, as the "
        "semantic dedup uses it); measured on the seeds and the samples, not on all tasks."
    )
    short = any(c.short for m in measured for c in m.samples)
    return "".join(
        f'<p class="note">{p}</p>'
        for p in (
            "Distinct-n is the number of distinct n-grams of instructions over all their "
            "n-grams (n-grams are taken within an instruction), with the tokenizer the run's "
            f"ROUGE filter uses: {html.escape(said)}. The compression ratio is the size of the "
            "instructions, joined by newlines, over their gzip size: higher is more "
            "repetitive.",
            "Both depend on how many instructions are measured, so generated tasks are also "
            f"measured on fixed-size samples of {shown} tasks, the same sizes for every run: "
            "the tasks whose instruction has the lowest SHA-256, a deterministic draw that "
            "depends on neither the pool's order nor the run's seed. Compare runs on those "
            "columns; the all-tasks column depends on the run's size."
            + (
                " A sample marked (short) asked for more tasks than the run has: it holds "
                "them all and is not comparable."
                if short
                else ""
            ),
            semantic,
            "Language share: each text is split with the unicode tokenizer, each token gets "
            "the script of its first letter, and a text counts as the run's language when at "
            "least half of its tokens with a letter are in that language's script (Latin for "
            "en, Han for zh). Texts without a letter are left out. The rule tells scripts "
            "apart, not languages: French counts as English. Median words are counted as the "
            "length filters count them.",
        )
    )


# -- figures -----------------------------------------------------------------------------------


def _quantile(values: Sequence[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))] if ordered else 0


def _histogram(values: Sequence[int], top: int, bins: int) -> tuple[list[float], list[float]]:
    """Return (shares, edges) of values in `bins` equal bins over [0, top], the last open."""
    width = max(1, -(-(top + 1) // bins))  # whole units per bin, at least one
    count = -(-(top + 1) // width)
    counts = [0] * count
    for v in values:
        counts[min(count - 1, v // width)] += 1
    total = len(values)
    return [c / total for c in counts], [i * width for i in range(count + 1)]


def plot_length_distributions(groups: Mapping[str, LengthSample]) -> bytes:
    """Draw words (top row) and characters (bottom row) per field, one step curve per group.

    Each curve is the share of its group's texts, so groups of any size compare; the axis
    ends at the largest group's 99th percentile and longer texts are counted in the last bin.
    """
    fig = draw.figure(13, 6.6)
    axes = fig.subplots(2, 3)
    colors = _colors(groups)
    for row, unit in enumerate(("words", "chars")):
        for col, name in enumerate(FIELDS):
            ax = axes[row][col]
            series = {g: getattr(s, unit)[name] for g, s in groups.items()}
            label = "words" if unit == "words" else "characters"
            ax.set_title(f"{name}: {label}", fontsize=10)
            if not any(series.values()):
                draw.no_data(ax, "none")
                continue
            # Each set's own percentile, so a small set's long tail is not lost to a big one's.
            top = max(1, *(_quantile(values, LENGTH_QUANTILE) for values in series.values()))
            for group, values in series.items():
                if not values:
                    continue
                shares, edges = _histogram(values, top, LENGTH_BINS)
                ax.stairs(shares, edges, color=colors[group], linewidth=1.5,
                          label=draw.plain(f"{group} ({len(values):,})"))  # fmt: skip
            ax.set_xlabel(f"{label} (last bin: {top:,} and more)", fontsize=9)
            ax.legend(fontsize=7, frameon=False)
        axes[row][0].set_ylabel("share of texts")
    return draw.png(fig)


def _colors(groups: Mapping[str, object]) -> dict[str, str]:
    out: dict[str, str] = {}
    others = iter(COLORS)
    for name in groups:
        out[name] = SEED_COLOR if "seeds" in name else next(others, "0.2")
    return out


def plot_acceptance(curves: Mapping[str, list[tuple[int, float]]], size: int) -> bytes:
    """Draw the share of candidates accepted in each block of `size`, over the run."""
    fig = draw.figure(9, 4.2)
    ax = fig.add_subplot()
    ax.set_title(f"Tasks accepted per {size:,} candidate instructions, over the run", fontsize=11)
    if not any(curves.values()):
        draw.no_data(ax, f"fewer than {size:,} candidates")
        return draw.png(fig)
    for (label, points), color in zip(curves.items(), COLORS, strict=False):
        if points:
            ax.plot([x for x, _ in points], [100 * y for _, y in points], marker=".",
                    color=color, label=draw.plain(label))  # fmt: skip
    ax.set_ylim(0, 100)
    ax.set_xlabel("candidate instructions so far")
    ax.set_ylabel(f"% of the last {size:,} accepted")
    if len(curves) > 1:
        ax.legend(fontsize=8, frameon=False)
    return draw.png(fig)


def plot_judge(stats: Mapping[str, JudgeStats]) -> bytes:
    """Draw the share of judged tasks at each score, one bar group per score, a bar per run."""
    fig = draw.figure(8, 4)
    ax = fig.add_subplot()
    ax.set_title("The judge's scores (share of judged tasks)", fontsize=11)
    keys: list[int | None] = [1, 2, 3, 4, 5]
    if any(None in s.counts for s in stats.values()):
        keys.append(None)
    width = 0.8 / max(1, len(stats))
    for n, ((label, s), color) in enumerate(zip(stats.items(), COLORS, strict=False)):
        xs = [i + n * width - 0.4 + width / 2 for i in range(len(keys))]
        ys = [100 * s.counts.get(k, 0) / s.judged for k in keys]
        ax.bar(xs, ys, width=width, color=color,
               label=draw.plain(f"{label} ({s.judged:,} judged)"))  # fmt: skip
    ax.set_xticks(range(len(keys)), [str(k) if k is not None else "no verdict" for k in keys])
    ax.set_xlabel("score (1 unusable, 5 excellent)")
    ax.set_ylabel("% of judged tasks")
    ax.legend(fontsize=8, frameon=False)
    return draw.png(fig)


# -- the judge's lowest-scored tasks ----------------------------------------------------------


def clip(text: str, limit: int = SHOWN_MAX_CHARS) -> str:
    """Shorten a text for a table cell, and make any character a page must not hold visible."""
    text = escape_invalid(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def lowest_table(stats: JudgeStats) -> str:
    """Lay out the judge's lowest-scored tasks with the reason it gave."""
    rows = [
        (
            t.judge.score if t.judge else "",
            t.id,
            clip(t.instruction),
            clip(t.judge.reason) if t.judge else "",
        )
        for t in stats.lowest
    ]
    return draw.table(("score", "task", "instruction", "judge's reason"), rows, {0}, {2, 3})


# -- the sections ------------------------------------------------------------------------------


def acceptance_text(acceptance: Acceptance, block: int) -> str:
    """Say how many candidates became tasks, and the share in the first and last blocks."""
    total, kept = acceptance.total, sum(acceptance.accepted)
    if not total:
        return "no candidate instruction in the committed rounds"
    points = acceptance_curve(acceptance, block)
    text = f"{kept:,} of {total:,} candidates accepted ({kept / total:.1%})"
    if len(points) > 1:
        text += (
            f"; {points[0][1]:.0%} of the first {block:,}, {points[-1][1]:.0%} of the "
            f"{block:,} up to candidate {points[-1][0]:,}"
        )
    return text


ACCEPTANCE_RULE = (
    "A candidate is an instruction the teacher proposed: one rejected before the novelty "
    "index (by a filter, as a near duplicate, or unparsed) or one admitted to it, whose task "
    "was kept or dropped later; accepted means in the pool. Rounds record no order between "
    "their candidates, so a round's acceptances are spread evenly over its candidates. A "
    "falling curve is a saturating pool: ever more of what the teacher proposes is already "
    "there."
)
LENGTHS_RULE = (
    "Each curve is the share of its set's texts at each length, so sets of any size compare. "
    "The axes end at the highest of the sets' 99th percentiles; longer texts are counted in "
    "the last bin. Words are counted as the length filters count them; inputs are the "
    "non-empty ones."
)


def measures_section(measured: RunMeasures, pngs: Mapping[str, bytes], block: int) -> str:
    """Lay out a run's measures: the table, its notes, lengths, acceptance and the judge."""
    columns = [measured.seeds, *measured.samples, measured.everything]
    sizes = [c.size for c in measured.samples if c.size is not None]
    parts = [
        "<h2>Quality and diversity: seeds beside generated tasks</h2>",
        measures_table(columns, measured.language),
        measures_notes([measured], sizes, measured.semantic_missing),
        draw.img(
            "measured_lengths",
            pngs["measured_lengths"],
            "length distributions of seeds and generated tasks",
            "Lengths of instructions, non-empty inputs and outputs: seeds beside generated "
            f"tasks, in words (top) and characters (bottom). {LENGTHS_RULE}",
        ),
        draw.img(
            "acceptance",
            pngs["acceptance"],
            "acceptance rate over the run",
            f"The share of each block of {block:,} candidate instructions that became tasks: "
            f"{html.escape(acceptance_text(measured.acceptance, block))}. {ACCEPTANCE_RULE}",
        ),
    ]
    if measured.judge is not None and "judge" in pngs:
        parts += judge_section({"generated": measured.judge}, pngs["judge"])
    return "\n".join(parts)


def judge_section(stats: Mapping[str, JudgeStats], figure: bytes) -> list[str]:
    """Lay out the judge's score histogram and, per run, its lowest-scored tasks."""
    parts = [
        "<h2>The judge's scores</h2>",
        draw.img(
            "judge",
            figure,
            "histogram of judge scores",
            "The score the judge gave each task it rated, 1 (unusable) to 5 (excellent); "
            "'no verdict' is a task whose rating did not parse.",
        ),
    ]
    for label, s in stats.items():
        heading = f"{len(s.lowest)} lowest-scored tasks" + (
            f" of {html.escape(label)}" if len(stats) > 1 else ""
        )
        parts += [f"<h3>{heading}</h3>", lowest_table(s)]
    return parts
