"""Run a whole bootstrap against the loopback synthetic teacher, kill it once, resume, export.

Prints wall time, requests by stage, requests per accepted task and rejections by reason.
Usage: python benchmarks/e2e_run.py [--mode self-instruct|alpaca] [--target N]
       [--latency SECONDS] [--kill-after SECONDS]
"""

from __future__ import annotations

import argparse
import json
import signal
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
    """Run, kill, resume, export, and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", default="self-instruct")
    parser.add_argument("--target", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--kill-after", type=float, default=2.0)
    add_save_option(parser)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        OpenAITestServer(SyntheticTeacher(latency=args.latency)) as server,
    ):
        out = Path(tmp) / "run"
        command = [
            sys.executable, "-m", "selfinstruct", "bootstrap", "--mode", args.mode,
            "--base-url", server.base_url, "--model", "synthetic", "--out", str(out),
            "--target", str(args.target), "--concurrency", str(args.concurrency), "--quiet",
        ]  # fmt: skip
        start = time.monotonic()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(args.kill_after)
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = len((out / "pool.jsonl").read_text().splitlines())
        resumed = subprocess.run(command, capture_output=True, text=True, check=True)
        wall = time.monotonic() - start
        data = Path(tmp) / "data.json"
        subprocess.run(
            [sys.executable, "-m", "selfinstruct", "export", "--out", str(out), "-o", str(data)],
            check=True,
            capture_output=True,
        )
        records = json.loads(data.read_text())
        pool = [json.loads(line) for line in (out / "pool.jsonl").read_text().splitlines()]
        rejected = Counter(
            f"{r['stage']}/{r['reason']}"
            for r in map(json.loads, (out / "rejected.jsonl").read_text().splitlines())
        )
        state = json.loads((out / "state.json").read_text())
        stages = Counter(r.endpoint for r in server.requests)
        per_stage = {k: v["requests"] for k, v in state["usage"].items()}
        print(f"mode {args.mode}, target {args.target}, teacher latency {args.latency}s")
        print(f"killed after {args.kill_after}s: {killed} ({before} tasks committed then)")
        print(f"resumed: {resumed.stdout.strip()}")
        print(f"wall time, start to finish: {wall:.1f}s")
        print(f"pool {len(pool)} tasks, {len({t['instruction'] for t in pool})} distinct")
        print(f"alpaca export: {len(records)} records (one per instance)")
        print(f"server saw {len(server.requests)} requests ({dict(stages)})")
        print("logged responses by stage: " + ", ".join(f"{k} {v}" for k, v in per_stage.items()))
        print(
            "requests per accepted task: "
            + ", ".join(f"{k} {v / len(pool):.2f}" for k, v in per_stage.items())
        )
        print(f"rejections ({sum(rejected.values())}):")
        for reason, count in rejected.most_common():
            print(f"  {reason:<40}{count:>6}")


if __name__ == "__main__":
    with saved_output("--save" in sys.argv, __file__):
        main()
