"""Put two runs side by side on one page: counts, cost, measures and overlaid figures.

Both runs are measured on samples of the same fixed sizes (the smaller seed count, and
1,000), so their diversity columns compare even when one run is ten times the other.
Expensive figures of the one-run report (the verb parse, the ROUGE-L replay) are left out:
open each run's own report for them.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from selfinstruct import __version__
from selfinstruct.costs import (
    batch_usage,
    choose_price,
    price_usage,
    stored_prices,
    stored_stage_prices,
)
from selfinstruct.errors import ConfigError, RunDirError
from selfinstruct.report import draw
from selfinstruct.report.load import Progress, RunData, load_run
from selfinstruct.report.measures import acceptance_bin, acceptance_curve
from selfinstruct.report.quality import (
    ACCEPTANCE_RULE,
    LENGTHS_RULE,
    Column,
    RunMeasures,
    acceptance_text,
    judge_section,
    measure_run,
    measures_notes,
    measures_rows,
    plot_acceptance,
    plot_judge,
    plot_length_distributions,
    sample_sizes,
)
from selfinstruct.report.stats import rejection_label, stage_totals

COMPARE_FIGURES = ("lengths", "acceptance")  # and "judge" when either run was judged


@dataclass(frozen=True)
class ComparisonResult:
    """What `build_comparison` wrote."""

    html: Path
    pngs: list[Path]
    measures: tuple[RunMeasures, RunMeasures]


def default_output(run_a: Path, run_b: Path) -> Path:
    """Return where a comparison goes unless told: RUN_A/report/compare-<RUN_B's name>."""
    return run_a / "report" / f"compare-{run_b.resolve().name or 'run'}"


