"""Measure the whole pipeline against simulated OpenAI-compatible teachers on 127.0.0.1.

Each simulated teacher is the project's loopback server with the synthetic teacher behind
it: deterministic tasks with a tunable share of near duplicates and blacklisted words,
latency = a fixed part + completion tokens / decode rate, and a capacity of K requests
at once (429 beyond it). The real CLI runs in a subprocess to the target, so its CPU time
and peak memory are the tool's alone.

Prints: time to N, requests, teacher utilisation (mean busy slots / K over the run),
client CPU seconds per accepted task, and peak memory (max RSS of the bootstrap process).

    python benchmarks/throughput.py --capacity 64 --target 6000
    python benchmarks/throughput.py --capacity 256 --target 16000 --prompts-per-round 16
    python benchmarks/throughput.py --servers 4 --capacity 64 --target 16000 --prompts-per-round 16
    python benchmarks/throughput.py --instant --target 52000 --capacity 1024

The defaults keep about 150 requests in flight (17 rounds of 4 prompts and their follow-ups),
so a teacher that takes 256 needs more prompts per round to be kept busy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from evidence import add_save_option, saved_output

from selfinstruct.testing.server import OpenAITestServer
from selfinstruct.testing.teacher import SyntheticTeacher


def main() -> None:
    """Start the teachers, run the bootstrap to the target, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=int, default=3000, help="tasks to reach (N)")
    parser.add_argument("--capacity", type=int, default=64, help="K: requests each teacher serves")
    parser.add_argument("--servers", type=int, default=1, help="simulated teachers (endpoints)")
    parser.add_argument("--latency", type=float, default=0.3, help="fixed seconds per request")
    parser.add_argument("--decode-rate", type=float, default=50.0, help="tokens per second")
    parser.add_argument("--instant", action="store_true", help="no latency at all")
    parser.add_argument("--near-duplicate-rate", type=float, default=0.10)
    parser.add_argument("--blacklist-rate", type=float, default=0.04)
    parser.add_argument("--mode", default="self-instruct")
    parser.add_argument("--concurrency", default="auto", help="auto (default) or a number")
    parser.add_argument("--prompts-per-round", type=int, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="keep the run directory here")
    add_save_option(parser)
    args = parser.parse_args()

    latency, rate = (0.0, 0.0) if args.instant else (args.latency, args.decode_rate)
    teacher = SyntheticTeacher(
        latency=latency,
        tokens_per_second=rate,
        near_duplicate_rate=args.near_duplicate_rate,
        blacklist_rate=args.blacklist_rate,
    )
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        out = args.keep or tmp / "run"
        servers = [
            stack.enter_context(OpenAITestServer(teacher, capacity=args.capacity, history=0))
            for _ in range(args.servers)
        ]
        command = [
            sys.executable, "-m", "selfinstruct", "bootstrap", "--mode", args.mode,
            "--model", "synthetic", "--out", str(out), "--target", str(args.target),
            "--concurrency", args.concurrency, "--quiet",
        ]  # fmt: skip
        for server in servers:
            command += ["--base-url", server.base_url]
        if args.prompts_per_round is not None:
            command += ["--prompts-per-round", str(args.prompts_per_round)]
        env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
        before = [s.stats() for s in servers]
        start = time.monotonic()
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        samples: list[int] = []  # requests in flight on all teachers, every 0.25 s
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            samples.append(sum(s.in_flight for s in servers))
            time.sleep(0.25)
        wall = time.monotonic() - start
        after = [s.stats() for s in servers]
        assert proc.stdout is not None and proc.stderr is not None
        stdout, stderr = proc.stdout.read().decode(), proc.stderr.read().decode()
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"bootstrap failed:\n{stdout}{stderr}")
        state = json.loads((out / "state.json").read_text())

    accepted = state["accepted"]
    answered = sum(a.answered - b.answered for a, b in zip(after, before, strict=True))
    refused = sum(
        a.rejected_over_capacity - b.rejected_over_capacity
        for a, b in zip(after, before, strict=True)
    )
    busy = sum(a.busy_seconds - b.busy_seconds for a, b in zip(after, before, strict=True))
    slots = args.capacity * args.servers
    cpu = usage.ru_utime + usage.ru_stime
    teacher_desc = "instant" if args.instant else f"{latency}s + tokens/{rate:g} per s"
    print(
        f"mode {args.mode}; {args.servers} teacher(s), K={args.capacity} each; "
        f"latency {teacher_desc}; concurrency {args.concurrency}"
    )
    print(f"bootstrap: {stdout.strip()}")
    print(f"time to {args.target}: {wall:.1f} s ({accepted} tasks accepted)")
    print(f"requests: {answered} answered, {refused} refused over capacity (429)")
    mean_busy = busy / wall
    print(f"teacher utilisation: {mean_busy / slots:.1%} (mean busy slots {mean_busy:.1f}/{slots})")
    tenths = [samples[len(samples) * i // 10 : len(samples) * (i + 1) // 10] for i in range(10)]
    print(
        "busy slots by tenth of the run: "
        + " ".join(f"{sum(t) / len(t):.0f}" if t else "-" for t in tenths)
    )
    print(f"client CPU: {cpu:.1f} s, {cpu / accepted * 1000:.2f} ms per accepted task")
    print(f"peak memory (bootstrap process RSS): {usage.ru_maxrss / 1024:.0f} MiB")
    rejected = state["rejections"]
    print(
        f"rejections: {sum(rejected.values())} "
        + ", ".join(f"{k} {v}" for k, v in sorted(rejected.items(), key=lambda kv: -kv[1])[:6])
    )
    for stage, figures in sorted(state["usage"].items()):
        print(f"  {stage:<14}{figures['requests']:>8} requests")


if __name__ == "__main__":
    with saved_output("--save" in sys.argv, __file__):
        main()
