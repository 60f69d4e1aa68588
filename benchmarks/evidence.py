"""Save a benchmark's raw output under benchmarks/results/, naming the commit it measured.

Every figure in README.md comes from a benchmark run on one stated commit; ``--save`` keeps
that run's output as evidence. The file is ``benchmarks/results/<script>-<short hash>
[-<options>].txt`` and opens with the command line, the commit, the date and the machine's
load at the start (the machine may be shared, so timings can be noisy: the load says how
much). A tree with uncommitted changes to tracked files is refused: the figures would
belong to no commit.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def add_save_option(parser: argparse.ArgumentParser) -> None:
    """Add --save to a benchmark's argument parser."""
    parser.add_argument(
        "--save",
        action="store_true",
        help="also write the output to benchmarks/results/<script>-<commit>[-<options>].txt",
    )


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )


# A copy of a commit without git (a benchmark machine that is sent the working tree alone)
# names the commit it was copied from here; checking that the copy is clean is then the
# sender's job.
COMMIT_ENV = "SELFINSTRUCT_BENCH_COMMIT"


def commit() -> str:
    """Return the short hash of HEAD; exit if tracked files have uncommitted changes."""
    if os.environ.get(COMMIT_ENV):
        return os.environ[COMMIT_ENV]
    head = _git("rev-parse", "--short", "HEAD")
    if head.returncode != 0:
        raise SystemExit(f"--save: not a git checkout: {head.stderr.strip()}")
    if _git("diff", "--quiet", "HEAD").returncode != 0:
        raise SystemExit("--save: tracked files have uncommitted changes; commit them first")
    return head.stdout.strip()


def result_path(script: str, argv: list[str], short_hash: str) -> Path:
    """Name the results file of a run: script, commit, and the options that shaped it."""
    options = [a for a in argv if a != "--save"]
    label = re.sub(r"[^A-Za-z0-9.]+", "-", " ".join(options)).strip("-")
    return RESULTS / f"{script}-{short_hash}{'-' + label if label else ''}.txt"


def _usable_cpus() -> int:
    """Return the CPUs this process may run on (a benchmark may be pinned to a few)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def header(argv: list[str], short_hash: str, script_path: str) -> str:
    """Return the first lines of a results file: command, commit, date, machine and load."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"# command: python {Path(script_path).resolve().relative_to(ROOT)} {' '.join(argv)}\n"
        f"# commit: {short_hash}\n"
        f"# date: {date}\n"
        f"# machine: {os.cpu_count()} CPUs ({_usable_cpus()} usable by this run), "
        f"Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}; load average at start (1, 5, 15 min): "
        f"{load} (the machine may be shared: timings are noisier the higher it is)\n"
    )


class _Tee:
    """Write to the terminal and to the results file."""

    def __init__(self, *streams: TextIO) -> None:
        self._streams = streams

    def write(self, text: str) -> int:
        for stream in self._streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self._streams:
            stream.flush()


@contextlib.contextmanager
def saved_output(save: bool, script_path: str, argv: list[str] | None = None) -> Iterator[None]:
    """With `save`, copy everything printed inside the block into the results file."""
    if not save:
        yield
        return
    argv = sys.argv[1:] if argv is None else argv
    short_hash = commit()
    path = result_path(Path(script_path).stem, argv, short_hash)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        out.write(header(argv, short_hash, script_path))
        out.flush()
        stdout = sys.stdout
        sys.stdout = _Tee(stdout, out)  # type: ignore[assignment]
        try:
            yield
        finally:
            sys.stdout = stdout
            print(f"saved {path.relative_to(ROOT)}")
