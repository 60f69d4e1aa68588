"""Every benchmark can save its raw output as evidence for the README's figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

BENCHMARKS = sorted(p for p in (REPO / "benchmarks").glob("*.py") if p.name != "evidence.py")


@pytest.mark.parametrize("script", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_every_benchmark_takes_save(script: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(script), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert "--save" in done.stdout


def test_results_are_named_by_script_commit_and_options() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import evidence
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    results = REPO / "benchmarks" / "results"
    assert evidence.result_path("batch_run", ["--save"], "abc1234") == (
        results / "batch_run-abc1234.txt"
    )
    assert evidence.result_path("batch_run", ["--target", "1000", "--save"], "abc1234") == (
        results / "batch_run-abc1234-target-1000.txt"
    )
    head = evidence.header(["--quick"], "abc1234", str(REPO / "benchmarks" / "rouge_bench.py"))
    lines = head.splitlines()
    assert lines[0] == "# command: python benchmarks/rouge_bench.py --quick"
    assert lines[1] == "# commit: abc1234"
    assert "load average at start" in lines[3]


def test_every_saved_result_names_its_command_and_commit() -> None:
    for path in sorted((REPO / "benchmarks" / "results").glob("*.txt")):
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines[0].startswith("# command: python benchmarks/"), path
        commit = lines[1].removeprefix("# commit: ")
        assert path.stem.split("-")[1] == commit, path
        assert "load average at start" in lines[3], path
