"""The run directory: append-only logs, an atomic commit record, resume and a lock.

Layout of ``outputs/<run>/``::

    config.json      the resolved config and the run's identity (no secrets), written once
    state.json       the commit record, replaced atomically after each round
    pool.jsonl       accepted tasks, append-only
    rejected.jsonl   every rejected candidate with its reason, append-only
    responses.jsonl  every teacher response, keyed by request; replayed on resume
    batches.jsonl    with --batch-api only: batches submitted and how they ended
                     (written by backends/batch_api.py)
    lock             held (flock) by the one process writing the run
    limits.json      the teacher's learned concurrency limit, to resume from (operational)

A round's pool and rejected lines are appended, flushed and fsynced before state.json
records their byte offsets; on resume the two logs are cut back to those offsets, so a
half-written round vanishes and is redone from the logged responses at no cost.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import secrets
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from selfinstruct.errors import ConfigError, RunDirError, field_path
from selfinstruct.records import Completion, Task, Usage

FORMAT = 1
POOL = "pool.jsonl"
REJECTED = "rejected.jsonl"
RESPONSES = "responses.jsonl"
STATE = "state.json"
CONFIG = "config.json"
LOCK = "lock"
LIMITS = "limits.json"  # what the concurrency limit learned (operational; openai_compat.py)


@contextlib.contextmanager
def _naming(path: Path, tmp: Path | None = None) -> Iterator[None]:
    """Name `path` in a write error, which os.write leaves nameless (a full disk).

    An error naming `tmp`, the temporary that stands for `path`, names `path` instead.
    """
    try:
        yield
    except OSError as exc:
        if exc.filename is not None and (tmp is None or exc.filename != str(tmp)):
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from None


# A temporary's name: hidden, beside its target, unique (48 random bits), and short enough
# for NAME_MAX (255 bytes on Linux filesystems) whatever the target's name.
_TMP_NAME_MAX = 200
# O_EXCL: never reuse a file that exists (another writer's temporary); O_NOFOLLOW: never
# write through a planted symlink. Mode 0o666 lets the umask decide, as open() would.
_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _create_temp(path: Path) -> tuple[int, Path]:
    """Create a new, empty temporary file beside `path`; return its descriptor and path."""
    base = path.name if len(os.fsencode(path.name)) <= _TMP_NAME_MAX else "selfinstruct"
    for _ in range(100):
        tmp = path.with_name(f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, _TMP_FLAGS, 0o666), tmp
        except FileExistsError:
            continue  # a name taken by chance (or planted): draw another
        except OSError as exc:  # no such directory, no permission: about path, not tmp
            raise OSError(exc.errno, exc.strerror, str(path)) from None
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))


@contextlib.contextmanager
def atomic_file(path: Path, *, overwrite: bool = True) -> Iterator[IO[bytes]]:
    """Yield a binary file that takes the place of `path` when the block ends without error.

    Everything goes to a new temporary beside `path`, created exclusively and never through
    a symlink; at the end it is fsynced and renamed onto `path`, and the directory fsynced,
    so a crash leaves the old file or the new one and two writers never mix. On any error
    (an exception in the block, a full disk) the temporary is removed and the error names
    `path`. With `overwrite=False` an existing `path` (a symlink included) raises
    FileExistsError and is left alone.
    """
    fd, tmp = _create_temp(path)
    try:
        with _naming(path, tmp), os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        with _naming(path, tmp):
            if overwrite:
                os.replace(tmp, path)
            else:
                os.link(tmp, path, follow_symlinks=False)  # fails if path exists
                os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write(path: Path, data: bytes, *, overwrite: bool = True) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new file."""
    with atomic_file(path, overwrite=overwrite) as fh:
        fh.write(data)


def read_lines(path: Path, limit: int | None = None) -> Iterator[tuple[int, bytes, int]]:
    """Yield (line number, line, end offset) of complete non-blank lines up to byte `limit`.

    A torn last line (no newline yet) is skipped.
    """
    if not path.exists():
        return
    with open(path, "rb") as fh:
        data = fh.read() if limit is None else fh.read(limit)
    offset = 0
    lines = data.split(b"\n")
    for number, line in enumerate(lines[:-1], start=1):  # the last piece has no newline
        offset += len(line) + 1
        if line.strip():
            yield number, line, offset


