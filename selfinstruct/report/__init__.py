"""Describe a run with statistics and plots: report.html plus one PNG per figure.

The figures follow the Self-Instruct paper's analysis of its data (Wang et al. 2023,
sec. 3.2 "Diversity" and fig. 2-4): the most common root verbs and their direct objects,
the distribution of each new instruction's highest ROUGE-L against the pool, and the
lengths of instructions, inputs and outputs; then what this tool logs: rejection reasons,
tokens and cost over the run, and the share of classification tasks. Measures that compare
across runs (distinct-n, compression, embedding similarity, language share, acceptance over
the run, the judge's scores) open the page; `compare.build_comparison` puts two runs on one.

Statistics are pure functions over records; matplotlib (the ``[report]`` extra) is
imported only to draw. The page embeds its PNGs as data URIs, so report.html alone opens
offline; the same PNGs are written beside it for slides and papers.

One job per module: ``load`` reads a run, ``verbs`` finds verbs and objects, ``stats`` and
``measures`` count, ``plots`` and ``quality`` draw, ``draw`` holds what every page shares,
``page`` lays out a run's report and ``compare`` two runs. This package re-exports the
names the report had when it was one module.
"""

from __future__ import annotations

from selfinstruct.report.draw import REPORT_INSTALL_HINT
from selfinstruct.report.load import (
    Progress,
    RunData,
    load_run,
)
from selfinstruct.report.page import (
    FIGURES,
    OPTIONAL_FIGURES,
    ReportResult,
    build_report,
)
from selfinstruct.report.plots import (
    LABEL_MAX_CHARS,
    Glyphs,
    glyphs_for,
    plot_classification,
    plot_lengths,
    plot_rejections,
    plot_rouge,
    plot_usage,
    plot_verbs,
)
from selfinstruct.report.stats import (
    Lengths,
    StageTotals,
    accepted_by_round,
    classification_share,
    lengths,
    novelty_scores,
    rejection_label,
    rejections_by_round,
    stage_totals,
    usage_by_round,
)
from selfinstruct.report.verbs import (
    PARSERS,
    SPACY_DATA_DIR,
    SPACY_DIST,
    SPACY_FILES,
    SPACY_MAX_CHARS,
    TOP_OBJECTS,
    TOP_VERBS,
    ZH_HEURISTIC,
    ParserChoice,
    VerbStats,
    _spacy_pipeline,
    check_spacy_data,
    heuristic_verb_object,
    heuristic_verb_object_zh,
    load_spacy_data,
    top_verb_objects,
    verb_objects,
)

__all__ = [
    "accepted_by_round",
    "build_report",
    "check_spacy_data",
    "classification_share",
    "FIGURES",
    "Glyphs",
    "glyphs_for",
    "heuristic_verb_object",
    "heuristic_verb_object_zh",
    "LABEL_MAX_CHARS",
    "Lengths",
    "lengths",
    "load_run",
    "load_spacy_data",
    "novelty_scores",
    "OPTIONAL_FIGURES",
    "ParserChoice",
    "PARSERS",
    "plot_classification",
    "plot_lengths",
    "plot_rejections",
    "plot_rouge",
    "plot_usage",
    "plot_verbs",
    "Progress",
    "rejection_label",
    "rejections_by_round",
    "REPORT_INSTALL_HINT",
    "ReportResult",
    "RunData",
    "SPACY_DATA_DIR",
    "SPACY_DIST",
    "SPACY_FILES",
    "SPACY_MAX_CHARS",
    "_spacy_pipeline",
    "stage_totals",
    "StageTotals",
    "TOP_OBJECTS",
    "top_verb_objects",
    "TOP_VERBS",
    "usage_by_round",
    "verb_objects",
    "VerbStats",
    "ZH_HEURISTIC",
]
