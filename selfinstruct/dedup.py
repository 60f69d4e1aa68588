"""Remove near-duplicate tasks from a dataset file with the Self-Instruct rule, streaming.

Records that share an instruction are one task (``selfinstruct export`` writes one record
per instance), and a task is kept or dropped whole. A task is kept when the ROUGE-L
F-measure of its instruction against every instruction kept before it, and against every
instruction of an optional ``against`` file, is at most the threshold (0.7 by default),
exactly as rouge-score would decide (see :mod:`selfinstruct.similarity`). Every record of a
kept task is kept, except one identical to an earlier record (an exact duplicate record).

Input formats, detected from the extension and then the content:

* ``alpaca``: a JSON array of objects (Stanford Alpaca's
  ``[{"instruction", "input", "output"}, ...]``), read element by element;
* ``jsonl``: one JSON object per line (the seed-task schema and ``export -f tasks``, the
  ``jsonl`` export, or the chat exports); blank lines are skipped;
* ``text``: one instruction per line; blank lines are skipped.

An object's instruction is its string ``"instruction"``. A chat record without one (the
``openai`` export's ``{"messages": [...]}``, the ``sharegpt`` export's
``{"conversations": [...]}``) takes its first user turn up to the first blank line: the
export puts the instruction there, then a blank line and the input, so every instance of a
task gets the same instruction. (An instruction that itself holds a blank line is compared
by its first paragraph only.) System turns and later turns are ignored.

A ``.jsonl`` / ``.ndjson`` file is always JSON lines and a ``.txt`` file always
text.  Otherwise the first non-blank character decides: ``[`` means an Alpaca
array, ``{`` JSON lines, anything else plain text (``.json`` files must start
with one of the two brackets).  Files are UTF-8; a byte-order mark is ignored.

The input is read as a stream and the output written as it goes: memory grows with the
kept instructions (their ROUGE index, and a 64-bit digest per kept record), not with the
file. Kept records are written in the input's format with every field preserved: JSON
lines and text lines are copied verbatim, Alpaca arrays are re-serialized (two-space
indent, non-ASCII kept as is); line ends become ``\\n``.  Each rejected record goes to a
JSON lines file, ``<output>.rejected.jsonl`` by default (``kept.json`` ->
``kept.json.rejected.jsonl``), as ``{"line", "record", "reason", "nearest", "score",
"source", "nearest_line"}``: its input line, the record, ``"near_duplicate"`` (its task's
instruction is too close to an earlier one) or ``"duplicate_record"`` (the same record
again), the nearest instruction and its ROUGE-L score, ``"against"`` or ``"input"`` for
where that instruction came from, and its line there.

Records whose instruction has no tokens (empty or punctuation only) score 0
against everything under rouge-score, so they are always kept.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Literal

from selfinstruct.errors import InputError
from selfinstruct.similarity import (
    ROUGE_THRESHOLD,
    NoveltyIndex,
    Tokenizer,
    has_single_char_script,
)
from selfinstruct.store import atomic_file

__all__ = [
    "DedupInputError",
    "DedupSummary",
    "InputFormat",
    "Record",
    "RecordReader",
    "dedup_file",
    "read_records",
]

InputFormat = Literal["alpaca", "jsonl", "text"]

_JSONL_SUFFIXES: Final = frozenset({".jsonl", ".ndjson"})
_TEXT_SUFFIXES: Final = frozenset({".txt"})
_JSON_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")  # RFC 8259, sec. 2
_BOM: Final = codecs.BOM_UTF8
# How often dedup_file reports progress, in records.
_PROGRESS_EVERY: Final = 1000
# Bytes read at a time; an element longer than what is buffered doubles the next read.
_CHUNK: Final = 1 << 20
# A JSON error this close to the end of the buffered text may only mean that the element
# goes on in the next chunk. Outside strings (handled apart) no JSON token is longer than
# this: the longest literal is "-Infinity", an escape "\uXXXX".
_CONTEXT: Final = 64
# Records, at most, whose tokens get ids by frequency before the run (speed only; the
# decisions never change): enough for the frequent tokens, few enough to hold in memory.
_VOCABULARY_SAMPLE: Final = 5_000
_VOCABULARY_BYTES: Final = 2 << 20


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
    tasks: int = 0  # distinct instructions read
    tasks_kept: int = 0
    duplicate_records: int = 0  # rejected as the same record again, not as near duplicates
    tokenizer: Tokenizer = "rouge"  # the one used (tokenizer="auto" chooses)


def _skip_whitespace(text: str, pos: int) -> int:
    match = _JSON_WHITESPACE.match(text, pos)
    assert match is not None  # the pattern also matches the empty string
    return match.end()


def _instruction(obj: object, path: Path, line: int) -> str:
    if not isinstance(obj, dict):
        raise DedupInputError(
            f"expected a JSON object, got {_json_type(obj)}", path=path, line=line
        )
    if "instruction" not in obj:
        for key, role_key, roles, text_key in _CHAT_SHAPES:
            if key in obj:
                return _chat_instruction(obj[key], key, role_key, roles, text_key, path, line)
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


# Chat records (export.py's openai and sharegpt formats): list key, role key, user roles,
# text key.
_CHAT_SHAPES: Final = (
    ("messages", "role", ("user",), "content"),
    ("conversations", "from", ("human", "user"), "value"),
)


def _chat_instruction(
    turns: object,
    key: str,
    role_key: str,
    roles: tuple[str, ...],
    text_key: str,
    path: Path,
    line: int,
) -> str:
    """Return the first user turn up to its first blank line: the exported instruction."""
    if not isinstance(turns, list):
        raise DedupInputError(
            f"expected an array, got {_json_type(turns)}", path=path, line=line, field=key
        )
    for n, turn in enumerate(turns):
        if isinstance(turn, dict) and turn.get(role_key) in roles:
            text = turn.get(text_key)
            if not isinstance(text, str):
                raise DedupInputError(
                    f"expected a string, got {_json_type(text)}",
                    path=path,
                    line=line,
                    field=f"{key}[{n}].{text_key}",
                )
            return text.split("\n\n", 1)[0]
    raise DedupInputError(
        f"no user turn ({role_key} {' or '.join(roles)})", path=path, line=line, field=key
    )


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


class RecordReader:
    """Stream the records of an Alpaca JSON array, JSON lines or text file.

    The format is known once the reader is open; iterating yields the records one at a
    time, reading a chunk at a time. Raises DedupInputError, naming the file, line and
    field, for unreadable or malformed input, when it is met.
    """

    def __init__(self, path: Path) -> None:
        """Open `path` and detect its format; nothing else is read yet."""
        self.path = path
        try:
            self._fh: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed by close()
            self.size = os.fstat(self._fh.fileno()).st_size
        except OSError as exc:
            raise DedupInputError(f"cannot read file: {exc.strerror or exc}", path=path) from exc
        self.bytes_read = 0
        try:
            self.format: InputFormat = self._detect()
            self._fh.seek(0)
        except BaseException:
            self._fh.close()
            raise

    def __enter__(self) -> RecordReader:
        """Return the open reader."""
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the file."""
        self.close()

    def close(self) -> None:
        """Close the file."""
        self._fh.close()

    def __iter__(self) -> Iterator[Record]:
        """Yield the records in file order."""
        if self.format == "alpaca":
            return self._alpaca()
        if self.format == "jsonl":
            return self._jsonl()
        return (Record(line, line, number) for number, line in self._lines())

    # -- format detection ------------------------------------------------------------------

    def _first_char(self) -> str:
        """Return the first non-blank character of the file ("" when there is none)."""
        decoder = codecs.getincrementaldecoder("utf-8-sig")()
        newlines = 0
        while True:
            data = self._fh.read(_CHUNK)
            text = self._decode(decoder, data, newlines)
            newlines += data.count(b"\n")
            stripped = text.lstrip()
            if stripped:
                self._first_line = newlines - data.count(b"\n") + 1
                self._first_line += text[: len(text) - len(stripped)].count("\n")
                return stripped[0]
            if not data:
                return ""

    def _decode(self, decoder: codecs.IncrementalDecoder, data: bytes, newlines: int) -> str:
        """Decode the next chunk; `newlines` counts the line ends in the chunks before."""
        try:
            return str(decoder.decode(data, final=not data))
        except UnicodeDecodeError as exc:
            # exc.object is the decoder's pending bytes (no line end among them) + data.
            line = newlines + exc.object.count(b"\n", 0, exc.start) + 1
            raise DedupInputError(
                f"not valid UTF-8 (byte {exc.object[exc.start]:#04x})", path=self.path, line=line
            ) from exc

    def _detect(self) -> InputFormat:
        suffix = self.path.suffix.lower()
        if suffix in _JSONL_SUFFIXES:
            return "jsonl"
        if suffix in _TEXT_SUFFIXES:
            return "text"
        first = self._first_char()
        if first == "[":
            return "alpaca"
        if first == "{":
            return "jsonl"
        if suffix == ".json":
            if not first:
                return "alpaca"
            raise DedupInputError(
                "expected a JSON array of records or JSON lines",
                path=self.path,
                line=self._first_line,
            )
        return "text"

    # -- lines -----------------------------------------------------------------------------

    def _lines(self) -> Iterator[tuple[int, str]]:
        """Yield (1-based number, line without its terminator) for non-blank lines."""
        # Binary lines end at b"\n" only: only LF / CRLF end a line in these formats,
        # and U+2028 or a form feed may legitimately sit inside a record.
        for number, raw in enumerate(self._fh, start=1):
            self.bytes_read += len(raw)
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DedupInputError(
                    f"not valid UTF-8 (byte {raw[exc.start]:#04x})", path=self.path, line=number
                ) from exc
            if line.endswith("\n"):
                line = line[:-1]
            if line.endswith("\r"):
                line = line[:-1]
            if line.strip():
                yield number, line

    def _jsonl(self) -> Iterator[Record]:
        for number, line in self._lines():
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DedupInputError(
                    f"invalid JSON: {exc.msg} (column {exc.colno})", path=self.path, line=number
                ) from exc
            yield Record(_instruction(obj, self.path, number), line, number)

    # -- one JSON array, element by element ------------------------------------------------

    def _alpaca(self) -> Iterator[Record]:
        """Parse a JSON array element by element over a sliding buffer.

        Only the element being parsed (and the rest of its chunk) is held, so a file of any
        size streams; errors still name their line.
        """
        return _ArrayStream(self).records()


