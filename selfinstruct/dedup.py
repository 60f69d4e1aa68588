"""Remove near-duplicate instructions from a dataset file with the Self-Instruct rule.

A record is kept when the ROUGE-L F-measure of its instruction against every
instruction kept before it, and against every instruction of an optional
``against`` file, is at most the threshold (0.7 by default), exactly as
rouge-score would decide (see :mod:`selfinstruct.similarity`).

Input formats, detected from the extension and then the content:

* ``alpaca``: a JSON array of objects, each with a string ``"instruction"``
  (Stanford Alpaca's ``[{"instruction", "input", "output"}, ...]``);
* ``jsonl``: one JSON object per line with a string ``"instruction"`` (the
  Self-Instruct seed-task schema, for example); blank lines are skipped;
* ``text``: one instruction per line; blank lines are skipped.

A ``.jsonl`` / ``.ndjson`` file is always JSON lines and a ``.txt`` file always
text.  Otherwise the first non-blank character decides: ``[`` means an Alpaca
array, ``{`` JSON lines, anything else plain text (``.json`` files must start
with one of the two brackets).  Files are UTF-8; a byte-order mark is ignored.

Kept records are written in the input's format with every field preserved:
JSON lines and text lines are copied verbatim, Alpaca arrays are re-serialized
(two-space indent, non-ASCII kept as is); line ends become ``\n``.  Each
rejected record goes to a JSON lines file, ``<output>.rejected.jsonl`` by default
(``kept.json`` -> ``kept.json.rejected.jsonl``), as ``{"line", "record",
"nearest", "score", "source", "nearest_line"}``: its input line, the record, the
nearest pool instruction and its ROUGE-L score, ``"against"`` or ``"input"`` for
where that instruction came from, and its line there.

Records whose instruction has no tokens (empty or punctuation only) score 0
against everything under rouge-score, so they are always kept.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from selfinstruct.errors import InputError
from selfinstruct.similarity import ROUGE_THRESHOLD, NoveltyIndex, Tokenizer

__all__ = [
    "DedupInputError",
    "DedupSummary",
    "InputFormat",
    "Record",
    "dedup_file",
    "read_records",
]

InputFormat = Literal["alpaca", "jsonl", "text"]

_JSONL_SUFFIXES: Final = frozenset({".jsonl", ".ndjson"})
_TEXT_SUFFIXES: Final = frozenset({".txt"})
_JSON_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")  # RFC 8259, sec. 2
# How often dedup_file reports progress, in records.
_PROGRESS_EVERY: Final = 1000


class DedupInputError(InputError, ValueError):
    """Report unusable input, naming the file, line and field when known."""

    def __init__(
        self,
        message: str,
        *,
        path: Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        """Build the message ``path:line: field 'name': message`` from the known parts."""
        self.path = path
        self.line = line
        self.field = field
        self.reason = message
        where = "" if path is None else str(path)
        if line is not None:
            where = f"{where}:{line}"
        prefix = f"{where}: " if where else ""
        if field is not None:
            prefix += f"field {field!r}: "
        super().__init__(prefix + message)


@dataclass(frozen=True)
class Record:
    """One input record: its instruction, original content and 1-based line."""

    instruction: str
    # The parsed object (alpaca), the raw line (jsonl, text).
    raw: dict[str, Any] | str
    line: int


@dataclass(frozen=True)
class DedupSummary:
    """What dedup_file read, kept and rejected, and where it wrote the results."""

    read: int
    kept: int
    rejected: int
    against_size: int
    seconds: float
    output_path: Path
    rejected_path: Path
    input_format: InputFormat


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DedupInputError(f"cannot read file: {exc.strerror or exc}", path=path) from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DedupInputError(
            f"not valid UTF-8 (byte {data[exc.start]:#04x})", path=path, line=line
        ) from exc


def _detect(path: Path, text: str) -> InputFormat:
    suffix = path.suffix.lower()
    if suffix in _JSONL_SUFFIXES:
        return "jsonl"
    if suffix in _TEXT_SUFFIXES:
        return "text"
    first = text.lstrip()[:1]
    if first == "[":
        return "alpaca"
    if first == "{":
        return "jsonl"
    if suffix == ".json":
        if not first:
            return "alpaca"
        raise DedupInputError(
            "expected a JSON array of records or JSON lines", path=path, line=_line_at(text, 0)
        )
    return "text"


def _skip_whitespace(text: str, pos: int) -> int:
    match = _JSON_WHITESPACE.match(text, pos)
    assert match is not None  # the pattern also matches the empty string
    return match.end()


def _line_at(text: str, pos: int) -> int:
    """Return the 1-based line of the first non-whitespace character at or after pos."""
    return text.count("\n", 0, _skip_whitespace(text, pos)) + 1


def _instruction(obj: object, path: Path, line: int) -> str:
    if not isinstance(obj, dict):
        raise DedupInputError(
            f"expected a JSON object, got {_json_type(obj)}", path=path, line=line
        )
    if "instruction" not in obj:
        raise DedupInputError("missing", path=path, line=line, field="instruction")
    value = obj["instruction"]
    if not isinstance(value, str):
        raise DedupInputError(
            f"expected a string, got {_json_type(value)}",
            path=path,
            line=line,
            field="instruction",
        )
    return value


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _parse_alpaca(path: Path, text: str) -> Iterator[Record]:
    """Parse a JSON array element by element so errors can name their line."""
    decoder = json.JSONDecoder()
    skip = _skip_whitespace
    pos = skip(text, 0)
    if pos == len(text):
        return
    if text[pos] != "[":
        raise DedupInputError("expected a JSON array", path=path, line=_line_at(text, pos))
    pos = skip(text, pos + 1)
    # Count lines incrementally: one pass over the text in total.
    line, counted = 1, 0
    if text[pos : pos + 1] == "]":
        pos += 1
    else:
        while True:
            try:
                obj, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise DedupInputError(
                    f"invalid JSON: {exc.msg} (column {exc.colno})", path=path, line=exc.lineno
                ) from exc
            line += text.count("\n", counted, pos)
            counted = pos
            yield Record(_instruction(obj, path, line), obj, line)
            pos = skip(text, end)
            sep = text[pos : pos + 1]
            if sep == "]":
                pos += 1
                break
            if sep != ",":
                raise DedupInputError(
                    "invalid JSON: expected ',' or ']' after an array element",
                    path=path,
                    line=_line_at(text, pos),
                )
            pos = skip(text, pos + 1)
    pos = skip(text, pos)
    if pos != len(text):
        raise DedupInputError(
            "invalid JSON: extra data after the array", path=path, line=_line_at(text, pos)
        )


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """Yield (1-based number, line without its terminator) for non-blank lines."""
    # split("\n") rather than splitlines(): only LF / CRLF end a line in these
    # formats, and U+2028 or a form feed may legitimately sit inside a record.
    for number, line in enumerate(text.split("\n"), start=1):
        if line.endswith("\r"):
            line = line[:-1]
        if line.strip():
            yield number, line


def _parse_jsonl(path: Path, text: str) -> Iterator[Record]:
    for number, line in _lines(text):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DedupInputError(
                f"invalid JSON: {exc.msg} (column {exc.colno})", path=path, line=number
            ) from exc
        yield Record(_instruction(obj, path, number), line, number)


def _parse_text(text: str) -> Iterator[Record]:
    for number, line in _lines(text):
        yield Record(line, line, number)


def read_records(path: Path) -> tuple[InputFormat, list[Record]]:
    """Read an Alpaca JSON array, JSON lines or text file of instructions.

    Raises DedupInputError, naming the file, line and field, for unreadable or
    malformed input.
    """
    text = _read_text(path)
    fmt = _detect(path, text)
    if fmt == "alpaca":
        records = list(_parse_alpaca(path, text))
    elif fmt == "jsonl":
        records = list(_parse_jsonl(path, text))
    else:
        records = list(_parse_text(text))
    return fmt, records


def _default_rejected_path(output_path: Path) -> Path:
    return output_path.with_name(f"{output_path.name}.rejected.jsonl")


def _write_atomically(path: Path, chunks: Iterator[str]) -> None:
    """Write text through a temporary file in the same directory, then rename it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            out.writelines(chunks)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _render(fmt: InputFormat, records: list[Record]) -> Iterator[str]:
    if fmt == "alpaca":
        if not records:
            yield "[]\n"
            return
        # Serialize element by element to keep memory flat on large files.
        for i, record in enumerate(records):
            body = json.dumps(record.raw, ensure_ascii=False, indent=2)
            yield ("[\n  " if i == 0 else ",\n  ") + body.replace("\n", "\n  ")
        yield "\n]\n"
    else:
        for record in records:
            yield f"{record.raw}\n"


