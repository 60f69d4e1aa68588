"""Exports and other atomic writes: unique temporaries, safe output paths, checked logs."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import bootstrap_args, cli_env, run_cli

from selfinstruct.seeds import load_seeds
from selfinstruct.store import atomic_file, atomic_write
from selfinstruct.testing.server import OpenAITestServer
from selfinstruct.testing.teacher import SyntheticTeacher


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAITestServer]:
    """Serve the synthetic teacher for this module."""
    with OpenAITestServer(SyntheticTeacher()) as srv:
        yield srv


@pytest.fixture(scope="module")
def finished(server: OpenAITestServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Grow a 20-task alpaca-mode run once; tests work on copies of it."""
    out = tmp_path_factory.mktemp("runs") / "base"
    done = run_cli(*bootstrap_args(server, out, "--mode", "alpaca", "--target", "20"))
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture
def run(finished: Path, tmp_path: Path) -> Path:
    """Return a private copy of the finished run."""
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out


def _pool(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "pool.jsonl").read_text().splitlines()]


def _records(run: Path) -> list[dict[str, str]]:
    return [
        {"instruction": t["instruction"], "input": i["input"], "output": i["output"]}
        for t in _pool(run)
        for i in t["instances"]
    ]


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    return done.stderr


def _temporaries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# -- item 12: unique, exclusive temporaries ------------------------------------------------


def test_planted_tmp_symlink_is_not_followed(run: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "data.json"
    (tmp_path / "data.json.tmp").symlink_to(victim)
    done = run_cli("export", "--out", str(run), "-o", str(target))
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "precious"
    assert (tmp_path / "data.json.tmp").is_symlink()
    assert json.loads(target.read_text()) == _records(run)
    # The run directory's own commit record is written the same way.
    (run / "state.json.tmp").symlink_to(victim)
    assert atomic_write(run / "state.json", (run / "state.json").read_bytes()) is None
    assert victim.read_text() == "precious"


def test_another_writers_temporary_is_left_alone(run: Path, tmp_path: Path) -> None:
    target = tmp_path / "data.jsonl"
    other = tmp_path / "data.jsonl.tmp"  # the name main used: another export's half file
    other.write_text("half of another export")
    done = run_cli("export", "--out", str(run), "-f", "jsonl", "-o", str(target))
    assert done.returncode == 0, done.stderr
    assert other.read_text() == "half of another export"
    assert [json.loads(line) for line in target.read_text().splitlines()] == _records(run)


def test_concurrent_exports_to_one_path_never_mix(run: Path, tmp_path: Path) -> None:
    target = tmp_path / "chat.jsonl"
    systems = [f"System prompt number {n}." for n in range(4)]
    expected = []
    for n, system in enumerate(systems):
        alone = tmp_path / f"alone{n}.jsonl"
        done = run_cli("export", "--out", str(run), "-f", "openai", "--system", system,
                       "-o", str(alone))  # fmt: skip
        assert done.returncode == 0, done.stderr
        expected.append(alone.read_bytes())
    for _ in range(2):
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "selfinstruct",
                    "export",
                    "--out",
                    str(run),
                    "-f",
                    "openai",
                    "--system",
                    system,
                    "-o",
                    str(target),
                ],
                env=cli_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for system in systems
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
        assert target.read_bytes() in expected  # one whole export, never a mix
        assert _temporaries(tmp_path) == []


def test_failed_write_leaves_no_temporary(run: Path, tmp_path: Path) -> None:
    target = tmp_path / "data.json"
    target.write_text("[]\n")  # an earlier export stays whole when the new one fails

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))  # EFBIG past 100 bytes

    done = subprocess.run(
        [sys.executable, "-m", "selfinstruct", "export", "--out", str(run), "-o", str(target)],
        env=cli_env(), capture_output=True, text=True, preexec_fn=small_files, timeout=120,
        check=False,
    )  # fmt: skip
    line = _one_line_error(done)
    assert line.startswith(f"error: {target}: File too large"), line  # names it, not a temp
    assert _temporaries(tmp_path) == [] and [p.name for p in tmp_path.glob(".*")] == []
    assert target.read_text() == "[]\n"

    class Boom(Exception):
        pass

    with pytest.raises(Boom), atomic_file(tmp_path / "x.bin") as fh:
        fh.write(b"partial")
        raise Boom
    assert not (tmp_path / "x.bin").exists()
    assert [p.name for p in tmp_path.glob(".*")] == []


def test_init_never_writes_through_a_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim.toml"
    victim.write_text("precious")
    link = tmp_path / "run.toml"
    link.symlink_to(victim)
    done = run_cli("init", str(link))
    assert "already exists" in _one_line_error(done)
    done = run_cli("init", str(link), "--force")
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "precious"
    assert not link.is_symlink() and "[teacher]" in link.read_text()
    assert _temporaries(tmp_path) == []