class _ArrayStream:
    """The sliding buffer of RecordReader._alpaca: text, position and line bookkeeping."""

    def __init__(self, reader: RecordReader) -> None:
        self.reader = reader
        self.path = reader.path
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.json = json.JSONDecoder()
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.newlines_read = 0  # line ends in the bytes decoded so far
        self.line0 = 1  # line of buf[0]
        self.col0 = 0  # characters of that line before buf[0]
        self.mark = 0  # position up to which line ends are counted...
        self.mark_line = 1  # ...and the line there

    def more(self) -> bool:
        """Drop the parsed text, append the next chunk; return False at the end of the file."""
        if self.eof:
            return False
        buf, pos = self.buf, self.pos
        if pos:
            done = buf[:pos]
            last = done.rfind("\n")
            self.col0 = self.col0 + pos if last < 0 else pos - last - 1
            self.line0 += done.count("\n")
            self.buf, self.pos, self.mark, self.mark_line = buf[pos:], 0, 0, self.line0
        data = self.reader._fh.read(max(_CHUNK, len(self.buf)))
        self.reader.bytes_read += len(data)
        self.buf += self.reader._decode(self.decoder, data, self.newlines_read)
        self.newlines_read += data.count(b"\n")
        self.eof = not data
        return True

    def line_at(self, pos: int) -> int:
        """Return the line of buf[pos], counting forward from the last position asked."""
        if pos < self.mark:
            return self.line0 + self.buf.count("\n", 0, pos)
        self.mark_line += self.buf.count("\n", self.mark, pos)
        self.mark = pos
        return self.mark_line

    def peek(self) -> str:
        """Skip JSON whitespace, reading on as needed; return the next character or ""."""
        while True:
            self.pos = _skip_whitespace(self.buf, self.pos)
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""

    def fail(self, message: str) -> DedupInputError:
        return DedupInputError(message, path=self.path, line=self.line_at(self.pos))

    def element(self) -> Any:
        """Decode the JSON value at pos, reading more while it may go on past the buffer."""
        while True:
            try:
                obj, self.pos = self.json.raw_decode(self.buf, self.pos)
                return obj
            except json.JSONDecodeError as exc:
                cut_short = exc.msg.startswith("Unterminated string") or (
                    exc.pos >= len(self.buf) - _CONTEXT
                )
                if cut_short and self.more():
                    continue
                line = self.line0 + exc.lineno - 1
                column = exc.colno + (self.col0 if exc.lineno == 1 else 0)
                raise DedupInputError(
                    f"invalid JSON: {exc.msg} (column {column})", path=self.path, line=line
                ) from exc

    def records(self) -> Iterator[Record]:
        first = self.peek()
        if not first:
            return
        if first != "[":
            raise self.fail("expected a JSON array")
        self.pos += 1
        if self.peek() == "]":
            self.pos += 1
        else:
            while True:
                line = self.line_at(self.pos)
                obj = self.element()
                yield Record(_instruction(obj, self.path, line), obj, line)
                sep = self.peek()
                if sep == "]":
                    self.pos += 1
                    break
                if sep != ",":
                    raise self.fail("invalid JSON: expected ',' or ']' after an array element")
                self.pos += 1
                self.peek()  # the next element starts at a non-blank character
        if self.peek():
            raise self.fail("invalid JSON: extra data after the array")


