"""The report's comparable measures: distinct-n, compression, samples, language, yield, judge.

Pure measures are checked on inputs small enough to count by hand; the pages are made from
real runs of the synthetic teachers through the CLI, and opened in headless Chromium.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from browser import check_page, find_chromium
from conftest import bootstrap_args, run_cli
from rouge_score import tokenize as rouge_tokenize

from selfinstruct.records import Instance, Judgement, Task
from selfinstruct.report import FIGURES, build_report, load_run
from selfinstruct.report.measures import (
    Acceptance,
    acceptance_bin,
    acceptance_by_round,
    acceptance_curve,
    compression_ratio,
    distinct_n,
    in_language,
    judge_stats,
    language_share,
    mean_pairwise_cosine,
    measure,
    sample_tasks,
)
from selfinstruct.report.quality import judge_section, plot_judge
from selfinstruct.testing.server import OpenAITestServer, RecordedRequest, Reply
from selfinstruct.testing.teacher import SyntheticTeacher
from selfinstruct.testing.teacher_zh import ChineseSyntheticTeacher

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CJK = re.compile(r"[\u4e00-\u9fff]")
CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (apt-get install -y chromium)"
)


def _task(n: int, instruction: str, *outputs: str, judge: Judgement | None = None) -> Task:
    return Task(
        id=f"task_{n:03d}",
        instruction=instruction,
        instances=[Instance(input="", output=o) for o in outputs or ("ok",)],
        is_classification=False,
        round=0,
        seq=n,
        judge=judge,
    )


# -- the measures, by hand ---------------------------------------------------------------------


def test_distinct_n_counts_within_texts_over_the_whole_set() -> None:
    tokens = [["the", "cat", "sat"], ["the", "cat", "ran"]]
    assert distinct_n(tokens, 1) == 4 / 6  # the, cat, sat, ran of six
    assert distinct_n(tokens, 2) == 3 / 4  # (the cat) twice, (cat sat), (cat ran)
    # No n-gram crosses two texts: (b, c) is not one.
    assert distinct_n([["a", "b"], ["c", "d"]], 2) == 1.0
    assert distinct_n([["a"], []], 2) is None and distinct_n([], 1) is None


def test_measure_tokenizes_as_the_runs_rouge_filter() -> None:
    tasks = [_task(0, "The cat sat."), _task(1, "the CAT ran!")]
    english = measure(tasks, "rouge", "en")
    assert (english.distinct_1, english.distinct_2) == (4 / 6, 3 / 4)
    chinese = [_task(0, "我爱猫。"), _task(1, "我爱狗。")]
    by_character = measure(chinese, "unicode", "zh")
    assert (by_character.distinct_1, by_character.distinct_2) == (4 / 6, 3 / 4)
    # rouge-score's tokenizer keeps ASCII only: a Chinese run measured with it has no tokens.
    assert measure(chinese, "rouge", "zh").distinct_1 is None
    assert by_character.language_instructions == 1.0 and english.language_instructions == 1.0


def test_compression_ratio_is_utf8_size_over_gzip_size() -> None:
    texts = ["Write a poem about the sea.", "List three facts about honeybees."]
    data = "\n".join(texts).encode("utf-8")
    # Level 9, no timestamp: the same bytes, hence the same value, on every machine.
    assert compression_ratio(texts) == len(data) / len(gzip.compress(data, 9, mtime=0))
    assert compression_ratio(texts) == compression_ratio(list(texts))
    # 58 bytes compress to more than 58 (gzip's 18 bytes of header and trailer): below 1.
    assert compression_ratio(texts) < 1
    same = ["Write a poem about the sea."] * 200
    varied = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(200)]
    assert compression_ratio(same) > 50 > compression_ratio(varied)  # type: ignore[operator]
    assert compression_ratio([]) is None and compression_ratio([""]) is None


def test_samples_are_deterministic_nested_and_blind_to_pool_order() -> None:
    tasks = [_task(i, f"Instruction number {i} about something.") for i in range(50)]
    small, large = sample_tasks(tasks, 10), sample_tasks(tasks, 20)
    assert len(small) == 10 and small == large[:10]
    assert sample_tasks(list(reversed(tasks)), 10) == small
    # Chosen by the instruction's SHA-256, lowest first.
    digests = sorted(hashlib.sha256(t.instruction.encode()).hexdigest() for t in tasks)
    assert [hashlib.sha256(t.instruction.encode()).hexdigest() for t in small] == digests[:10]
    assert len(sample_tasks(tasks, 1000)) == 50


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("Write a poem about the sea.", "en", True),
        ("写一首关于秋天的诗。", "zh", True),
        ("写一首关于秋天的诗。", "en", False),
        ("Python里的列表和元组有什么区别？", "zh", True),  # 1 Latin word, 12 Han characters
        ("Write a poem about 春天 please.", "zh", False),  # 2 Han of 7 tokens
        ("Écris un poème sur la mer.", "en", True),  # scripts, not languages
        ("Напиши стихотворение о море.", "en", False),
        ("12345 + 678", "en", None),  # no letter: not counted either way
        ("", "zh", None),
    ],
)
def test_language_rule(text: str, language: str, expected: bool | None) -> None:
    assert in_language(text, language) is expected


def test_language_share_leaves_out_texts_without_a_letter() -> None:
    texts = ["写一首诗。", "Write a poem now.", "翻译这句话。", "42"]
    assert language_share(texts, "zh") == 2 / 3
    assert language_share(["42"], "zh") is None


def test_mean_pairwise_cosine_by_hand() -> None:
    # Pairs: (a, b) 0, (a, c) 1, (b, c) 0: mean 1/3.
    assert mean_pairwise_cosine([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]) == pytest.approx(1 / 3)
    # Rows are normalised first: only directions count.
    assert mean_pairwise_cosine([[2.0, 0.0], [3.0, 0.0]]) == pytest.approx(1.0)
    assert mean_pairwise_cosine([[1.0, 1.0], [-1.0, -1.0]]) == pytest.approx(-1.0)
    assert mean_pairwise_cosine([[1.0, 0.0]]) is None


def test_acceptance_counts_candidates_from_rejections_and_pool() -> None:
    rejections = [
        {"round": 0, "stage": "instructions", "reason": "near_duplicate"},
        {"round": 0, "stage": "instructions", "reason": "too_short"},
        {"round": 0, "stage": "instructions", "reason": "teacher_refused"},  # a request
        # Admitted to the novelty index, dropped later: a candidate, not accepted.
        {"round": 1, "stage": "instances", "reason": "no_instances", "seq": 7},
        # One instance of a task that is in the pool: not another candidate.
        {"round": 1, "stage": "instances", "reason": "empty_output", "seq": 8},
    ]
    pool = [
        _task(5, "A kept task of round zero.").model_copy(update={"round": 0}),
        _task(8, "A kept task of round one.").model_copy(update={"round": 1}),
    ]
    assert acceptance_by_round(rejections, pool, 2) == Acceptance([3, 2], [1, 1])


def test_acceptance_curve_spreads_a_round_over_its_candidates() -> None:
    acceptance = Acceptance(candidates=[10, 0, 10, 3], accepted=[5, 0, 0, 3])
    # Round 0: 5 of 10 kept, so each block of 5 keeps 2.5; round 2 keeps none; round 3's
    # three candidates make no whole block and are not drawn.
    assert acceptance_curve(acceptance, 5) == [(5, 0.5), (10, 0.5), (15, 0.0), (20, 0.0)]
    # A block that splits a round gets its share pro rata: 4 of round 0, 2 of round 2.
    assert acceptance_curve(Acceptance([4, 4], [4, 0]), 3) == [
        (3, 1.0),
        (6, pytest.approx(1 / 3)),
    ]


@pytest.mark.parametrize(
    ("total", "size"), [(0, 10), (99, 10), (250, 20), (1_000, 100), (9_999, 500), (52_000, 1_000)]
)
def test_acceptance_block_gives_ten_points_or_blocks_of_a_thousand(total: int, size: int) -> None:
    assert acceptance_bin(total) == size


def test_judge_stats_count_scores_and_list_the_lowest_by_pool_order() -> None:
    def judged(n: int, score: int | None) -> Task:
        return _task(n, f"Task {n} to rate.", judge=Judgement(score=score, reason=f"r{n}",
                                                             model="judge"))  # fmt: skip

    assert judge_stats([_task(0, "Never judged.")]) is None
    tasks = [judged(0, 4), judged(1, 2), judged(2, None), judged(3, 2), judged(4, 1)]
    tasks.append(_task(5, "Not judged."))
    stats = judge_stats(tasks, lowest=3)
    assert stats is not None and stats.judged == 5
    assert stats.counts == {1: 1, 2: 2, 3: 0, 4: 1, 5: 0, None: 1}
    assert [t.seq for t in stats.lowest] == [4, 1, 3]  # score, then seq; unparsed left out


def test_measure_figures_draw_with_no_data() -> None:
    from selfinstruct.report.measures import length_sample
    from selfinstruct.report.quality import plot_acceptance, plot_length_distributions

    empty = length_sample([], english=True)
    no_inputs = length_sample([_task(0, "Only outputs here.", "x" * 1_000_000)], english=True)
    pngs = [
        plot_length_distributions({"seeds": empty, "generated": empty}),
        plot_length_distributions({"seeds": no_inputs, "generated $x$": empty}),
        plot_acceptance({}, 10),
        plot_acceptance({"a": [], "b": []}, 10),
    ]
    assert all(png.startswith(PNG_MAGIC) for png in pngs)
    assert measure([], "rouge", "en").distinct_1 is None


# -- rendering the judge's section ------------------------------------------------------------


def test_judge_section_lists_the_lowest_with_reasons_escaped() -> None:
    hostile = "<script>alert(1)</script> cost $\\frac{a}{b}$ " + "z" * 2_000 + "\x00"
    reasons = {0: hostile, 10: "rings a bell\x07 twice"}
    tasks = [
        _task(n, f"Instruction {n} for the judge.", judge=Judgement(
            score=1 + n % 5, reason=reasons.get(n, f"reason {n}"), model="judge-model"))
        for n in range(30)
    ]  # fmt: skip
    stats = judge_stats(tasks)
    assert stats is not None
    png = plot_judge({"generated": stats, "other $run$": stats})
    assert png.startswith(PNG_MAGIC)
    page = "\n".join(judge_section({"generated": stats}, png))
    rows = page.split('<th class="text">judge&#x27;s reason</th></tr>', 1)[1]
    shown = re.findall(r"<td>(task_\d+)</td>", rows)
    # Scores are 1 + n % 5: tasks 0, 5, .., 25 score 1, then 1, 6, 11, 16 lead those at 2.
    assert shown == [f"task_{n:03d}" for n in (0, 5, 10, 15, 20, 25, 1, 6, 11, 16)]
    assert "reason 5" in rows and "reason 16" in rows
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "\x00" not in page and "\\x00" not in page  # cut before it: a cell holds 400
    assert "\x07" not in page and "rings a bell\\x07 twice" in page  # shown as its escape
    assert "z" * 300 in page and "z" * 400 not in page


# -- the report of real runs ------------------------------------------------------------------


def _bootstrap(
    out: Path, target: int, *extra: str, teacher: Callable[[RecordedRequest], Reply] | None = None
) -> None:
    with OpenAITestServer(teacher or SyntheticTeacher()) as server:
        done = run_cli(*bootstrap_args(server, out, "--target", str(target), *extra))
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """Grow two runs of different sizes and seeds, once for this module."""
    base = tmp_path_factory.mktemp("measures")
    _bootstrap(base / "small" / "run", 40)
    _bootstrap(base / "large" / "run", 90, "--seed", "7")
    yield base / "small" / "run", base / "large" / "run"


def _table_cells(page: str, measure_name: str) -> list[str]:
    row = re.search(rf"<tr><td>{re.escape(html.escape(measure_name))}</td>(.*?)</tr>", page)
    assert row is not None, measure_name
    return re.findall(r'<td class="n">([^<]*)</td>', row.group(1))


def test_report_shows_measures_of_seeds_and_fixed_samples(
    runs: tuple[Path, Path], tmp_path: Path
) -> None:
    run = runs[0]
    done = run_cli("report", str(run), "-o", str(tmp_path / "rep"), "--parser", "heuristic")
    assert done.returncode == 0, done.stderr
    assert f"and {len(FIGURES)} PNGs" in done.stdout
    page = (tmp_path / "rep" / "report.html").read_text()
    for name in ("measured_lengths", "acceptance"):
        assert f'<figure id="{name}">' in page
        assert (tmp_path / "rep" / f"{name}.png").read_bytes().startswith(PNG_MAGIC)
    data = load_run(run)
    n = len(data.pool)
    heads = re.findall(r"<th class=\"n\">([^<]*)</th>", page.split("<h2>Quality", 1)[1])[:4]
    assert heads == ["seeds (175)", "sample of 175", "sample of 1,000", f"all {n}"]
    assert _table_cells(page, "tasks measured") == ["175", f"{n} (short)", f"{n} (short)", str(n)]
    # Distinct-1 of the seed instructions, counted with rouge-score's own tokenizer (the
    # run's ROUGE filter reproduces it): the table shows the same value.
    tokens = [rouge_tokenize.tokenize(t, None) for t in data.seeds]
    flat = [tok for ts in tokens for tok in ts]
    assert (
        _table_cells(page, "distinct-1 of instructions")[0] == f"{len(set(flat)) / len(flat):.3f}"
    )
    bigrams = [tuple(ts[i : i + 2]) for ts in tokens for i in range(len(ts) - 1)]
    expected_d2 = f"{len(set(bigrams)) / len(bigrams):.3f}"
    assert _table_cells(page, "distinct-2 of instructions")[0] == expected_d2
    joined = "\n".join(t.instruction for t in data.pool).encode()
    ratio = len(joined) / len(gzip.compress(joined, 9, mtime=0))
    assert _table_cells(page, "compression ratio of instructions (gzip)")[3] == f"{ratio:.2f}"
    assert _table_cells(page, "instructions in Latin script (en)") == ["100.0%"] * 4
    assert "fixed-size samples of 175 and 1,000 tasks" in page
    assert "asked for more tasks than the run has" in page
    assert "candidates accepted" in page
    assert "<h2>The judge" not in page  # no task carries a judgement


def test_embedding_similarity_or_a_line_saying_it_is_missing(
    runs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from selfinstruct import semantic

    run = runs[0]
    if semantic.available():
        result = build_report(run, tmp_path / "with", parser="heuristic")
        assert result.measures is not None
        cosine = result.measures.seeds.cosine
        assert cosine is not None
        # The mean over every pair of seeds, by brute force over the same model's vectors.
        import numpy as np

        vectors = semantic.Embedder().embed(load_run(run).seeds)
        sims = vectors @ vectors.T
        n = len(vectors)
        brute = (sims.sum() - np.trace(sims)) / (n * (n - 1))
        assert cosine == pytest.approx(float(brute), abs=1e-4)
        page = result.html.read_text()
        assert _table_cells(page, "mean pairwise cosine of instructions")[0] == f"{cosine:.3f}"
        assert "embedded with all-MiniLM-L6-v2" in page
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as when the extra is absent
    result = build_report(run, tmp_path / "without", parser="heuristic")
    page = result.html.read_text()
    assert "Mean pairwise embedding similarity: not measured: the [semantic] extra is not " in (
        page
    )
    assert _table_cells(page, "mean pairwise cosine of instructions") == ["—"] * 4


def _with_judgements(run: Path) -> list[Task]:
    """Write judgements into a run's pool as the judge stage stores them (Task.judge)."""
    tasks = load_run(run).pool
    judged = [
        t.model_copy(
            update={"judge": Judgement(score=1 + i % 5, reason=f"why {t.id}", model="judge")}
        )
        for i, t in enumerate(tasks)
    ]
    pool = b"".join(t.model_dump_json().encode() + b"\n" for t in judged)
    (run / "pool.jsonl").write_bytes(pool)
    state = json.loads((run / "state.json").read_bytes())
    state["pool_bytes"] = len(pool)
    (run / "state.json").write_text(json.dumps(state))
    return judged


