"""Lay out a run's report page and write it with its PNGs: `build_report`."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from selfinstruct import __version__
from selfinstruct.costs import (
    CostTable,
    batch_usage,
    choose_price,
    price_usage,
    stored_prices,
    stored_stage_prices,
    usd,
)
from selfinstruct.errors import ConfigError
from selfinstruct.report.draw import CSS as _CSS
from selfinstruct.report.draw import figure as _figure
from selfinstruct.report.draw import img as _img
from selfinstruct.report.draw import table as _table
from selfinstruct.report.draw import write_page
from selfinstruct.report.load import Progress, RunData, load_run
from selfinstruct.report.measures import acceptance_bin, acceptance_curve
from selfinstruct.report.plots import (
    Glyphs,
    _verb_labels,
    glyphs_for,
    plot_classification,
    plot_lengths,
    plot_rejections,
    plot_rouge,
    plot_usage,
    plot_verbs,
)
from selfinstruct.report.quality import (
    RunMeasures,
    measure_run,
    measures_section,
    plot_acceptance,
    plot_judge,
    plot_length_distributions,
    sample_sizes,
)
from selfinstruct.report.stats import (
    Lengths,
    accepted_by_round,
    classification_share,
    lengths,
    novelty_scores,
    rejections_by_round,
    stage_totals,
    usage_by_round,
)
from selfinstruct.report.verbs import (
    PARSERS,
    TOP_OBJECTS,
    ZH_HEURISTIC,
    ParserChoice,
    VerbStats,
    top_verb_objects,
    verb_objects,
)

FIGURES = (
    "measured_lengths",
    "acceptance",
    "verbs",
    "rouge",
    "lengths",
    "rejections",
    "usage",
    "classification",
)
OPTIONAL_FIGURES = ("judge",)  # drawn only when some task carries a judgement


_PARSER_NOTES = {
    "heuristic": " (a word heuristic: install the [report] extra for spaCy's parser).",
    ZH_HEURISTIC: (
        " (no spaCy Chinese pipeline installs from PyPI, so this is our own heuristic, not a "
        "parse: the first verb from our list of Chinese instruction verbs, after openers such "
        "as 请 and 帮我; its object is the noun phrase after it, or between 把/将 and it, "
        "taken after the last 的, or its last two characters when longer than three, so a "
        "longer noun is cut)."
    ),
}


def _glyph_note(glyphs: Glyphs) -> str:
    """Say how the verb figure drew words that matplotlib's default font lacks."""
    if not glyphs.missing:
        return ""
    if glyphs.font is not None:
        return f" Words the default font lacks are drawn in {html.escape(glyphs.font)}."
    return (
        " No installed font has these words' characters (for Chinese, install one such as "
        "Debian's fonts-noto-cjk), so the figure numbers the verbs by rank, as in the table "
        "below, and leaves the objects unlabelled."
    )


@dataclass
class ReportResult:
    """What `build_report` wrote and what it found."""

    html: Path
    pngs: list[Path]
    parser: str
    tasks: int
    scores: list[float] = field(default_factory=list)
    measures: RunMeasures | None = None