def read_records(path: Path) -> tuple[InputFormat, list[Record]]:
    """Read an Alpaca JSON array, JSON lines or text file of instructions into memory.

    Raises DedupInputError, naming the file, line and field, for unreadable or
    malformed input. dedup_file streams instead (RecordReader).
    """
    with RecordReader(path) as reader:
        return reader.format, list(reader)


def _default_rejected_path(output_path: Path) -> Path:
    return output_path.with_name(f"{output_path.name}.rejected.jsonl")


def _as_object(record: Record, fmt: InputFormat) -> object:
    """Return the record as a JSON value for the rejected-records file."""
    raw = record.raw
    if isinstance(raw, dict):
        return raw
    if fmt == "jsonl":
        return json.loads(raw)
    return {"instruction": raw}


def _digest(data: bytes) -> bytes:
    """Return a 64-bit digest: what is remembered of a kept record or a dropped instruction."""
    return hashlib.blake2b(data, digest_size=8).digest()


def _json_bytes(value: object, indent: int | None = None) -> bytes:
    """Serialize as UTF-8 JSON, non-ASCII as is; escaped where a lone surrogate forbids it."""
    try:
        return json.dumps(value, ensure_ascii=False, indent=indent).encode()
    except UnicodeEncodeError:  # "\ud800" in the input is valid JSON but not UTF-8 text
        return json.dumps(value, indent=indent).encode()


