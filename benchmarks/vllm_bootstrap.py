"""Time a real `selfinstruct bootstrap --backend vllm` run and print tasks per second.

Needs vLLM and a CUDA GPU. Runs the CLI as a user would, in a fresh run directory, and
prints the figures the run itself reports (model loading is timed apart from generation):

    python benchmarks/vllm_bootstrap.py --model Qwen/Qwen2.5-0.5B-Instruct --target 100
    python benchmarks/vllm_bootstrap.py --model M --target 1000 -- --data-parallel-size 8

Anything after `--` goes to `selfinstruct bootstrap` unchanged.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from evidence import add_save_option, saved_output

SUMMARY = re.compile(
    r"(\d+)/(\d+) tasks in (\d+) rounds \((\d+) new, (\d+) requests.*, ([\dhms]+)\)"
)


def _seconds(duration: str) -> float:
    """Read the CLI's durations: 45s, 3m07s, 1h02m."""
    parts = {unit: int(n) for n, unit in re.findall(r"(\d+)([hms])", duration)}
    return parts.get("h", 0) * 3600.0 + parts.get("m", 0) * 60.0 + parts.get("s", 0)


def main() -> int:
    """Run one bootstrap and print its throughput."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="Qwen/Qwen2.5-0.5B-Instruct")
    parser.add_argument("--target", type=int, default=100)
    parser.add_argument("--out", type=Path, default=None, help="run directory [default: temp]")
    parser.add_argument("extra", nargs="*", help="more bootstrap flags, after --")
    add_save_option(parser)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="vllm-bench-")) / "run"
    command = [
        sys.executable, "-m", "selfinstruct", "bootstrap", "--backend", "vllm",
        "--model", args.model, "--target", str(args.target), "--out", str(out), "--quiet",
        *args.extra,
    ]  # fmt: skip
    print("$", " ".join(command), flush=True)
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if done.returncode != 0:
        print(done.stderr[-4000:], file=sys.stderr)
        return done.returncode
    found = SUMMARY.search(done.stdout)
    if found is None:
        print(f"unexpected output: {done.stdout!r}", file=sys.stderr)
        return 1
    new, requests, generating = int(found[4]), int(found[5]), _seconds(found[6])
    state = json.loads((out / "state.json").read_text())
    tokens = sum(u["completion_tokens"] for u in state["usage"].values())
    print(done.stdout.strip())
    print(f"model          {args.model}")
    print(f"tasks          {new} new, {generating:.0f}s generating, {wall:.0f}s with loading")
    if generating:
        print(f"tasks/s        {new / generating:.2f}")
        print(f"requests/s     {requests / generating:.2f}")
        print(f"output tok/s   {tokens / generating:.0f}")
    print(f"run directory  {out}")
    return 0


if __name__ == "__main__":
    with saved_output("--save" in sys.argv, __file__):
        sys.exit(main())
