"""`selfinstruct seeds check`: validation errors and statistics of seed files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from conftest import REPO, run_cli
from rouge_score import rouge_scorer

from selfinstruct.seedcheck import seed_stats
from selfinstruct.seeds import load_seeds

SCORER = rouge_scorer.RougeScorer(["rougeL"])


def _task(i: int, instruction: str, instances: list[tuple[str, str]], cls: bool = False) -> str:
    return json.dumps(
        {
            "id": f"t{i}",
            "name": f"task_{i}",
            "instruction": instruction,
            "instances": [{"input": a, "output": b} for a, b in instances],
            "is_classification": cls,
        },
        ensure_ascii=False,
    )


SMALL = [
    _task(1, "Name three primary colors.", [("", "Red, yellow and blue.")]),
    _task(2, "Name the three primary colors.", [("", "Red, yellow, blue.")]),
    _task(
        3,
        "Classify the review as positive or negative.",
        [("Great soup.", "Positive"), ("Cold soup.", "Negative")],
        True,
    ),
    _task(4, "name three  primary colors.", [("", "Blue, red, yellow.")]),
]


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "small.jsonl"
    path.write_text("\n".join(SMALL) + "\n", encoding="utf-8")
    return path


def _rouge(a: str, b: str) -> float:
    return float(SCORER.score(a, b)["rougeL"].fmeasure)


def test_stats_of_a_small_set(small: Path) -> None:
    tasks = load_seeds(small).tasks
    stats = seed_stats(tasks)
    assert (stats.tasks, stats.classification, stats.instances, stats.empty_inputs) == (4, 1, 5, 3)
    assert stats.instances_per_task == Counter({1: 3, 2: 1})
    assert stats.lengths == [4, 5, 7, 4]
    # The closest pair is the exact repeat (score 1; ties go to the earliest task).
    assert stats.closest is not None
    assert (stats.closest.first.id, stats.closest.second.id) == ("t1", "t4")
    assert stats.closest.score == _rouge(tasks[0].instruction, tasks[3].instruction) == 1.0
    # Task 2 is above 0.7 against task 1 (rouge-score itself says so), task 4 too.
    assert _rouge(tasks[1].instruction, tasks[0].instruction) > 0.7
    near = [(p.second.id, p.first.id, p.score) for p in stats.near_duplicates]
    assert near == [
        ("t2", "t1", _rouge(tasks[1].instruction, tasks[0].instruction)),
        ("t4", "t1", 1.0),
    ]
    assert [[t.id for t in g] for g in stats.duplicate_instructions] == [["t1", "t4"]]
    assert stats.has_warnings


def test_max_pairwise_score_equals_the_brute_force_maximum() -> None:
    tasks = load_seeds(REPO / "seeds" / "seed_tasks.jsonl").tasks[:60]
    stats = seed_stats(tasks)
    brute = max(
        _rouge(a.instruction, b.instruction) for i, a in enumerate(tasks) for b in tasks[i + 1 :]
    )
    assert stats.closest is not None and stats.closest.score == brute


def test_chinese_near_duplicates_need_the_unicode_tokenizer(tmp_path: Path) -> None:
    path = tmp_path / "zh.jsonl"
    lines = [
        _task(1, "给即将退休的老同事写一段真诚的祝福语。", [("", "祝您退休生活愉快！")]),
        _task(2, "给即将退休的老同事写一段简短的祝福语。", [("", "退休快乐！")]),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tasks = load_seeds(path).tasks
    assert seed_stats(tasks, tokenizer="rouge").closest is None  # every score is 0
    zh = seed_stats(tasks, english=False, tokenizer="unicode")
    assert zh.closest is not None and zh.closest.score > 0.7
    assert zh.lengths == [18, 18]


def test_cli_reports_the_bundled_chinese_seeds() -> None:
    path = REPO / "seeds" / "seed_tasks_zh.jsonl"
    done = run_cli("seeds", "check", str(path), "--language", "zh")
    assert done.returncode == 0, done.stderr
    tasks = load_seeds(path).tasks
    out = done.stdout
    assert f"{path}: valid" in out
    assert f"tasks                   {len(tasks)}\n" in out
    n_cls = sum(t.is_classification is True for t in tasks)
    assert f"classification          {n_cls} ({n_cls / len(tasks):.1%})\n" in out
    assert "(unicode tokenizer), closest pair:" in out
    assert "above 0.7               0 " in out and "repeated instructions   0" in out
    assert "note:" not in out


def test_cli_hints_at_the_tokenizer_for_chinese_text() -> None:
    done = run_cli("seeds", "check", str(REPO / "seeds" / "seed_tasks_zh.jsonl"))
    assert done.returncode == 0, done.stderr
    assert "(rouge tokenizer)" in done.stdout
    assert "pass --language zh (or --tokenizer unicode)" in done.stdout


def test_cli_warnings_and_strict(small: Path) -> None:
    done = run_cli("seeds", "check", str(small))
    assert done.returncode == 0, done.stderr
    assert "above 0.7               2 " in done.stdout
    assert "repeated instructions   1\n  t1, t4: Name three primary colors." in done.stdout
    strict = run_cli("seeds", "check", str(small), "--strict")
    assert strict.returncode == 1
    assert "error: near-duplicate or repeated instructions (--strict)" in strict.stderr


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            '{"id": "t9", "name": "x", "instances": [], "is_classification": false}',
            "field 'instruction': missing",
        ),
        (
            _task(1, "Again the first id.", [("", "ok")]),
            "field 'id': duplicate id 't1' (first on line 1)",
        ),
        ("{not json", "invalid JSON"),
    ],
    ids=["missing_field", "duplicate_id", "bad_json"],
)
def test_cli_invalid_file_names_file_line_and_field(
    tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(SMALL[0] + "\n" + line + "\n", encoding="utf-8")
    done = run_cli("seeds", "check", str(path))
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {path}:2: ")
    assert message in done.stderr and "the seed file is invalid" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_cli_missing_file(tmp_path: Path) -> None:
    done = run_cli("seeds", "check", str(tmp_path / "nope.jsonl"))
    assert done.returncode == 1 and "cannot read seed file" in done.stderr