def build_report(
    run: Path,
    output: Path | None = None,
    *,
    parser: ParserChoice = "auto",
    seeds: Path | None = None,
    price: tuple[float, float] | None = None,
    progress: Progress | None = None,
) -> ReportResult:
    """Write report.html and the figures' PNGs for `run` into `output` (default RUN/report).

    `price` is (input, output) USD per million tokens; by default the known price of the
    run's model, if any. Only committed rounds are described, so a report of a run that is
    still going is consistent.
    """
    if parser not in PARSERS:
        raise ConfigError(
            f"--parser: unknown parser {parser!r} (choose from: {', '.join(PARSERS)})"
        )
    _figure(1, 1)  # fail on a missing matplotlib before any slow work
    data = load_run(run, seeds)
    out_dir = output if output is not None else run / "report"
    config = data.header["config"]
    threshold = float(config["filters"]["rouge_threshold"])
    tokenizer = config["filters"].get("tokenizer", "rouge")
    # Priced by costs.py, as budgets and status price it: Batch API answers at their price.
    price = choose_price(data.model, price or (None, None), stored_prices(run))
    table = price_usage(
        stage_totals(data.responses), batch_usage(run), price, stored_stage_prices(run)
    )
    list_price = usd(*_tokens_in_out(table), price) if price is not None else 0.0
    scale = (table.total_usd or 0.0) / list_price if list_price else 1.0
    pool = data.pool

    pairs, parser_used = verb_objects(
        [t.instruction for t in pool], parser, progress, language=data.language
    )
    verbs = top_verb_objects(pairs)
    glyphs = glyphs_for(_verb_labels(verbs))
    admitted = dict(data.admitted_rejected)
    admitted.update({t.seq: t.instruction for t in pool if t.seq is not None})
    wanted = {t.seq for t in pool if t.seq is not None}
    by_seq = novelty_scores(data.seeds, admitted, wanted, threshold, tokenizer, progress)
    scores = [by_seq[t.seq] for t in pool if t.seq is not None]
    word_counts = lengths(pool, english=data.language == "en")
    rejected = rejections_by_round(data.rejections, data.rounds)
    accepted = accepted_by_round(pool, data.rounds)
    usage_rounds, usage = usage_by_round(data.responses)
    share = classification_share(pool)

    measured = measure_run(data, sample_sizes(len(data.seeds)), progress=progress)
    block = acceptance_bin(measured.acceptance.total)
    pngs = {
        "measured_lengths": plot_length_distributions(measured.lengths),
        "acceptance": plot_acceptance(
            {"this run": acceptance_curve(measured.acceptance, block)}, block
        ),
        "verbs": plot_verbs(verbs, glyphs),
        "rouge": plot_rouge(scores, threshold),
        "lengths": plot_lengths(word_counts),
        "rejections": plot_rejections(rejected, accepted),
        "usage": plot_usage(usage_rounds, usage, accepted, price, scale),
        "classification": plot_classification(share),
    }
    if measured.judge is not None:
        pngs["judge"] = plot_judge({"generated": measured.judge})
    page = _page(
        data, parser_used, verbs, scores, threshold, word_counts, rejected, share, price, pngs,
        glyphs, measured, block,
    )  # fmt: skip
    html_path, paths = write_page(out_dir, "report.html", page, pngs)
    return ReportResult(html_path, paths, parser_used, len(pool), scores, measured)


def _tokens_in_out(table: CostTable) -> tuple[int, int]:
    """Return the prompt and completion tokens of every stage of a cost table."""
    stages = table.stages.values()
    return sum(s.prompt_tokens for s in stages), sum(s.completion_tokens for s in stages)