def _as_object(record: Record, fmt: InputFormat) -> object:
    """Return the record as a JSON value for the rejected-records file."""
    raw = record.raw
    if isinstance(raw, dict):
        return raw
    if fmt == "jsonl":
        return json.loads(raw)
    return {"instruction": raw}


def dedup_file(
    input_path: Path,
    output_path: Path,
    *,
    rejected_path: Path | None = None,
    threshold: float = ROUGE_THRESHOLD,
    against: Path | None = None,
    tokenizer: Tokenizer = "rouge",
    progress: Callable[[int, int], None] | None = None,
) -> DedupSummary:
    """Keep the records of input_path whose instruction is novel and write them out.

    A record is novel when its ROUGE-L F-measure against every record kept
    before it and every record of ``against`` is at most ``threshold``.  Kept
    records go to ``output_path`` in the input's format, rejected ones to
    ``rejected_path`` (JSON lines).  ``progress(done, total)`` is called every
    1,000 records and at the end.  Raises DedupInputError for bad input or
    arguments; nothing is written then.
    """
    started = time.perf_counter()
    if rejected_path is None:
        rejected_path = _default_rejected_path(output_path)
    if rejected_path.resolve() == output_path.resolve():
        raise DedupInputError(
            f"the rejected-records file must differ from the output file ({output_path})"
        )
    try:
        index = NoveltyIndex(threshold=threshold, tokenizer=tokenizer)
    except ValueError as exc:
        raise DedupInputError(str(exc)) from exc

    fmt, records = read_records(input_path)
    against_records: list[Record] = []
    if against is not None:
        _, against_records = read_records(against)
    # Ids by frequency over everything this run will see make the index's
    # prefixes hold the rarest tokens (speed only; decisions do not change).
    index.learn_vocabulary(r.instruction for r in [*against_records, *records])
    index.add_many(r.instruction for r in against_records)
    against_size = len(against_records)

    kept: list[Record] = []
    rejected_lines: list[str] = []
    total = len(records)
    for done, record in enumerate(records, start=1):
        match = index.best_above(record.instruction)
        if match is None:
            index.add(record.instruction)
            kept.append(record)
        else:
            from_against = match.index < against_size
            source = (
                against_records[match.index] if from_against else kept[match.index - against_size]
            )
            entry = {
                "line": record.line,
                "record": _as_object(record, fmt),
                "nearest": match.text,
                "score": match.score,
                "source": "against" if from_against else "input",
                "nearest_line": source.line,
            }
            rejected_lines.append(json.dumps(entry, ensure_ascii=False) + "\n")
        if progress is not None and done % _PROGRESS_EVERY == 0:
            progress(done, total)
    if progress is not None and (total % _PROGRESS_EVERY or not total):
        progress(total, total)

    _write_atomically(output_path, _render(fmt, kept))
    _write_atomically(rejected_path, iter(rejected_lines))
    return DedupSummary(
        read=total,
        kept=len(kept),
        rejected=total - len(kept),
        against_size=against_size,
        seconds=time.perf_counter() - started,
        output_path=output_path,
        rejected_path=rejected_path,
        input_format=fmt,
    )
