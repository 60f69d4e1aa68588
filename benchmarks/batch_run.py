"""Run a bootstrap with --batch-api against the loopback synthetic teacher; print batch figures.

Prints how many batches the run submitted, the requests in each and by stage, the direct
requests (there should be none), and what the same run costs in requests without the
Batch API (a direct run against the same teacher), so the two can be compared.
Usage: python benchmarks/batch_run.py [--target N] [--mode self-instruct|alpaca]
       [--batch-delay SECONDS] [--quiet-seconds SECONDS]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from evidence import add_save_option, saved_output

from selfinstruct.testing.server import OpenAITestServer
from selfinstruct.testing.teacher import SyntheticTeacher


def main() -> None:
    """Run with and without the Batch API and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", default="self-instruct")
    parser.add_argument("--target", type=int, default=200)
    parser.add_argument("--batch-delay", type=float, default=0.5)
    parser.add_argument("--quiet-seconds", type=float, default=0.5)
    add_save_option(parser)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        OpenAITestServer(SyntheticTeacher(), batch_delay=args.batch_delay) as server,
    ):
        config = Path(tmp) / "run.toml"
        config.write_text(f"[teacher]\nbatch_quiet_seconds = {args.quiet_seconds}\n")

        def bootstrap(out: Path, *extra: str) -> float:
            command = [
                sys.executable, "-m", "selfinstruct", "bootstrap", "--mode", args.mode,
                "--base-url", server.base_url, "--model", "synthetic", "--out", str(out),
                "--target", str(args.target), "--config", str(config), "--quiet", *extra,
            ]  # fmt: skip
            start = time.monotonic()
            subprocess.run(command, check=True, capture_output=True)
            return time.monotonic() - start

        direct_wall = bootstrap(Path(tmp) / "direct")
        direct_requests = len(server.requests)
        out = Path(tmp) / "batch"
        batch_wall = bootstrap(out, "--batch-api", "--batch-poll-seconds", "0.2")
        extra_direct = len(server.requests) - direct_requests
        batches = server.batches
        same_pool = (out / "pool.jsonl").read_bytes() == (
            Path(tmp) / "direct" / "pool.jsonl"
        ).read_bytes()
        accepted = json.loads((out / "state.json").read_text())["accepted"]

    sizes = [len(b.custom_ids) for b in batches]
    stages = Counter(key.split("/")[-2] for b in batches for key in b.custom_ids)
    carried = Counter(key for b in batches for key in b.custom_ids)
    print(f"mode {args.mode}, target {args.target}: {accepted} tasks accepted")
    print(f"batches            {len(batches)}")
    print(f"requests per batch {sizes}")
    print(f"batch requests     {sum(sizes)} ({dict(sorted(stages.items()))})")
    print(f"in two batches     {sum(1 for n in carried.values() if n > 1)}")
    print(f"direct requests    {extra_direct} with --batch-api, {direct_requests} without")
    print(f"same pool as direct run: {same_pool}")
    print(
        f"wall               {batch_wall:.1f}s with --batch-api (batches take "
        f"{args.batch_delay}s here, up to 24 h at OpenAI), {direct_wall:.1f}s without"
    )


if __name__ == "__main__":
    with saved_output("--save" in sys.argv, __file__):
        main()
