"""Check dedup_file on every input format, its outputs and its input errors."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from rouge_score import rouge_scorer

from selfinstruct.dedup import DedupInputError, DedupSummary, dedup_file, read_records

SCORER = rouge_scorer.RougeScorer(["rougeL"])

ALPACA: list[dict[str, Any]] = [
    {"instruction": "Give three tips for staying healthy.", "input": "", "output": "1. Eat well"},
    {"instruction": "What are the three primary colors?", "input": "", "output": "Red, blue"},
    {"instruction": "Give three tips for staying healthy!", "input": "", "output": "dup"},
    {"instruction": "Describe the structure of an atom.", "input": "", "output": "Nucleus"},
    {
        "instruction": "Give me three good tips for staying healthy.",
        "input": "",
        "output": "near dup",
        "extra": {"kept": [1, 2.5, None]},
    },
    {"instruction": "Translate to French: «Bonjour»", "input": "Hello", "output": "Bonjour"},
]
KEPT_ALPACA = [ALPACA[0], ALPACA[1], ALPACA[3], ALPACA[5]]


def reference(target: str, prediction: str) -> float:
    return float(SCORER.score(target, prediction)["rougeL"].fmeasure)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_alpaca(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(records, indent=4, ensure_ascii=False), encoding="utf-8")
    return path


def test_alpaca_json_keeps_novel_records_in_order(tmp_path: Path) -> None:
    source = write_alpaca(tmp_path / "data.json", ALPACA)
    out = tmp_path / "out" / "kept.json"
    summary = dedup_file(source, out)
    assert summary == DedupSummary(
        read=6,
        kept=4,
        rejected=2,
        against_size=0,
        seconds=summary.seconds,
        output_path=out,
        rejected_path=tmp_path / "out" / "kept.json.rejected.jsonl",
        input_format="alpaca",
        tasks=6,
        tasks_kept=4,
    )
    assert summary.seconds >= 0
    assert json.loads(out.read_text(encoding="utf-8")) == KEPT_ALPACA
    assert "«Bonjour»" in out.read_text(encoding="utf-8")  # non-ASCII is not escaped
    rejected = read_jsonl(summary.rejected_path)
    assert [r["record"] for r in rejected] == [ALPACA[2], ALPACA[4]]
    first = rejected[0]
    assert first["nearest"] == ALPACA[0]["instruction"]
    assert first["score"] == reference(ALPACA[2]["instruction"], ALPACA[0]["instruction"])
    assert first["source"] == "input"
    # json.dumps(indent=4) puts "[" on line 1 and each object's "{" on 2, 7, 12, ...
    assert (first["line"], first["nearest_line"]) == (12, 2)
    assert rejected[1]["score"] > 0.7


def test_jsonl_seed_schema_is_copied_verbatim(tmp_path: Path) -> None:
    seeds = [
        {
            "id": "seed_task_0",
            "name": "breakfast_suggestion",
            "instruction": "Is there anything I can eat for a breakfast that doesn't include eggs?",
            "instances": [{"input": "", "output": "Yes, oatmeal."}],
            "is_classification": False,
        },
        {
            "id": "seed_task_1",
            "name": "antonym",
            "instruction": "Is there anything I can eat for breakfast that doesn't include eggs?",
            "instances": [],
            "is_classification": False,
        },
        {"id": "seed_task_2", "name": "haiku", "instruction": "Write a haiku about autumn."},
    ]
    lines = [json.dumps(s, separators=(",", ":")) for s in seeds]
    source = tmp_path / "seed_tasks.jsonl"
    source.write_text("\n".join([lines[0], "", "   ", lines[1], lines[2]]) + "\n", "utf-8")
    out = tmp_path / "kept.jsonl"
    summary = dedup_file(source, out, rejected_path=tmp_path / "dropped.jsonl")
    assert (summary.read, summary.kept, summary.input_format) == (3, 2, "jsonl")
    assert out.read_text(encoding="utf-8") == f"{lines[0]}\n{lines[2]}\n"
    (dropped,) = read_jsonl(tmp_path / "dropped.jsonl")
    assert dropped["record"] == seeds[1]
    assert (dropped["line"], dropped["nearest_line"], dropped["source"]) == (4, 1, "input")


def test_text_input_skips_blank_lines(tmp_path: Path) -> None:
    source = tmp_path / "instructions.txt"
    source.write_text(
        "Write a poem about the sea.\r\n\n  \nWrite a poem about the sea!\nList three fruits.",
        encoding="utf-8",
    )
    out = tmp_path / "kept.txt"
    summary = dedup_file(source, out)
    assert (summary.read, summary.kept, summary.rejected) == (3, 2, 1)
    assert summary.input_format == "text"
    assert out.read_text(encoding="utf-8") == "Write a poem about the sea.\nList three fruits.\n"
    (rejected,) = read_jsonl(tmp_path / "kept.txt.rejected.jsonl")
    assert rejected["record"] == {"instruction": "Write a poem about the sea!"}
    assert (rejected["line"], rejected["nearest_line"], rejected["score"]) == (4, 1, 1.0)


def test_against_set_rejects_and_is_reported(tmp_path: Path) -> None:
    against = tmp_path / "existing.txt"
    against.write_text("Describe the structure of an atom\nName a primary color\n", "utf-8")
    source = write_alpaca(tmp_path / "data.json", ALPACA)
    summary = dedup_file(source, tmp_path / "kept.json", against=against)
    assert summary.against_size == 2
    assert json.loads((tmp_path / "kept.json").read_text("utf-8")) == [
        ALPACA[0],
        ALPACA[1],
        ALPACA[5],
    ]
    rejected = read_jsonl(summary.rejected_path)
    assert [r["source"] for r in rejected] == ["input", "against", "input"]
    assert rejected[1]["nearest"] == "Describe the structure of an atom"
    assert rejected[1]["nearest_line"] == 1


def test_matches_a_sequential_rouge_score_filter(tmp_path: Path) -> None:
    rng = random.Random(9)
    vocab = "write a poem list three fruits the sea of story about name give me".split()
    texts: list[str] = []
    for _ in range(150):
        if texts and rng.random() < 0.4:
            tokens = rng.choice(texts).split()
            tokens[rng.randrange(len(tokens))] = rng.choice(vocab)
        else:
            tokens = rng.choices(vocab, k=rng.randint(2, 9))
        texts.append(" ".join(tokens))
    expected: list[str] = []
    for text in texts:
        if all(reference(text, kept) <= 0.7 for kept in expected):
            expected.append(text)
    source = tmp_path / "many.txt"
    source.write_text("\n".join(texts), encoding="utf-8")
    summary = dedup_file(source, tmp_path / "kept.txt")
    assert (tmp_path / "kept.txt").read_text("utf-8").splitlines() == expected
    assert summary.kept == len(expected) < len(texts)


def test_threshold_and_unicode_tokenizer(tmp_path: Path) -> None:
    source = tmp_path / "zh.txt"
    source.write_text(
        "请把这句话翻译成英文。\n请将这句话翻译成英文。\n写一首关于大海的诗。\n", "utf-8"
    )
    assert dedup_file(source, tmp_path / "a.txt").kept == 3  # rouge tokens: none
    assert dedup_file(source, tmp_path / "b.txt", tokenizer="unicode").kept == 2
    assert dedup_file(source, tmp_path / "c.txt", tokenizer="unicode", threshold=1.0).kept == 3


def test_progress_reports_bytes_every_thousand_records(tmp_path: Path) -> None:
    source = tmp_path / "numbers.txt"
    source.write_text("\n".join(f"task {i} {i * 7} {i * 13}" for i in range(2500)), "utf-8")
    size = source.stat().st_size
    calls: list[tuple[int, int]] = []
    dedup_file(
        source, tmp_path / "out.txt", progress=lambda done, total: calls.append((done, total))
    )
    assert len(calls) == 3 and calls[-1] == (size, size)
    assert all(total == size and 0 < done <= size for done, total in calls)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", "utf-8")
    calls.clear()
    summary = dedup_file(
        empty, tmp_path / "empty-out.txt", progress=lambda d, t: calls.append((d, t))
    )
    assert (summary.read, calls) == (0, [(2, 2)])
    assert (tmp_path / "empty-out.txt").read_text("utf-8") == ""


def test_in_place_dedup_is_safe(tmp_path: Path) -> None:
    source = write_alpaca(tmp_path / "data.json", ALPACA)
    dedup_file(source, source)
    assert json.loads(source.read_text("utf-8")) == KEPT_ALPACA


@pytest.mark.parametrize(
    ("name", "content", "fmt", "count"),
    [
        ("a.json", '{"instruction": "x"}\n{"instruction": "y"}\n', "jsonl", 2),
        ("a.data", '  [{"instruction": "x"}]', "alpaca", 1),
        ("a.data", '{"instruction": "x"}', "jsonl", 1),
        ("a.data", "plain text line\n", "text", 1),
        ("a.txt", '{"instruction": "x"}\n', "text", 1),
        ("a.json", "", "alpaca", 0),
        ("a.json", "[]", "alpaca", 0),
        ("a.jsonl", "", "jsonl", 0),
        ("a.json", '\ufeff[{"instruction": "bom"}]', "alpaca", 1),
    ],
)
def test_format_detection(tmp_path: Path, name: str, content: str, fmt: str, count: int) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    detected, records = read_records(path)
    assert (detected, len(records)) == (fmt, count)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "data.jsonl",
            '{"instruction": "a"}\n{"instruction": "b"}\n\n{"instruction": 3}\n',
            "data.jsonl:4: field 'instruction': expected a string, got a number",
        ),
        (
            "data.jsonl",
            '{"instruction": "a"}\n{"instr": "b"}\n',
            "data.jsonl:2: field 'instruction': missing",
        ),
        ("data.jsonl", '{"instruction": "a"}\n{"instruction": \n', "data.jsonl:2: invalid JSON"),
        ("data.jsonl", '["not", "an", "object"]\n', "data.jsonl:1: expected a JSON object"),
        (
            "data.json",
            '[\n  {"instruction": "a"},\n  {"instruction": null}\n]',
            "data.json:3: field 'instruction': expected a string, got null",
        ),
        ("data.json", '[\n  {"instruction": "a"},\n  "text"\n]', "data.json:3: expected a JSON"),
        ("data.json", '[\n  {"instruction": "a"}\n  {"instruction": "b"}\n]', "data.json:3:"),
        ("data.json", '[{"instruction": "a"}] trailing', "data.json:1: invalid JSON: extra"),
        ("data.json", '[\n{"instruction": "a",\n', "data.json:3: invalid JSON"),
        ("data.json", "not json at all", "data.json:1: expected a JSON array"),
    ],
)
def test_bad_input_names_file_line_and_field(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    out = tmp_path / "out.json"
    with pytest.raises(DedupInputError) as info:
        dedup_file(path, out)
    assert str(info.value).startswith(str(tmp_path / message))
    assert isinstance(info.value, ValueError)
    assert not out.exists()


def test_error_attributes_and_encoding(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"fine line\nbad \xff byte\n")
    with pytest.raises(DedupInputError) as info:
        read_records(path)
    assert (info.value.path, info.value.line, info.value.field) == (path, 2, None)
    assert "not valid UTF-8" in str(info.value)
    with pytest.raises(DedupInputError, match="cannot read"):
        read_records(tmp_path / "missing.json")


def test_bad_arguments_raise_before_writing(tmp_path: Path) -> None:
    source = write_alpaca(tmp_path / "data.json", ALPACA)
    out = tmp_path / "out.json"
    with pytest.raises(DedupInputError, match="threshold"):
        dedup_file(source, out, threshold=1.5)
    with pytest.raises(DedupInputError, match="must differ"):
        dedup_file(source, out, rejected_path=out)
    (tmp_path / "dir").mkdir()
    with pytest.raises(DedupInputError, match=r"dir: is a directory; name a file to write"):
        dedup_file(source, tmp_path / "dir")
    with pytest.raises(DedupInputError, match=r"dir: is a directory"):
        dedup_file(source, out, rejected_path=tmp_path / "dir")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.json", "dir"]
    against = tmp_path / "against.jsonl"
    against.write_text('{"text": "no instruction"}\n', "utf-8")
    with pytest.raises(DedupInputError, match="against.jsonl:1: field 'instruction': missing"):
        dedup_file(source, out, against=against)
    assert not out.exists()