@dataclass
class StageUsage:
    """What one stage cost: requests answered and tokens."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0  # of the completion tokens, those spent reasoning
    reasoning_estimated: int = 0  # answers whose reasoning tokens were estimated from text

    def add(self, usage: Usage) -> None:
        """Count one answered request."""
        self.requests += 1
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        self.reasoning_tokens += usage.reasoning_tokens
        self.reasoning_estimated += usage.reasoning_estimated

    def to_json(self) -> dict[str, int]:
        """Return the counts for state.json, leaving out reasoning that never happened.

        A run without a reasoning teacher writes the same state.json as before the
        reasoning counts existed.
        """
        return {k: v for k, v in self.__dict__.items() if v or not k.startswith("reasoning")}


@dataclass
class State:
    """The commit record: how far the logs are valid and what they hold."""

    rounds_committed: int = 0
    pool_bytes: int = 0
    rejected_bytes: int = 0
    accepted: int = 0
    rejections: Counter[str] = field(default_factory=Counter)
    target: int = 0  # the target of the latest bootstrap, for status displays
    usage: dict[str, StageUsage] = field(default_factory=dict)  # every logged response

    def to_json(self) -> bytes:
        """Serialise with a timestamp, for state.json."""
        return json.dumps(
            {
                "format": FORMAT,
                "rounds_committed": self.rounds_committed,
                "pool_bytes": self.pool_bytes,
                "rejected_bytes": self.rejected_bytes,
                "accepted": self.accepted,
                "rejections": dict(sorted(self.rejections.items())),
                "target": self.target,
                "usage": {k: v.to_json() for k, v in sorted(self.usage.items())},
                "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
            indent=2,
        ).encode()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> State:
        """Read state.json's content; raise KeyError/TypeError/ValueError when malformed."""
        state = cls(
            rounds_committed=int(data["rounds_committed"]),
            pool_bytes=int(data["pool_bytes"]),
            rejected_bytes=int(data["rejected_bytes"]),
            accepted=int(data["accepted"]),
            rejections=Counter({str(k): int(v) for k, v in data["rejections"].items()}),
            target=int(data.get("target", 0)),
            usage={str(k): StageUsage(**v) for k, v in data.get("usage", {}).items()},
        )
        if min(state.rounds_committed, state.pool_bytes, state.rejected_bytes) < 0:
            raise ValueError("negative count")
        return state


def _parse_task(path: Path, number: int, line: bytes) -> Task:
    try:
        return Task.model_validate_json(line)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = field_path(err["loc"]) or "(line)"
        raise RunDirError(f"{path}:{number}: field '{loc}': {err['msg']}") from None


def load_pool(run: Path, committed_only: bool = True) -> list[Task]:
    """Read the accepted tasks of a run, up to the last commit unless told otherwise."""
    state = read_state(run) if committed_only else None
    limit = state.pool_bytes if state is not None else None
    return [_parse_task(run / POOL, n, line) for n, line, _ in read_lines(run / POOL, limit)]


def load_admitted_rejections(run: Path, limit: int) -> dict[int, str]:
    """Return {seq: instruction} of rejected lines whose instruction had passed novelty.

    Such a task was dropped at classification or instances, yet its instruction stays in
    the novelty index, as in Self-Instruct; a resumed run must put it back.
    """
    admitted: dict[int, str] = {}
    path = run / REJECTED
    for number, line, _ in read_lines(path, limit):
        if b'"seq"' not in line:
            continue  # cheap pre-check: most rejections never reached the index
        try:
            entry = json.loads(line)
            if entry.get("seq") is not None:
                admitted[int(entry["seq"])] = str(entry["instruction"])
        except (ValueError, KeyError, TypeError):
            raise RunDirError(f"{path}:{number}: field 'seq': invalid line") from None
    return admitted