class _Output:
    """Write kept records in the input's format as they come."""

    def __init__(self, fh: IO[bytes], fmt: InputFormat) -> None:
        self._fh = fh
        self._fmt = fmt
        self._count = 0

    def body(self, record: Record) -> bytes:
        """Return the record as written (an Alpaca element without its separator)."""
        if isinstance(record.raw, dict):
            return _json_bytes(record.raw, indent=2).replace(b"\n", b"\n  ")
        return record.raw.encode()  # decoded from UTF-8 lines: it encodes back

    def write(self, body: bytes) -> None:
        """Append one record's body."""
        if self._fmt == "alpaca":
            self._fh.write(b"[\n  " if self._count == 0 else b",\n  ")
            self._fh.write(body)
        else:
            self._fh.write(body + b"\n")
        self._count += 1

    def close(self) -> None:
        if self._fmt == "alpaca":
            self._fh.write(b"\n]\n" if self._count else b"[]\n")


@dataclass
class _Dropped:
    """Why a task was dropped, for the rejected lines of its other records."""

    nearest: str
    score: float
    source: str
    nearest_line: int


def dedup_file(
    input_path: Path,
    output_path: Path,
    *,
    rejected_path: Path | None = None,
    threshold: float = ROUGE_THRESHOLD,
    against: Path | None = None,
    tokenizer: Tokenizer | Literal["auto"] = "rouge",
    progress: Callable[[int, int], None] | None = None,
) -> DedupSummary:
    """Keep the tasks of input_path whose instruction is novel, with all their records.

    A task (the records sharing one instruction) is novel when its instruction's ROUGE-L
    F-measure against every instruction kept before it and every instruction of
    ``against`` is at most ``threshold``. The input streams through: kept records go to
    ``output_path`` in the input's format, rejected ones to ``rejected_path`` (JSON lines),
    as they are read. ``progress(bytes_read, input_bytes)`` is called every 1,000 records
    and at the end. ``tokenizer="auto"`` takes ``unicode`` when the start of the input (or
    ``against``) holds CJK, kana or Hangul, which the ``rouge`` tokenizer drops entirely
    (so a Chinese file would have no duplicate at all), else ``rouge``. Raises
    DedupInputError for bad input or arguments; nothing is written then (both outputs are
    replaced atomically at the end).
    """
    started = time.perf_counter()
    if rejected_path is None:
        rejected_path = _default_rejected_path(output_path)
    if rejected_path.resolve() == output_path.resolve():
        raise DedupInputError(
            f"the rejected-records file must differ from the output file ({output_path})"
        )
    for path in (output_path, rejected_path):
        if path.is_dir():
            raise DedupInputError("is a directory; name a file to write", path=path)
    try:  # the threshold is checked before anything is read or written
        NoveltyIndex(threshold=threshold)
    except ValueError as exc:
        raise DedupInputError(str(exc)) from exc

    # The against file's distinct instructions and their lines; the index holds them anyway.
    against_texts: list[str] = []
    lines = array("q")  # index position -> line of that instruction in its file
    against_read = 0
    if against is not None:
        seen: set[str] = set()
        with RecordReader(against) as other:
            for record in other:
                against_read += 1
                if record.instruction not in seen:
                    seen.add(record.instruction)
                    against_texts.append(record.instruction)
                    lines.append(record.line)
        del seen

    output_path.parent.mkdir(parents=True, exist_ok=True)
    rejected_path.parent.mkdir(parents=True, exist_ok=True)
    # The output is replaced first: when that fails, no rejected file is left behind either.
    with (
        RecordReader(input_path) as reader,
        atomic_file(rejected_path) as rejected_fh,
        atomic_file(output_path) as out_fh,
    ):
        fmt = reader.format
        records = iter(reader)
        # Ids by frequency over the start of the input make the index's prefixes hold the
        # rarest tokens (speed only; decisions do not change).
        head: list[Record] = []
        for record in records:
            head.append(record)
            if len(head) >= _VOCABULARY_SAMPLE or reader.bytes_read >= _VOCABULARY_BYTES:
                break
        chosen: Tokenizer
        if tokenizer == "auto":
            texts = chain(against_texts, (r.instruction for r in head))
            chosen = "unicode" if any(has_single_char_script(x) for x in texts) else "rouge"
        else:
            chosen = tokenizer
        index = NoveltyIndex(threshold=threshold, tokenizer=chosen)
        index.learn_vocabulary(chain(against_texts, (r.instruction for r in head)))
        index.add_many(against_texts)
        against_size = len(against_texts)
        del against_texts

        out = _Output(out_fh, fmt)
        kept_tasks: dict[str, int] = {}  # kept instruction -> line of its first record
        kept_records: set[bytes] = set()  # digests of kept records
        dropped_tasks: dict[bytes, _Dropped] = {}  # digest of a dropped instruction -> why
        read = kept = duplicates = 0
        total = reader.size
        for record in chain(head, records):
            read += 1
            instruction = record.instruction
            first_line = kept_tasks.get(instruction)
            if first_line is not None:  # another record of a kept task
                body = out.body(record)
                digest = _digest(body)
                if digest in kept_records:
                    duplicates += 1
                    why = _Dropped(instruction, 1.0, "input", first_line)
                    _reject(rejected_fh, record, fmt, "duplicate_record", why)
                else:
                    kept_records.add(digest)
                    out.write(body)
                    kept += 1
            else:
                key = _digest(instruction.encode("utf-8", "surrogatepass"))
                dropped = dropped_tasks.get(key)
                if dropped is None:
                    match = index.best_above(instruction)
                    if match is not None:
                        source = "against" if match.index < against_size else "input"
                        dropped = _Dropped(match.text, match.score, source, lines[match.index])
                        dropped_tasks[key] = dropped
                if dropped is not None:  # this task, or an earlier record of it, is dropped
                    _reject(rejected_fh, record, fmt, "near_duplicate", dropped)
                else:  # a new task: kept
                    index.add(instruction)
                    lines.append(record.line)
                    kept_tasks[instruction] = record.line
                    body = out.body(record)
                    kept_records.add(_digest(body))
                    out.write(body)
                    kept += 1
            if progress is not None and read % _PROGRESS_EVERY == 0:
                progress(reader.bytes_read, total)
        out.close()
    if progress is not None:
        progress(total, total)
    return DedupSummary(
        read=read,
        kept=kept,
        rejected=read - kept,
        against_size=against_read,
        seconds=time.perf_counter() - started,
        output_path=output_path,
        rejected_path=rejected_path,
        input_format=fmt,
        tasks=len(kept_tasks) + len(dropped_tasks),
        tasks_kept=len(kept_tasks),
        duplicate_records=duplicates,
        tokenizer=chosen,
    )


def _reject(fh: IO[bytes], record: Record, fmt: InputFormat, reason: str, why: _Dropped) -> None:
    entry = {
        "line": record.line,
        "record": _as_object(record, fmt),
        "reason": reason,
        "nearest": why.nearest,
        "score": why.score,
        "source": why.source,
        "nearest_line": why.nearest_line,
    }
    fh.write(_json_bytes(entry) + b"\n")
