"""The run directory: commit records, torn lines, lost state, the lock, identity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from selfinstruct.errors import ConfigError, RunDirError
from selfinstruct.records import Completion, Instance, Task, Usage
from selfinstruct.store import RunDir, load_pool, read_state

HEADER = {"format": 1, "identity": {"teacher.model": "m", "seed": 1}, "config": {}}


def _task(n: int, round_number: int) -> Task:
    return Task(
        id=f"task_{n:06d}",
        instruction=f"Instruction number {n} for testing.",
        instances=[Instance(input="", output=f"out {n}")],
        is_classification=None,
        round=round_number,
    )


def _rejection(reason: str) -> dict[str, str]:
    return {"stage": "instructions", "reason": reason, "instruction": "x", "detail": ""}


def _open(path: Path, header: dict[str, object] | None = None) -> RunDir:
    run = RunDir(path)
    run.open(header or HEADER)
    return run


def _two_rounds(path: Path) -> None:
    run = _open(path)
    run.log_response("r0/p0/x", 0, "instructions", Completion("a", "stop", Usage(3, 4)))
    run.commit_round(0, [_task(1, 0), _task(2, 0)], [_rejection("too_short")])
    run.log_response("r1/p0/x", 1, "instructions", Completion("b", "length", Usage(5, 6)))
    run.commit_round(1, [_task(3, 1)], [_rejection("near_duplicate"), _rejection("too_short")])
    run.close()


def test_commit_and_reopen(tmp_path: Path) -> None:
    _two_rounds(tmp_path)
    state = read_state(tmp_path)
    assert state is not None
    assert (state.rounds_committed, state.accepted) == (2, 3)
    assert state.rejections == {"instructions/too_short": 2, "instructions/near_duplicate": 1}
    assert state.usage["instructions"].requests == 2
    assert state.usage["instructions"].completion_tokens == 10
    run = _open(tmp_path)
    assert run.state.rounds_committed == 2
    assert run.replay == {}  # committed rounds are never redone, so nothing to replay
    run.close()
    assert [t.id for t in load_pool(tmp_path)] == ["task_000001", "task_000002", "task_000003"]


def test_half_written_round_is_cut_and_its_responses_replayed(tmp_path: Path) -> None:
    _two_rounds(tmp_path)
    with open(tmp_path / "pool.jsonl", "ab") as fh:  # round 2 died while being written
        fh.write(_task(4, 2).model_dump_json().encode() + b"\n" + b'{"id": "task_0000')
    with open(tmp_path / "responses.jsonl", "ab") as fh:
        line = {"key": "r2/p0/x", "round": 2, "stage": "instructions", "text": "c",
                "finish_reason": "stop", "usage": [1, 1]}  # fmt: skip
        fh.write(json.dumps(line).encode() + b'\n{"key": "r2/p1')
    run = _open(tmp_path)
    assert run.replay == {"r2/p0/x": Completion("c", "stop", Usage(1, 1))}
    run.close()
    assert len(load_pool(tmp_path)) == 3
    assert (tmp_path / "responses.jsonl").read_bytes().endswith(b"\n")


def test_lost_state_is_rebuilt_dropping_the_last_round(tmp_path: Path) -> None:
    _two_rounds(tmp_path)
    (tmp_path / "state.json").unlink()
    run = _open(tmp_path)
    assert run.state.rounds_committed == 1  # round 1 may have been partial: redo it
    assert run.state.accepted == 2
    assert run.state.rejections == {"instructions/too_short": 1}
    assert "r1/p0/x" in run.replay  # and redoing it costs nothing
    run.close()


def test_garbage_state_is_rebuilt(tmp_path: Path) -> None:
    _two_rounds(tmp_path)
    (tmp_path / "state.json").write_text("{not json")
    run = _open(tmp_path)
    assert run.state.accepted == 2
    run.close()


def test_shortened_pool_is_refused(tmp_path: Path) -> None:
    _two_rounds(tmp_path)
    data = (tmp_path / "pool.jsonl").read_bytes()
    (tmp_path / "pool.jsonl").write_bytes(data[:10])
    with pytest.raises(RunDirError, match="pool.jsonl: shorter"):
        _open(tmp_path)
    assert (tmp_path / "pool.jsonl").read_bytes() == data[:10]


def test_changed_identity_names_the_field(tmp_path: Path) -> None:
    _two_rounds(tmp_path)
    other = {**HEADER, "identity": {"teacher.model": "other", "seed": 1}}
    with pytest.raises(ConfigError, match="teacher.model: .*'m'.*'other'"):
        _open(tmp_path, other)


def test_foreign_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pool.jsonl").write_text('{"something": "else"}\n')
    with pytest.raises(RunDirError, match="no config.json"):
        _open(tmp_path)


def test_live_lock_is_respected_and_dead_lock_ignored(tmp_path: Path) -> None:
    run = _open(tmp_path)
    with pytest.raises(RunDirError, match=f"in use by pid {os.getpid()}"):
        _open(tmp_path)
    run.close()
    # A process that took the lock and died leaves the file, not the lock.
    code = (
        "import sys; from pathlib import Path; from selfinstruct.store import RunDir; "
        f"r = RunDir(Path({str(tmp_path)!r})); r.open({HEADER!r}); import os; os._exit(9)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 9
    assert (tmp_path / "lock").read_text().startswith("pid ")
    _open(tmp_path).close()


def test_failed_commit_record_write_leaves_no_temporary(tmp_path: Path) -> None:
    def small_files() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (50, 50))  # state.json is larger

    script = (
        "import sys; from pathlib import Path; from selfinstruct.store import atomic_write\n"
        "atomic_write(Path(sys.argv[1]), b'x' * 4096)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "state.json")],
        capture_output=True, text=True, preexec_fn=small_files, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "File too large" in done.stderr
    assert f"'{tmp_path / 'state.json'}'" in done.stderr  # names the file, not a temporary
    assert list(tmp_path.iterdir()) == []
