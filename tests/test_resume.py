"""Crash safety: SIGKILL a real bootstrap at random moments, resume, compare with no crash."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import cli_env

from selfinstruct.engine import _derived_seed
from selfinstruct.testing.server import OpenAITestServer
from selfinstruct.testing.teacher import SyntheticTeacher

TARGET = "150"


def _args(server: OpenAITestServer, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "selfinstruct",
        "bootstrap",
        "--base-url",
        server.base_url,
        "--model",
        "test-model",
        "--out",
        str(out),
        "--target",
        TARGET,
        "--concurrency",
        "2",
        "--quiet",
    ]


def _logged_seeds(out: Path) -> set[int]:
    """Return the `seed` request parameter of every response in the log."""
    seeds = set()
    path = out / "responses.jsonl"
    for line in path.read_bytes().split(b"\n")[:-1] if path.exists() else []:
        round_part, slot_part = json.loads(line)["key"].split("/")[:2]
        seeds.add(_derived_seed(42, int(round_part[1:]), int(slot_part[1:])))
    return seeds


def test_killed_runs_resume_to_the_same_pool(tmp_path: Path) -> None:
    # Slow enough that kills land mid-run; fast enough for CI.
    teacher = SyntheticTeacher(latency=0.1)
    with OpenAITestServer(teacher) as server:
        reference = tmp_path / "reference"
        start = time.monotonic()
        done = subprocess.run(_args(server, reference), env=cli_env(), capture_output=True)
        duration = time.monotonic() - start
        assert done.returncode == 0, done.stderr
        reference_requests = len(server.requests)

    rng = random.Random(1234)
    out = tmp_path / "crashed"
    kills = 0
    with OpenAITestServer(teacher) as server:
        for attempt in range(7):
            logged = _logged_seeds(out)
            seen_before = len(server.requests)
            proc = subprocess.Popen(
                _args(server, out),
                env=cli_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            # Kill anywhere from start-up (logs being opened) to the last rounds.
            deadline = time.monotonic() + rng.uniform(0.1, 0.6) * duration
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.01)
            if proc.poll() is None and kills < 6:  # then let it finish
                proc.send_signal(signal.SIGKILL)
                kills += 1
            _, stderr = proc.communicate(timeout=60)
            # No request whose response had been logged is ever sent again.
            repeated = [r for r in server.requests[seen_before:] if int(r.body["seed"]) in logged]
            assert repeated == [], f"attempt {attempt}: re-asked {len(repeated)} logged requests"
            if proc.returncode == 0:
                break
            assert proc.returncode == -signal.SIGKILL, stderr
        else:
            raise AssertionError("the run never finished")
        total_requests = len(server.requests)

    assert kills >= 3
    for name in ("pool.jsonl", "rejected.jsonl"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    state = json.loads((out / "state.json").read_text())
    assert state["accepted"] == len((out / "pool.jsonl").read_text().splitlines())
    # Only requests in flight at a kill are paid twice; each kill loses at most 2 (concurrency).
    assert total_requests <= reference_requests + 2 * kills + 8
