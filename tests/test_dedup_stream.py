"""dedup streams: any chunk boundary parses alike, and memory does not grow with the file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from selfinstruct import dedup
from selfinstruct.dedup import DedupInputError, dedup_file, read_records

# Content that stresses a sliding buffer: multi-byte UTF-8, escapes (\uXXXX, surrogate
# pairs, \"), long strings, numbers, literals, nesting, blank lines and odd whitespace.
ROWS: list[dict[str, Any]] = [
    {"instruction": "Traduis en français : « bonjour »", "input": "", "output": "x" * 300},
    {"instruction": 'Quote "this" \\ that', "input": "日本語のテキスト", "output": "😀 ok"},
    {"instruction": "Numbers", "input": "", "output": "", "n": [-1.5e-3, 0, 12345678901234567890]},
    {"instruction": "Literals", "extra": {"a": True, "b": False, "c": None, "d": [[], {}]}},
    {"instruction": "Line\u2028separator and \u0085 next line", "input": "", "output": "ok"},
]


def _variants() -> list[str]:
    compact = json.dumps(ROWS, separators=(",", ":"), ensure_ascii=False)
    return [
        json.dumps(ROWS, indent=2, ensure_ascii=False),
        json.dumps(ROWS),  # every non-ASCII character escaped, surrogate pairs included
        compact,  # one line: the buffer must slide within a line
        "\ufeff \r\n\t" + json.dumps(ROWS, indent="\t") + "\n\n  ",
    ]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 17, 1 << 20])
@pytest.mark.parametrize("variant", range(4))
def test_any_chunk_boundary_reads_the_same_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, variant: int
) -> None:
    text = _variants()[variant]
    path = tmp_path / "data.json"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setattr(dedup, "_CHUNK", chunk)
    fmt, records = read_records(path)
    assert fmt == "alpaca" and [r.raw for r in records] == ROWS
    clean = text.lstrip("\ufeff")
    starts = [clean.index("{", clean.index("[") + 1)]
    for _ in ROWS[1:]:  # each element's line: where its "{" is
        depth, i = 0, starts[-1]
        while True:
            depth += {"{": 1, "}": -1}.get(clean[i], 0)
            i += 1
            if depth == 0:
                break
        starts.append(clean.index("{", i))
    assert [r.line for r in records] == [clean.count("\n", 0, s) + 1 for s in starts]


BAD = [
    ('[\n  {"instruction": "a"},\n  {"instruction": null}\n]', "data.json:3: field"),
    ('[\n  {"instruction": "a"}\n  {"instruction": "b"}\n]', "data.json:3: invalid JSON"),
    ('[{"instruction": "a"}] trailing', "data.json:1: invalid JSON: extra"),
    ('[\n{"instruction": "a",\n', "data.json:3: invalid JSON"),
    ('[{"instruction": "a"}, {"instruction": "b" "c"}]', "(column 44)"),
    ('[{"instruction": "a"},\n {"instruction": "unterminated', "data.json:2: invalid JSON"),
    ('[{"instruction": "a"}, tru]', "data.json:1: invalid JSON: Expecting value (column 24)"),
    ('[{"instruction": "a"},]', "data.json:1: invalid JSON: Expecting value (column 23)"),
    ('[{"instruction": "\\ud83d\\u"}]', "data.json:1: invalid JSON: Invalid \\uXXXX"),
]


@pytest.mark.parametrize("chunk", [1, 4, 1 << 20])
@pytest.mark.parametrize(("content", "message"), BAD)
def test_errors_name_the_same_line_and_column_at_any_chunk_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, content: str, message: str
) -> None:
    path = tmp_path / "data.json"
    path.write_text(content, encoding="utf-8")
    monkeypatch.setattr(dedup, "_CHUNK", chunk)
    with pytest.raises(DedupInputError) as info:
        dedup_file(path, tmp_path / "out.json")
    assert message in str(info.value)
    assert not (tmp_path / "out.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.json"]  # no temporary left


def test_invalid_utf8_is_named_by_line_when_streaming(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dedup, "_CHUNK", 3)
    path = tmp_path / "data.json"
    path.write_bytes(b'[\n{"instruction": "caf\xc3\xa9"},\n{"instruction": "bad \xff"}\n]')
    with pytest.raises(DedupInputError, match=r"data.json:3: not valid UTF-8 \(byte 0xff\)"):
        read_records(path)


_PEAK = """
import resource, sys
from pathlib import Path
from selfinstruct.dedup import dedup_file
summary = dedup_file(Path(sys.argv[1]), Path(sys.argv[2]))
print(summary.kept, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _peak_kib(source: Path, out: Path) -> tuple[int, int]:
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, str(source), str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    kept, peak = done.stdout.split()
    return int(kept), int(peak)


def _alpaca_file(path: Path, tasks: int, output_chars: int) -> int:
    """Write an export-like Alpaca file: tasks of 3 instances with long outputs."""
    with path.open("w", encoding="utf-8") as fh:
        fh.write("[\n")
        for t in range(tasks):
            words = " ".join(f"w{(t * 7 + k * 13) % 5000}" for k in range(12))
            instruction = f"Task {t}: explain {words}"
            for n in range(3):
                row = {
                    "instruction": instruction,
                    "input": f"case {n}",
                    "output": "o" * output_chars,
                }
                sep = ",\n" if t or n else ""
                fh.write(sep + json.dumps(row, indent=2))
        fh.write("\n]\n")
    return tasks * 3


def test_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    small, large = tmp_path / "small.json", tmp_path / "large.json"
    _alpaca_file(small, 300, 10)
    records = _alpaca_file(large, 300, 40_000)  # ~36 MB: the same tasks, bigger records
    assert large.stat().st_size > 30_000_000
    kept_small, peak_small = _peak_kib(small, tmp_path / "a.json")
    kept_large, peak_large = _peak_kib(large, tmp_path / "b.json")
    # Reading the whole file, as main did, costs several times its size.
    assert peak_large - peak_small < 16 * 1024, (peak_small, peak_large)
    assert kept_small == kept_large == records


def test_lone_surrogates_are_written_as_escapes(tmp_path: Path) -> None:
    source = tmp_path / "data.json"
    source.write_text(
        '[{"instruction": "Odd \\ud800 text here now"}, {"instruction": "Odd \\ud800 text here"}]'
    )
    summary = dedup_file(source, tmp_path / "kept.json")
    assert (summary.kept, summary.rejected) == (1, 1)
    kept = (tmp_path / "kept.json").read_bytes().decode("utf-8")  # valid UTF-8
    assert json.loads(kept) == [{"instruction": "Odd \ud800 text here now"}]
    (reject,) = summary.rejected_path.read_bytes().decode("utf-8").splitlines()
    assert json.loads(reject)["record"] == {"instruction": "Odd \ud800 text here"}