def read_state(run: Path) -> State | None:
    """Return the commit record, or None when it is missing or unreadable."""
    try:
        return State.from_json(json.loads((run / STATE).read_bytes()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def read_header(run: Path) -> dict[str, Any]:
    """Return config.json's content, or raise RunDirError when it is missing, foreign or newer."""
    path = run / CONFIG
    try:
        header = json.loads(path.read_bytes())
        if not isinstance(header["identity"], dict) or not isinstance(header["config"], dict):
            raise TypeError
    except FileNotFoundError:
        raise RunDirError(f"{run}: not a run directory (no {CONFIG}); pass --out RUN_DIR") from None
    except (OSError, ValueError, KeyError, TypeError):
        raise RunDirError(f"{path}: unreadable; not a run directory of this tool") from None
    if header.get("format") != FORMAT:
        version = header.get("selfinstruct", "an unknown version")
        raise RunDirError(
            f"{path}: field 'format': run format {header.get('format')!r} (written by "
            f"selfinstruct {version}); this version reads format {FORMAT} only"
        )
    return header  # type: ignore[no-any-return]


def stored_identity(run: Path) -> dict[str, Any] | None:
    """Return the identity in config.json, or None when the run has not started yet."""
    return read_header(run)["identity"] if (run / CONFIG).exists() else None


def _check_log(path: Path, data: bytes, size: int, lines: int, next_round: int) -> None:
    """Refuse a log whose committed part or uncommitted tail this tool did not write.

    The committed part must end at a line boundary and hold the recorded number of lines;
    after it there may only be the round that was being written when the run stopped.
    Without these checks an edited or replaced file would be cut at an arbitrary byte.
    """
    if (size and data[size - 1 : size] != b"\n") or data.count(b"\n", 0, size) != lines:
        raise RunDirError(
            f"{path}: does not match its commit record ({lines} lines in the first {size} "
            "bytes); the file was edited or replaced: restore it, or use another --out"
        )
    number = lines
    for line in data[size:].split(b"\n")[:-1]:  # the last piece is a torn line, if any
        number += 1
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # bytes a crash left half-written
        if not isinstance(entry, dict) or entry.get("round") != next_round:
            raise RunDirError(
                f"{path}:{number}: field 'round': this line is after the last commit but not "
                f"from round {next_round}, the one being written when the run stopped; the "
                "file was edited: restore it, or use another --out"
            )


def verify_logs(run: Path, state: State) -> list[tuple[Path, int]]:
    """Check pool and rejected logs against `state` as a resume does, reading only.

    Raise RunDirError naming the file (and line and field) when a log is torn, cut short
    or edited; return the (log, committed size) pairs that have an uncommitted tail.
    """
    pool_path, rejected_path = run / POOL, run / REJECTED
    logs = (
        (pool_path, state.pool_bytes, state.accepted),
        (rejected_path, state.rejected_bytes, sum(state.rejections.values())),
    )
    cuts: list[tuple[Path, int]] = []
    for path, size, lines in logs:
        data = path.read_bytes() if path.exists() else b""
        if len(data) < size:
            raise RunDirError(
                f"{path}: shorter ({len(data)} bytes) than its commit record ({size} "
                "bytes); the file was edited or truncated"
            )
        _check_log(path, data, size, lines, state.rounds_committed)
        if len(data) > size:
            cuts.append((path, size))
    for number, line, _ in read_lines(pool_path, state.pool_bytes):
        _parse_task(pool_path, number, line)
    load_admitted_rejections(run, state.rejected_bytes)
    return cuts


def rebuild_state(run: Path) -> State:
    """Recover a lost commit record from the logs, dropping the last round seen; read only."""
    pool_path, rejected_path = run / POOL, run / REJECTED
    last_round = -1
    logs: dict[Path, list[tuple[int, int]]] = {}
    for path in (pool_path, rejected_path):
        entries: list[tuple[int, int]] = []
        for number, line, offset in read_lines(path):
            try:
                round_number = int(json.loads(line)["round"])
            except (ValueError, KeyError, TypeError):
                raise RunDirError(f"{path}:{number}: field 'round': missing or invalid") from None
            entries.append((round_number, offset))
            last_round = max(last_round, round_number)
        logs[path] = entries
    # The last round may be incomplete; it is redone from logged responses for free.
    keep = max(last_round, 0)
    state = State(rounds_committed=keep)
    for path, entries in logs.items():
        kept = [end for r, end in entries if r < keep]
        size = kept[-1] if kept else 0
        if path == pool_path:
            state.pool_bytes, state.accepted = size, len(kept)
        else:
            state.rejected_bytes = size
            for _, line, _ in read_lines(path, size):
                entry = json.loads(line)
                key = f"{entry.get('stage', 'unknown')}/{entry.get('reason', 'unknown')}"
                state.rejections[key] += 1
    return state


# How often load_checked_pool reads again when a live run commits while it reads.
_CHECK_ATTEMPTS = 5


def load_checked_pool(run: Path) -> list[Task]:
    """Return the committed pool after the checks a resume makes; never locks or writes.

    A run whose committed logs are torn or edited is refused with the resume's RunDirError.
    A bootstrap may be committing meanwhile: the commit record is read before and after the
    logs, and the read is repeated until both agree, so the logs checked are the ones that
    record describes.
    """
    for _ in range(_CHECK_ATTEMPTS):
        before = read_state(run)
        state = before if before is not None else rebuild_state(run)
        try:
            verify_logs(run, state)
        except RunDirError:
            if _commit_point(read_state(run)) == _commit_point(before):
                raise
            continue  # a round was committed while we read: read again
        if _commit_point(read_state(run)) == _commit_point(before):
            pool_path = run / POOL
            return [
                _parse_task(pool_path, n, line)
                for n, line, _ in read_lines(pool_path, state.pool_bytes)
            ]
    raise RunDirError(f"{run}: the run kept committing while it was read; try again")


def _commit_point(state: State | None) -> tuple[int, int, int] | None:
    if state is None:
        return None
    return state.rounds_committed, state.pool_bytes, state.rejected_bytes


# What json.dumps(ensure_ascii=False) leaves raw but a log line must not hold: lone
# surrogates (UTF-8 cannot encode them, RFC 3629 sec. 3) and the line breaks other than
# "\\n" that line readers split on (NEL, U+2028, U+2029; Python's str.splitlines).
_ESCAPE = re.compile("[\ud800-\udfff\x85\u2028\u2029]")


def _json_line(entry: dict[str, Any]) -> bytes:
    """Serialise one log entry as a line of valid UTF-8 that json.loads turns back into it.

    Teacher text is logged exactly as it came, lone surrogates included: each becomes its
    JSON escape (\\ud800), which decodes to the same string, so a replay parses the very
    answer the first run parsed. (A high surrogate right before a low one would come back
    as one character, but no decoder hands us that pair: JSON's joins it, bytes.decode
    makes none.) Everything else stays UTF-8, not \\u-escaped, to keep non-English logs
    small.
    """
    line = json.dumps(entry, ensure_ascii=False)
    if _ESCAPE.search(line) is not None:
        line = _ESCAPE.sub(lambda m: f"\\u{ord(m.group()):04x}", line)
    return line.encode() + b"\n"


class RunDir:
    """Exclusive access to one run directory for the whole of a bootstrap."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fh: IO[str] | None = None
        self._pool: IO[bytes] | None = None
        self._rejected: IO[bytes] | None = None
        self._responses: IO[bytes] | None = None
        self.state = State()
        self.replay: dict[str, Completion] = {}

    # -- opening -------------------------------------------------------------------------

    def open(self, header: dict[str, Any]) -> None:
        """Lock, check identity against config.json (or write it), and recover the logs."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirError(f"{self.path}: cannot create run directory: {exc.strerror}") from None
        self._lock()
        try:
            config_path = self.path / CONFIG
            if config_path.exists():
                self._check_identity(config_path, header)
            elif found := [
                n for n in (POOL, REJECTED, RESPONSES, STATE) if (self.path / n).exists()
            ]:
                raise RunDirError(
                    f"{self.path}: has {found[0]} but no {CONFIG}; not a run directory of this tool"
                )
            else:
                atomic_write(config_path, json.dumps(header, indent=2).encode() + b"\n")
            self._recover()
            self._pool = open(self.path / POOL, "ab")
            self._rejected = open(self.path / REJECTED, "ab")
            self._responses = open(self.path / RESPONSES, "ab")
        except BaseException:
            self.close()  # release the lock and whatever was opened
            raise

    def _lock(self) -> None:
        fh = open(self.path / LOCK, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise RunDirError(
                f"{self.path}: in use by {holder}; wait for it or stop it first"
            ) from None
        # The kernel drops a flock when its process dies, so a stale file never blocks us.
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}\n")
        fh.flush()
        self._lock_fh = fh

    def check_identity(self, header: dict[str, Any]) -> None:
        """Refuse a header whose identity differs from the stored run's; reads only."""
        config_path = self.path / CONFIG
        if config_path.exists():
            self._check_identity(config_path, header)

    def _check_identity(self, config_path: Path, header: dict[str, Any]) -> None:
        stored_identity: dict[str, Any] = read_header(self.path)["identity"]
        new_identity: dict[str, Any] = header["identity"]
        # Name a setting that other defaults follow (mode, language) before what it changed.
        keys = sorted(set(stored_identity) | set(new_identity))
        for key in sorted(keys, key=lambda k: k not in ("mode", "language")):
            old, new = stored_identity.get(key), new_identity.get(key)
            if old != new:
                raise ConfigError(
                    f"{key}: the run in {self.path} was started with {old!r}, this command "
                    f"asks for {new!r}; keep the stored setting or choose another --out"
                )

    def _recover(self) -> None:
        state = read_state(self.path)
        if state is None:
            state = rebuild_state(self.path)
        # Everything is checked before anything is written: bad input changes no file.
        cuts = verify_logs(self.path, state)
        for path, size in cuts:
            os.truncate(path, size)  # drop a half-written round
        self.state = state
        atomic_write(self.path / STATE, state.to_json())
        self._load_responses()

    def _load_responses(self) -> None:
        path = self.path / RESPONSES
        if not path.exists():
            return
        valid = 0
        usage: dict[str, StageUsage] = {}
        self.state.usage = usage  # the log is the truth; the record may lag behind it
        for _, line, end in read_lines(path):
            valid = end
            try:
                entry = json.loads(line)
                counts = entry["usage"]
                completion = Completion(
                    text=str(entry["text"]),
                    finish_reason=str(entry["finish_reason"]),
                    # [prompt, completion], then reasoning tokens when there were any.
                    usage=Usage(
                        int(counts[0]),
                        int(counts[1]),
                        int(counts[2]) if len(counts) > 2 else 0,
                        bool(entry.get("reasoning_estimated", False)),
                    ),
                    refusal=None if entry.get("refused") is None else str(entry["refused"]),
                )
                round_number = int(entry["round"])
                stage = str(entry["stage"])
                key = str(entry["key"])
            except (ValueError, KeyError, TypeError, IndexError):
                continue  # a damaged entry is only a cache miss: that request is made again
            usage.setdefault(stage, StageUsage()).add(completion.usage)
            # Committed rounds are never redone, so only later rounds need their responses.
            if round_number >= self.state.rounds_committed:
                self.replay[key] = completion
        if valid < path.stat().st_size:
            os.truncate(path, valid)  # a torn last line from a crash mid-write

    # -- writing -------------------------------------------------------------------------

    def log_response(self, key: str, round_number: int, stage: str, completion: Completion) -> None:
        """Append one teacher response; flushed so a killed process keeps it."""
        assert self._responses is not None
        usage = completion.usage
        counts = [usage.prompt_tokens, usage.completion_tokens]
        # Reasoning counts only when there were any: other runs' lines stay as they were, and
        # an older selfinstruct still reads these (it takes the first two counts).
        if usage.reasoning_tokens:
            counts.append(usage.reasoning_tokens)
        entry: dict[str, Any] = {
            "key": key,
            "round": round_number,
            "stage": stage,
            "text": completion.text,
            "finish_reason": completion.finish_reason,
            "usage": counts,
        }
        if usage.reasoning_tokens and usage.reasoning_estimated:
            entry["reasoning_estimated"] = True
        if completion.refusal is not None:
            entry["refused"] = completion.refusal  # replayed as a refusal, never re-sent
        with _naming(self.path / RESPONSES):
            self._responses.write(_json_line(entry))
            self._responses.flush()
        self.state.usage.setdefault(stage, StageUsage()).add(completion.usage)

    def commit_round(
        self, round_number: int, tasks: Iterable[Task], rejections: Iterable[dict[str, Any]]
    ) -> None:
        """Append a round's results and record them atomically as committed."""
        assert self._pool is not None and self._rejected is not None
        assert self._responses is not None
        pool_data = b"".join(t.model_dump_json().encode() + b"\n" for t in tasks)
        reasons: Counter[str] = Counter()
        rejected_lines = []
        for rejection in rejections:
            reasons[f"{rejection['stage']}/{rejection['reason']}"] += 1
            rejected_lines.append(
                json.dumps({"round": round_number, **rejection}, ensure_ascii=False).encode()
            )
        rejected_data = b"".join(line + b"\n" for line in rejected_lines)
        for fh, data in ((self._pool, pool_data), (self._rejected, rejected_data)):
            with _naming(Path(fh.name)):
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        with _naming(self.path / RESPONSES):
            os.fsync(self._responses.fileno())
        self.state.rounds_committed = round_number + 1
        self.state.pool_bytes += len(pool_data)
        self.state.rejected_bytes += len(rejected_data)
        self.state.accepted += pool_data.count(b"\n")
        self.state.rejections.update(reasons)
        atomic_write(self.path / STATE, self.state.to_json())

    def save_state(self) -> None:
        """Rewrite the commit record as it stands, with usage up to the last logged response."""
        assert self._responses is not None
        self._responses.flush()
        os.fsync(self._responses.fileno())
        atomic_write(self.path / STATE, self.state.to_json())

    def close(self) -> None:
        """Close the logs and release the lock."""
        for fh in (self._pool, self._rejected, self._responses):
            if fh is not None:
                # After a failed write (disk full) the buffer still holds the rest; what
                # cannot be written now was never committed, and raising here would hide
                # the error that named the file.
                with contextlib.suppress(OSError):
                    fh.flush()
                    os.fsync(fh.fileno())
                with contextlib.suppress(OSError):
                    fh.close()
        self._pool = self._rejected = self._responses = None
        if self._lock_fh is not None:
            self._lock_fh.close()  # closing the descriptor releases the flock
            self._lock_fh = None