def _load(run: Path, which: str, seeds: Path | None) -> RunData:
    """Load one run of a comparison; an error names which of the two it is about."""
    try:
        return load_run(run, seeds)
    except RunDirError as exc:
        raise RunDirError(f"--compare {which}: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"--compare {which}: {exc}") from None


def _labels(a: Path, b: Path) -> tuple[str, str]:
    name_a, name_b = a.resolve().name, b.resolve().name
    if name_a == name_b:  # outputs/x/run and outputs/y/run: the parent tells them apart
        name_a, name_b = (
            f"{a.resolve().parent.name}/{name_a}",
            f"{b.resolve().parent.name}/{name_b}",
        )
    return f"A: {name_a}", f"B: {name_b}"


def build_comparison(
    run_a: Path,
    run_b: Path,
    output: Path | None = None,
    *,
    price: tuple[float, float] | None = None,
    progress: Progress | None = None,
) -> ComparisonResult:
    """Write compare.html and its PNGs for two runs into `output` (see `default_output`).

    `price` (USD per million prompt and completion tokens) prices both runs; by default
    each run is priced as its own report prices it.
    """
    draw.figure(1, 1)  # fail on a missing matplotlib before any slow work
    data = (_load(run_a, "RUN_A", None), _load(run_b, "RUN_B", None))
    labels = _labels(run_a, run_b)
    sizes = sample_sizes(min(len(d.seeds) for d in data))
    measured = (
        measure_run(data[0], sizes, label=labels[0], progress=progress),
        measure_run(data[1], sizes, label=labels[1], progress=progress),
    )
    same_seeds = data[0].seeds == data[1].seeds
    groups = (
        {"seeds": measured[0].lengths["seeds"]}
        if same_seeds
        else {f"seeds of {labels[0]}": measured[0].lengths["seeds"],
              f"seeds of {labels[1]}": measured[1].lengths["seeds"]}
    )  # fmt: skip
    groups |= {m.label: m.lengths["generated"] for m in measured}
    block = acceptance_bin(min(m.acceptance.total for m in measured))
    pngs = {
        "lengths": plot_length_distributions(groups),
        "acceptance": plot_acceptance(
            {m.label: acceptance_curve(m.acceptance, block) for m in measured}, block
        ),
    }
    judged = {m.label: m.judge for m in measured if m.judge is not None}
    if judged:
        pngs["judge"] = plot_judge(judged)
    page = _page(data, labels, measured, sizes, same_seeds, block, pngs, price)
    out_dir = output if output is not None else default_output(run_a, run_b)
    html_path, paths = draw.write_page(out_dir, "compare.html", page, pngs)
    return ComparisonResult(html_path, paths, measured)


def _cost(data: RunData, price: tuple[float, float] | None) -> str:
    """Price a run as its report does: the given price, else the run's own or a known one."""
    chosen = choose_price(data.model, price or (None, None), stored_prices(data.path))
    table = price_usage(
        stage_totals(data.responses),
        batch_usage(data.path),
        chosen,
        stored_stage_prices(data.path),
    )
    if table.total_usd is None or chosen is None:
        return "unknown (no price for this model: pass --price-in and --price-out)"
    per_k = f"; {table.total_usd / len(data.pool) * 1000:.2f} per 1000 tasks" if data.pool else ""
    return f"{table.total_usd:.2f} USD at {chosen[0]:g} / {chosen[1]:g} per M tokens{per_k}"


def _summary(
    data: tuple[RunData, RunData], measured: tuple[RunMeasures, RunMeasures],
    price: tuple[float, float] | None,
) -> list[tuple[str, str, str]]:  # fmt: skip
    rows: list[tuple[str, Callable[[RunData, RunMeasures], object]]] = [
        ("run directory", lambda d, m: d.path),
        ("teacher", lambda d, m: f"{d.model} ({d.header['config']['teacher']['api']} API)"),
        ("mode", lambda d, m: d.header["config"]["mode"]),
        ("language", lambda d, m: d.language),
        (
            "tasks / instances",
            lambda d, m: f"{len(d.pool):,} / {sum(len(t.instances) for t in d.pool):,}",
        ),
        ("committed rounds", lambda d, m: f"{d.rounds:,}"),
        ("candidate instructions", lambda d, m: f"{m.acceptance.total:,}"),
        (
            "accepted",
            lambda d, m: (
                f"{sum(m.acceptance.accepted) / m.acceptance.total:.1%}"
                if m.acceptance.total
                else "—"
            ),
        ),
        ("rejections", lambda d, m: f"{len(d.rejections):,}"),
        ("teacher requests", lambda d, m: f"{len(d.responses):,}"),
        (
            "tokens (prompt / completion)",
            lambda d, m: f"{sum(r[2] for r in d.responses):,} / {sum(r[3] for r in d.responses):,}",
        ),
        ("cost", lambda d, m: _cost(d, price)),
    ]
    return [
        (name, str(fn(data[0], measured[0])), str(fn(data[1], measured[1]))) for name, fn in rows
    ]


def _reasons(data: tuple[RunData, RunData], measured: tuple[RunMeasures, RunMeasures]) -> list[
    tuple[str, str, str, str, str]
]:  # fmt: skip
    counts: list[dict[str, int]] = []
    for d in data:
        c: dict[str, int] = {}
        for entry in d.rejections:
            label = rejection_label(entry)
            c[label] = c.get(label, 0) + 1
        counts.append(c)
    labels = sorted(
        set(counts[0]) | set(counts[1]), key=lambda k: (-sum(c.get(k, 0) for c in counts), k)
    )

    def per_k(n: int, m: RunMeasures) -> str:
        return f"{n / m.acceptance.total * 1000:.1f}" if m.acceptance.total else "—"

    return [
        (
            label,
            f"{counts[0].get(label, 0):,}",
            per_k(counts[0].get(label, 0), measured[0]),
            f"{counts[1].get(label, 0):,}",
            per_k(counts[1].get(label, 0), measured[1]),
        )
        for label in labels
    ]


def _columns(measured: tuple[RunMeasures, RunMeasures], same_seeds: bool) -> list[Column]:
    """Order the measures columns so that what compares sits side by side."""
    a, b = measured
    columns: list[Column] = []
    if same_seeds:
        columns.append(Column("seeds (both runs)", a.seeds.measures, a.seeds.cosine))
    else:
        columns += [_named(a.seeds, a.label), _named(b.seeds, b.label)]
    for sa, sb in zip(a.samples, b.samples, strict=True):
        columns += [_named(sa, a.label), _named(sb, b.label)]
    columns += [_named(a.everything, a.label), _named(b.everything, b.label)]
    return columns


def _named(column: Column, label: str) -> Column:
    return Column(f"{label}, {column.head}", column.measures, column.cosine, column.size)


def _page(
    data: tuple[RunData, RunData],
    labels: tuple[str, str],
    measured: tuple[RunMeasures, RunMeasures],
    sizes: Sequence[int],
    same_seeds: bool,
    block: int,
    pngs: dict[str, bytes],
    price: tuple[float, float] | None,
) -> str:
    columns = _columns(measured, same_seeds)
    languages = {m.language for m in measured}
    language = languages.pop() if len(languages) == 1 else None
    missing = next((m.semantic_missing for m in measured if m.semantic_missing), None)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = f"selfinstruct comparison: {labels[0]} vs {labels[1]}"
    acceptance = "; ".join(
        f"{html.escape(m.label)}: {html.escape(acceptance_text(m.acceptance, block))}"
        for m in measured
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{draw.CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="sub">Generated {generated} by selfinstruct {html.escape(__version__)}; '
        "committed rounds only. Each run's own report (selfinstruct report RUN) has the verb "
        "and novelty figures.</p>",
        draw.table(("", *labels), _summary(data, measured, price), set()),
        "<h2>Quality and diversity, side by side</h2>",
        draw.table(
            ["measure", *(c.head for c in columns)],
            _language_rows(measures_rows(columns, language or "en"), language),
            set(range(1, len(columns) + 1)),
        ),
        measures_notes(measured, sizes, missing),
        draw.img(
            "lengths",
            pngs["lengths"],
            "length distributions of both runs",
            "Lengths of instructions, non-empty inputs and outputs of both runs"
            + (" and their seeds" if same_seeds else " and each run's seeds")
            + f", in words (top) and characters (bottom). {LENGTHS_RULE}",
        ),
        draw.img(
            "acceptance",
            pngs["acceptance"],
            "acceptance rate over both runs",
            f"The share of each block of {block:,} candidate instructions that became tasks "
            f"(one block size for both runs). {acceptance}. {ACCEPTANCE_RULE}",
        ),
        "<h2>Rejections</h2>",
        draw.table(
            (
                "reason (stage)",
                f"{labels[0]}",
                "per 1,000 candidates",
                f"{labels[1]}",
                "per 1,000 candidates",
            ),
            _reasons(data, measured),
            {1, 2, 3, 4},
        ),  # fmt: skip
    ]
    judged = {m.label: m.judge for m in measured if m.judge is not None}
    if judged and "judge" in pngs:
        parts += judge_section(judged, pngs["judge"])
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _language_rows(rows: list[list[str]], language: str | None) -> list[list[str]]:
    """Name the language rows for runs in two languages: each run's own script counts."""
    if language is not None:
        return rows
    for row in rows:
        if " script (" in row[0]:
            row[0] = row[0].split(" in ", 1)[0] + " in the run's own script (en Latin, zh Han)"
    return rows
