"""Soak a full-size run: 52,000 tasks, a teacher that fails 10% of requests, three SIGKILLs.

The teacher is the loopback synthetic one, instant, with seeded random faults (429, 500,
503, dropped connections). The real CLI runs as a subprocess and is killed with SIGKILL
three times, once past each quarter of the target (plus a seeded delay), then resumed.
After each kill the committed part of pool.jsonl and rejected.jsonl is saved; at the end
every committed byte must still be there, unchanged.

Prints: tasks accepted, duplicates (must be 0), lost tasks (must be 0), lost rejection
lines (must be 0), logged requests asked again (must be 0), requests and faults, peak
memory of the bootstrap process, wall time.

Usage: python benchmarks/soak.py [--target 52000] [--mode self-instruct|alpaca]
       [--fault-rate 0.1] [--kills 3] [--concurrency 64] [--seed 7] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from evidence import add_save_option, saved_output

from selfinstruct.testing.keys import digest_of
from selfinstruct.testing.server import OpenAITestServer, RecordedRequest, Reply
from selfinstruct.testing.teacher import SyntheticTeacher


class _Watcher:
    """Wrap the teacher: count requests whose response was logged before this attempt."""

    def __init__(self, teacher: SyntheticTeacher) -> None:
        self.teacher = teacher
        self.logged: set[str] = set()
        self.reasked = 0
        self._lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> Reply:
        if digest_of(request) in self.logged:
            with self._lock:
                self.reasked += 1
        return self.teacher(request)


def _logged_digests(out: Path) -> set[str]:
    path = out / "responses.jsonl"
    if not path.exists():
        return set()
    found = set()
    for line in path.read_bytes().split(b"\n")[:-1]:  # a torn last line is not logged
        if line.strip():
            found.add(json.loads(line)["key"].rsplit("/", 1)[1])
    return found


def _committed(out: Path) -> tuple[int, bytes, bytes]:
    """Return (accepted, committed pool bytes, committed rejected bytes) per state.json."""
    try:
        state = json.loads((out / "state.json").read_bytes())
    except (OSError, ValueError):
        return 0, b"", b""
    pool = (out / "pool.jsonl").read_bytes()[: state["pool_bytes"]]
    rejected = (out / "rejected.jsonl").read_bytes()[: state["rejected_bytes"]]
    return int(state["accepted"]), pool, rejected


def main() -> None:
    """Run the soak and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", type=int, default=52000)
    parser.add_argument("--mode", default="self-instruct")
    parser.add_argument("--fault-rate", type=float, default=0.10)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=Path, default=None, help="keep the run directory here")
    add_save_option(parser)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    watcher = _Watcher(SyntheticTeacher())
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    out = args.keep or tmp / "run"
    if out.exists():
        shutil.rmtree(out)
    # history=1: the server keeps counts only; 150K recorded prompts would cost gigabytes.
    server = OpenAITestServer(
        watcher, fault_rate=args.fault_rate, fault_seed=args.seed, history=1
    ).start()
    command = [
        sys.executable, "-m", "selfinstruct", "bootstrap", "--mode", args.mode,
        "--base-url", server.base_url, "--model", "synthetic", "--out", str(out),
        "--target", str(args.target), "--concurrency", str(args.concurrency), "--quiet",
    ]  # fmt: skip
    thresholds = [args.target * (k + 1) // (args.kills + 1) for k in range(args.kills)]
    snapshots: list[tuple[int, bytes, bytes]] = []
    attempts = 0
    start = time.monotonic()
    try:
        while True:
            attempts += 1
            watcher.logged = _logged_digests(out)
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            killed = False
            if thresholds:
                threshold = thresholds.pop(0)
                while proc.poll() is None and _committed(out)[0] < threshold:
                    time.sleep(0.5)
                time.sleep(rng.uniform(0.0, 3.0))  # land anywhere within a round
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    killed = True
            _, stderr = proc.communicate()
            if killed:
                snapshot = _committed(out)
                snapshots.append(snapshot)
                print(
                    f"kill {len(snapshots)} at {time.monotonic() - start:.0f}s: "
                    f"{snapshot[0]} tasks committed",
                    flush=True,
                )
                continue
            if proc.returncode != 0:
                raise SystemExit(f"bootstrap failed ({proc.returncode}): {stderr.decode()}")
            break
        wall = time.monotonic() - start
    finally:
        server.stop()
    stats = server.stats()
    peak_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    pool_bytes = (out / "pool.jsonl").read_bytes()
    rejected_bytes = (out / "rejected.jsonl").read_bytes()
    pool = [json.loads(line) for line in pool_bytes.splitlines()]
    instructions = Counter(t["instruction"] for t in pool)
    ids = Counter(t["id"] for t in pool)
    seqs = Counter(t["seq"] for t in pool)
    duplicates = sum(n - 1 for c in (instructions, ids, seqs) for n in c.values() if n > 1)
    lost_tasks = lost_rejections = 0
    for _, committed_pool, committed_rejected in snapshots:
        kept = pool_bytes[: len(committed_pool)]
        if kept != committed_pool:  # count the committed lines that changed or vanished
            old, new = committed_pool.splitlines(), kept.splitlines()
            lost_tasks += sum(1 for i, line in enumerate(old) if i >= len(new) or new[i] != line)
        kept_r = rejected_bytes[: len(committed_rejected)]
        if kept_r != committed_rejected:
            old, new = committed_rejected.splitlines(), kept_r.splitlines()
            lost_rejections += sum(
                1 for i, line in enumerate(old) if i >= len(new) or new[i] != line
            )
    state = json.loads((out / "state.json").read_text())
    expected_ids = [f"task_{i:06d}" for i in range(1, len(pool) + 1)]

    print(f"mode {args.mode}, target {args.target}, fault rate {args.fault_rate:.0%}")
    print(f"kills                {len(snapshots)} (attempts {attempts})")
    print(f"tasks accepted       {len(pool)} (state.json says {state['accepted']})")
    print(f"duplicates           {duplicates} (instructions, ids or seqs seen twice)")
    print(f"lost tasks           {lost_tasks} (committed before a kill, missing after)")
    print(f"lost rejections      {lost_rejections}")
    print(f"ids contiguous       {[t['id'] for t in pool] == expected_ids}")
    print(f"re-asked logged      {watcher.reasked} requests")
    print(f"requests             {stats.requests} ({stats.faults} faults injected)")
    print(f"rejected lines       {len(rejected_bytes.splitlines())}")
    print(f"peak memory          {peak_child:.0f} MiB bootstrap process, {peak_self:.0f} MiB soak")
    print(f"wall time            {wall:.0f}s ({wall / 60:.1f} min)")
    if args.keep is None:
        shutil.rmtree(tmp)
    ok = duplicates == 0 and lost_tasks == 0 and lost_rejections == 0 and watcher.reasked == 0
    if not ok or len(pool) < args.target:
        raise SystemExit("soak FAILED")


if __name__ == "__main__":
    with saved_output("--save" in sys.argv, __file__):
        main()