def test_report_of_a_judged_pool_has_the_judge_section(
    runs: tuple[Path, Path], tmp_path: Path
) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs[0], run)
    judged = _with_judgements(run)
    result = build_report(run, tmp_path / "rep", parser="heuristic")
    page = result.html.read_text()
    assert '<figure id="judge">' in page and (tmp_path / "rep" / "judge.png").exists()
    assert "<h3>10 lowest-scored tasks</h3>" in page
    lowest = sorted(judged, key=lambda t: (t.judge.score if t.judge else 0, t.seq or 0))[:10]
    for task in lowest:
        assert f"<td>{task.id}</td>" in page and f"why {task.id}" in page
    mean = sum(t.judge.score for t in judged if t.judge and t.judge.score) / len(judged)
    cells = _table_cells(page, "judge: mean score (tasks judged)")
    assert cells[3] == f"{mean:.2f} ({len(judged)})"


@pytest.fixture(scope="module")
def drifting_zh_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Grow a Chinese run whose teacher writes every other listed instruction in English."""
    teacher = ChineseSyntheticTeacher()

    def handler(request: RecordedRequest) -> Reply:
        reply = teacher(request)
        prompt = request.prompt
        if prompt.endswith("Classification:") or (prompt.endswith("\n") and "Task:" in prompt):
            return reply
        lines = reply.text.split("\n")
        for i, line in enumerate(lines):
            item = re.match(r"(\d+)\. ", line)
            if item and int(item.group(1)) % 2:
                words = hashlib.sha256(line.encode()).hexdigest()
                made_up = " ".join(words[k : k + 6] for k in range(0, 30, 6))
                lines[i] = f"{item.group(0)}Explain {made_up} for a curious student."
        return Reply(text="\n".join(lines))

    out = tmp_path_factory.mktemp("zh") / "run"
    _bootstrap(out, 40, "--language", "zh", teacher=handler)
    return out


def test_chinese_run_is_measured_with_its_tokenizer_and_shows_its_drift(
    drifting_zh_run: Path, tmp_path: Path
) -> None:
    from selfinstruct.similarity import tokenize

    result = build_report(drifting_zh_run, tmp_path / "rep")
    page = result.html.read_text(encoding="utf-8")
    data = load_run(drifting_zh_run)
    assert data.header["config"]["filters"]["tokenizer"] == "unicode"
    english = [t for t in data.pool if not CJK.search(t.instruction)]
    assert 0 < len(english) < len(data.pool)  # the drift reached the pool
    share = 1 - len(english) / len(data.pool)
    cells = _table_cells(page, "instructions in Han script (zh)")
    assert cells[0] == "100.0%"  # the Chinese seeds
    assert cells[3] == f"{share:.1%}"
    # Distinct-1 of all generated instructions, each CJK character a token, as the run's
    # ROUGE filter split them.
    tokens = [tok for t in data.pool for tok in tokenize(t.instruction, "unicode")]
    assert _table_cells(page, "distinct-1 of instructions")[3] == (
        f"{len(set(tokens)) / len(tokens):.3f}"
    )
    assert "the unicode tokenizer (NFKC" in page


# -- two runs side by side --------------------------------------------------------------------


def test_compare_puts_two_runs_side_by_side(runs: tuple[Path, Path], tmp_path: Path) -> None:
    small, large = runs
    out = tmp_path / "cmp"
    done = run_cli("report", "--compare", str(small), str(large), "-o", str(out),
                   "--price-in", "1", "--price-out", "2")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"wrote {out / 'compare.html'} and 2 PNGs" in done.stdout
    page = (out / "compare.html").read_text()
    # Both runs are named run: their parents tell them apart.
    assert "A: small/run" in page and "B: large/run" in page
    a, b = load_run(small), load_run(large)
    summary = page.split("</table>", 1)[0]
    assert f"<td>{len(a.pool)} / " in summary and f"<td>{len(b.pool)} / " in summary
    assert summary.count("USD at 1 / 2 per M tokens") == 2
    heads = re.findall(r"<th class=\"n\">([^<]*)</th>", page.split("<h2>Quality", 1)[1])[:7]
    assert heads == [
        "seeds (both runs)",
        "A: small/run, sample of 175",
        "B: large/run, sample of 175",
        "A: small/run, sample of 1,000",
        "B: large/run, sample of 1,000",
        f"A: small/run, all {len(a.pool)}",
        f"B: large/run, all {len(b.pool)}",
    ]
    for name in ("lengths", "acceptance"):
        assert f'<figure id="{name}">' in page
        assert (out / f"{name}.png").read_bytes().startswith(PNG_MAGIC)
    assert "near_duplicate (instructions)" in page
    assert html.escape("per 1,000 candidates") in page
    # Without -o the page goes beside RUN_A's report, and the CLI says where.
    done = run_cli("report", "--compare", str(small), str(large))
    assert done.returncode == 0, done.stderr
    where = small / "report" / "compare-run" / "compare.html"
    assert f"wrote {where} and 2 PNGs" in done.stdout and where.is_file()


def test_compare_errors_say_which_run(runs: tuple[Path, Path], tmp_path: Path) -> None:
    small, _ = runs
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    cases = [
        ((str(small), str(tmp_path / "missing")), "--compare RUN_B: ", "not a run directory"),
        ((str(tmp_path / "empty"), str(small)), "--compare RUN_A: ", "not a run directory"),
        ((str(small), str(broken)), "--compare RUN_B: ", "unreadable; not a run directory"),
    ]
    for pair, which, why in cases:
        done = run_cli("report", "--compare", *pair, "-o", str(tmp_path / "out"))
        assert done.returncode == 1, pair
        assert which in done.stderr and why in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()  # nothing written for a failed comparison
    done = run_cli("report", str(small), "--compare", str(small), str(small))
    assert done.returncode == 1 and "not both" in done.stderr


@needs_chromium
def test_report_and_comparison_render_in_headless_chromium(
    runs: tuple[Path, Path], tmp_path: Path
) -> None:
    from selfinstruct.report.compare import build_comparison

    assert CHROMIUM is not None
    pages = [
        build_report(runs[1], tmp_path / "rep", parser="heuristic").html,
        build_comparison(runs[0], runs[1], tmp_path / "cmp").html,
    ]
    for page in pages:
        checked = check_page(CHROMIUM, page)
        assert checked.loaded and checked.errors == []
        assert checked.images and all(
            img["complete"] and img["width"] > 300 and img["height"] > 300 for img in checked.images
        )


def test_compare_runs_in_two_languages_keeps_each_runs_seeds_and_script(
    runs: tuple[Path, Path], drifting_zh_run: Path, tmp_path: Path
) -> None:
    from selfinstruct.report.compare import build_comparison

    result = build_comparison(runs[0], drifting_zh_run, tmp_path / "cmp")
    page = result.html.read_text(encoding="utf-8")
    heads = re.findall(r"<th class=\"n\">([^<]*)</th>", page.split("<h2>Quality", 1)[1])
    zh_seeds = len(load_run(drifting_zh_run).seeds)
    b = f"B: {drifting_zh_run.parent.name}/run"
    assert heads[:2] == ["A: small/run, seeds (175)", f"{b}, seeds ({zh_seeds})"]
    # Both runs are sampled at the smaller seed count, so those columns compare.
    assert heads[2:4] == [f"A: small/run, sample of {zh_seeds}", f"{b}, sample of {zh_seeds}"]
    # Each run's share is of its own language's script: English seeds and Chinese seeds 100%.
    cells = _table_cells(page, "instructions in the run's own script (en Latin, zh Han)")
    assert cells[:2] == ["100.0%", "100.0%"]