def _page(
    data: RunData,
    parser_used: str,
    verbs: VerbStats,
    scores: Sequence[float],
    threshold: float,
    sizes: Lengths,
    rejected: dict[str, list[int]],
    share: dict[str, int],
    price: tuple[float, float] | None,
    pngs: dict[str, bytes],
    glyphs: Glyphs,
    measured: RunMeasures,
    block: int,
) -> str:
    config = data.header["config"]
    pool = data.pool
    instances = sum(len(t.instances) for t in pool)
    totals = stage_totals(data.responses)
    tokens_in = sum(t.prompt_tokens for t in totals.values())
    tokens_out = sum(t.completion_tokens for t in totals.values())
    table = price_usage(totals, batch_usage(data.path), price, stored_stage_prices(data.path))
    spent = table.total_usd
    n_rejected = sum(sum(v) for v in rejected.values())
    mean_score = sum(scores) / len(scores) if scores else 0.0
    summary = [
        ("run directory", str(data.path)),
        ("teacher", f"{data.model} ({config['teacher']['api']} API)"),
        ("mode", config["mode"]),
        ("tasks / instances", f"{len(pool)} / {instances}"),
        ("committed rounds", data.rounds),
        ("rejected candidates", n_rejected),
        ("teacher requests", sum(t.requests for t in totals.values())),
        ("tokens (prompt / completion)", f"{tokens_in:,} / {tokens_out:,}"),
        (
            "cost",
            f"{spent:.2f} USD at {price[0]:g} / {price[1]:g} USD per million tokens"
            + (f" ({spent / len(pool) * 1000:.2f} USD per 1000 tasks)" if pool else "")
            if spent is not None and price is not None
            else "unknown: no price for this model (pass --price-in and --price-out)",
        ),
        ("verb/object parser", parser_used),
    ]
    shown = [
        (n, v, c, ", ".join(f"{o} ({k})" for o, k in objs))
        for n, (v, c, objs) in enumerate(verbs.top, start=1)
    ]
    reason_rows = [(label, sum(v)) for label, v in rejected.items()]
    stage_rows = [
        (
            stage,
            t.requests,
            f"{t.prompt_tokens:,}",
            f"{t.completion_tokens:,}",
            f"{table.stages[stage].usd or 0.0:.4f}" if price else "",
        )
        for stage, t in totals.items()
    ]
    above = sum(1 for s in scores if s > threshold)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = f"selfinstruct report: {data.path.name}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="sub">{len(pool)} tasks, generated {generated} by selfinstruct '
        f"{html.escape(__version__)}; committed rounds only.</p>",
        _table(("", ""), summary, set()),
        measures_section(measured, pngs, block),
        "<h2>Diversity: root verbs and their direct objects</h2>",
        _img(
            "verbs",
            pngs["verbs"],
            "verb and object sunburst",
            f"The {len(verbs.top)} most common verbs closest to the root of each instruction "
            f"(inner ring) and their {TOP_OBJECTS} most common direct objects (outer ring; the "
            f"blank rest of a verb's slice is its other objects), as in the Self-Instruct "
            f"paper's figure 2. {verbs.with_pair} of {verbs.total} instructions have such a "
            f"verb with a direct object. Parser: {html.escape(parser_used)}"
            + _PARSER_NOTES.get(parser_used, ".")
            + _glyph_note(glyphs),
        ),
        _table(("#", "verb", "tasks", "top objects"), shown, {0, 2}),
        "<h2>Novelty: highest ROUGE-L against the pool</h2>",
        _img(
            "rouge",
            pngs["rouge"],
            "ROUGE-L histogram",
            f"For each accepted task, the ROUGE-L F-measure of its instruction with the most "
            f"similar instruction in the pool when it was admitted (seeds and every earlier "
            f"admitted instruction). Mean {mean_score:.3f}; "
            + (
                f"none above the threshold {threshold:g}, as the novelty check ensures."
                if not above
                else f"{above} above the threshold {threshold:g}: the run's seeds or "
                "settings differ from those it was made with."
            ),
        ),
        "<h2>Lengths</h2>",
        _img(
            "lengths",
            pngs["lengths"],
            "length histograms",
            f"Words per instruction ({len(sizes.instructions)} tasks), per non-empty input and "
            f"per output ({len(sizes.outputs)} instances; {sizes.empty_inputs} have no input)"
            + (
                "."
                if data.language == "en"
                else ", counted as the length filters count them: each CJK character is a word."
            ),
        ),
        "<h2>Rejections over the run</h2>",
        _img(
            "rejections",
            pngs["rejections"],
            "rejections over rounds",
            "Every dropped candidate has a reason, written to rejected.jsonl. Left: running "
            "count per reason (stage in brackets); right: accepted tasks and rejections.",
        ),
        _table(("reason (stage)", "count"), reason_rows, {1}),
        "<h2>Tokens and cost over the run</h2>",
        _img(
            "usage",
            pngs["usage"],
            "tokens and cost over rounds",
            "Every logged teacher response, including those of rounds not yet committed.",
        ),
        _table(
            ("stage", "requests", "prompt tokens", "completion tokens", "cost USD"),
            stage_rows,
            {1, 2, 3, 4},
        ),
        '<h2>Classification share</h2><div class="grid">',
        _img(
            "classification",
            pngs["classification"],
            "classification share",
            "Tasks the teacher judged to be classification (their instances were generated "
            "output-first). Alpaca mode does not ask, so its tasks are 'not asked'.",
        ),
        _table(("kind", "tasks"), share.items(), {1}),
        "</div></body></html>",
    ]
    return "\n".join(parts) + "\n"
