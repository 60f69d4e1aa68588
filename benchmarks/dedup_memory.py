"""Measure `selfinstruct dedup` on a large Alpaca JSON file: peak memory and time.

Run ``python benchmarks/dedup_memory.py [--mb 300] [--format alpaca|jsonl]`` from the
repository root. It writes a deterministic export-like file of about ``--mb`` megabytes
(tasks of 1 to 5 instances sharing their instruction, as ``selfinstruct export`` writes
them, with a share of near-duplicate tasks), runs the real CLI on it in a child process
and prints the child's peak resident memory (``ru_maxrss`` from ``wait4``) and wall time,
next to the same figures for a tiny file (the interpreter and imports alone). The first
line names the commit measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from evidence import add_save_option, saved_output  # noqa: E402

NEAR_DUPLICATE_SHARE = 0.05  # of tasks: an earlier instruction with one word changed
VOCABULARY = 4000  # distinct words: random instructions stay far apart under ROUGE-L


def commit(checkout: Path = REPO) -> str:
    """Return the checkout's commit, marked -dirty when the tree has changes."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=checkout, capture_output=True, text=True, timeout=30, check=False
        )
        return done.stdout.strip()

    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def _words(rng: random.Random, vocab: list[str], n: int) -> str:
    return " ".join(rng.choice(vocab) for _ in range(n))


def generate(path: Path, megabytes: float, fmt: str, seed: int = 0) -> tuple[int, int]:
    """Write the input file; return (records, tasks)."""
    rng = random.Random(seed)
    vocab = [f"{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}w{i}" for i in range(VOCABULARY)]
    target = int(megabytes * 1_000_000)
    written = records = tasks = 0
    instructions: list[str] = []
    with path.open("w", encoding="utf-8") as fh:
        if fmt == "alpaca":
            fh.write("[\n")
        while written < target:
            if instructions and rng.random() < NEAR_DUPLICATE_SHARE:
                tokens = rng.choice(instructions).split()
                tokens[rng.randrange(len(tokens))] = rng.choice(vocab)
                instruction = " ".join(tokens)
            else:
                instruction = _words(rng, vocab, rng.randint(8, 16))
                if len(instructions) < 50_000:
                    instructions.append(instruction)
            tasks += 1
            for _ in range(rng.randint(1, 5)):
                row = {
                    "instruction": instruction,
                    "input": _words(rng, vocab, rng.randint(0, 30)),
                    "output": _words(rng, vocab, rng.randint(40, 160)),
                }
                if fmt == "alpaca":
                    text = ("  " if not records else ",\n  ") + json.dumps(row, indent=2).replace(
                        "\n", "\n  "
                    )
                else:
                    text = json.dumps(row) + "\n"
                fh.write(text)
                written += len(text)
                records += 1
        if fmt == "alpaca":
            fh.write("\n]\n")
    return records, tasks


def measure(source: Path, out: Path, code: Path = REPO) -> tuple[float, int, str]:
    """Run the CLI's dedup on source; return (wall seconds, peak RSS in bytes, its stdout).

    `code` is the checkout whose selfinstruct package runs (another one to compare).
    """
    env = dict(os.environ, PYTHONPATH=str(code))
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "selfinstruct", "dedup", str(source), "-o", str(out)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=code,
    )  # fmt: skip
    assert proc.stdout is not None
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"dedup failed with exit status {proc.returncode}")
    return seconds, usage.ru_maxrss * 1024, stdout.strip()  # ru_maxrss is in KiB on Linux


def main(argv: Sequence[str] | None = None) -> int:
    """Generate, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=300.0, help="input size in megabytes")
    parser.add_argument("--format", choices=("alpaca", "jsonl"), default="alpaca")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--compare", type=Path, metavar="CHECKOUT", help="also run another checkout's dedup"
    )
    add_save_option(parser)
    args = parser.parse_args(argv)
    with saved_output(args.save, __file__, None if argv is None else list(argv)):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    print(f"commit {commit()}: benchmarks/dedup_memory.py --mb {args.mb} --format {args.format}")
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        suffix = ".json" if args.format == "alpaca" else ".jsonl"
        tiny, large = Path(tmp) / f"tiny{suffix}", Path(tmp) / f"large{suffix}"
        generate(tiny, 0.01, args.format, args.seed)
        started = time.perf_counter()
        records, tasks = generate(large, args.mb, args.format, args.seed)
        size = large.stat().st_size
        print(
            f"input      {size / 1e6:.1f} MB, {records} records, {tasks} tasks "
            f"(generated in {time.perf_counter() - started:.1f} s)"
        )
        base_s, base_rss, _ = measure(tiny, Path(tmp) / f"tiny-kept{suffix}")
        print(f"baseline   tiny file: {base_s:.2f} s, peak RSS {base_rss / 1e6:.1f} MB")
        seconds, rss, stdout = measure(large, Path(tmp) / f"kept{suffix}")
        print(f"dedup      {stdout.split(' in ')[0]}")
        print(
            f"result     {seconds:.1f} s wall ({size / 1e6 / seconds:.1f} MB/s), "
            f"peak RSS {rss / 1e6:.1f} MB ({rss / size:.2f}x the input; "
            f"{(rss - base_rss) / 1e6:.1f} MB above the tiny file's)"
        )
        if args.compare is not None:
            other = commit(args.compare)
            seconds, rss, stdout = measure(large, Path(tmp) / f"other{suffix}", args.compare)
            print(f"compare    {args.compare} at {other}: {stdout.split(' in ')[0]}")
            print(
                f"compare    {seconds:.1f} s wall, peak RSS {rss / 1e6:.1f} MB "
                f"({rss / size:.2f}x the input)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