# -- item 13: where an export may go -------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "fmt", "message"),
    [
        ("run/pool.jsonl", "jsonl", "inside the run directory"),
        ("run/new.json", "alpaca", "inside the run directory"),
        ("run", "hf", "inside the run directory"),
        ("run/sub/../data.json", "alpaca", "inside the run directory"),
        ("somedir", "alpaca", "somedir: is a directory"),
        ("", "alpaca", "--output: empty path"),
        ("  ", "jsonl", "--output: empty path"),
    ],
)
def test_export_refuses_bad_output_paths(
    run: Path, tmp_path: Path, where: str, fmt: str, message: str
) -> None:
    (tmp_path / "somedir").mkdir()
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    output = str(tmp_path / where) if where.strip() else where
    done = run_cli("export", "--out", str(run), "-f", fmt, "-o", output)
    assert message in _one_line_error(done)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert list((tmp_path / "somedir").iterdir()) == []
    assert _temporaries(run) == [] and _temporaries(tmp_path) == []


def test_run_still_resumes_after_refused_export(
    server: OpenAITestServer, run: Path, tmp_path: Path
) -> None:
    done = run_cli("export", "--out", str(run), "-f", "jsonl", "-o", str(run / "pool.jsonl"))
    assert done.returncode == 1
    more = run_cli(*bootstrap_args(server, run, "--mode", "alpaca", "--target", "25"))
    assert more.returncode == 0, more.stderr


# -- item 14: export checks the committed logs as a resume does ---------------------------


def _tear(run: Path) -> None:
    data = (run / "pool.jsonl").read_bytes()
    (run / "pool.jsonl").write_bytes(data[:-10])  # the last committed line loses its end


def _edit_line(run: Path) -> None:
    lines = (run / "pool.jsonl").read_text().splitlines(keepends=True)
    task = json.loads(lines[2])
    task["instances"] = "none"
    lines[2] = json.dumps(task) + "\n"
    (run / "pool.jsonl").write_text("".join(lines))


def _join_lines(run: Path) -> None:
    data = (run / "pool.jsonl").read_bytes()
    first = data.index(b"\n")
    (run / "pool.jsonl").write_bytes(data[:first] + b" " + data[first + 1 :] + b"\n")


def _foreign_tail(run: Path) -> None:
    with open(run / "pool.jsonl", "ab") as fh:
        fh.write(json.dumps({"round": 0, "instruction": "smuggled in"}).encode() + b"\n")


@pytest.mark.parametrize("damage", [_tear, _edit_line, _join_lines, _foreign_tail])
def test_export_refuses_damaged_logs_as_bootstrap_does(
    server: OpenAITestServer, run: Path, tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    damage(run)
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.iterdir()}
    target = tmp_path / "data.json"
    refused = _one_line_error(run_cli("export", "--out", str(run), "-o", str(target)))
    assert not target.exists()
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.iterdir()} == before
    resumed = run_cli(*bootstrap_args(server, run, "--mode", "alpaca", "--target", "20"))
    assert refused == _one_line_error(resumed)  # the same words, file, line and field
    assert str(run / "pool.jsonl") in refused


def test_export_of_a_run_without_its_commit_record(run: Path, tmp_path: Path) -> None:
    pool = _pool(run)
    (run / "state.json").unlink()
    target = tmp_path / "data.jsonl"
    done = run_cli("export", "--out", str(run), "-f", "jsonl", "-o", str(target))
    assert done.returncode == 0, done.stderr
    last = max(t["round"] for t in pool)
    kept = [t for t in pool if t["round"] < last]
    # The rounds a resume would keep: the last one seen may be incomplete.
    assert len(target.read_text().splitlines()) == sum(len(t["instances"]) for t in kept)
    assert not (run / "state.json").exists()  # read only


# -- issue 15 item 7: unknown classification stays unknown --------------------------------


def test_tasks_export_of_alpaca_mode_keeps_classification_unknown(
    server: OpenAITestServer, run: Path, tmp_path: Path
) -> None:
    tasks = tmp_path / "tasks.jsonl"
    done = run_cli("export", "--out", str(run), "-f", "tasks", "-o", str(tasks))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in tasks.read_text().splitlines()]
    assert rows and all(row["is_classification"] is None for row in rows)
    seeds = load_seeds(tasks)  # such a file seeds another run
    assert all(t.is_classification is None for t in seeds.tasks)
    assert run_cli("seeds", "check", str(tasks)).returncode == 0
    again = tmp_path / "again"
    done = run_cli(*bootstrap_args(server, again, "--seeds", str(tasks), "--target", "5"))
    assert done.returncode == 0, done.stderr
    assert len(_pool(again)) >= 5
    assert os.path.getsize(again / "pool.jsonl") > 0


def test_export_while_a_run_is_going_is_a_committed_prefix(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    out = tmp_path / "live"
    args = bootstrap_args(server, out, "--mode", "alpaca", "--target", "600")
    proc = subprocess.Popen(
        [sys.executable, "-m", "selfinstruct", *args],
        env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        exports = []
        for n in range(8):  # whatever the interleaving, each export is a committed prefix
            target = tmp_path / f"during{n}.jsonl"
            done = run_cli("export", "--out", str(out), "-f", "jsonl", "-o", str(target))
            if "not a run directory" in done.stderr:
                continue  # the run has not written config.json yet
            assert done.returncode == 0, done.stderr
            exports.append([json.loads(line) for line in target.read_text().splitlines()])
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    final = _records(out)
    for records in exports:
        assert records == final[: len(records)]
