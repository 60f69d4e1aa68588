"""Crash safety: SIGKILL a real bootstrap at random moments, resume, compare with no crash."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli_env

from selfinstruct.engine import request_digest
from selfinstruct.records import SamplingParams
from selfinstruct.testing.server import OpenAITestServer, RecordedRequest
from selfinstruct.testing.teacher import SyntheticTeacher

STARTUP = 0.7  # seconds before a bootstrap process sends its first request, roughly


def _args(server: OpenAITestServer, out: Path, mode: str, target: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "selfinstruct",
        "bootstrap",
        "--mode",
        mode,
        "--base-url",
        server.base_url,
        "--model",
        "test-model",
        "--out",
        str(out),
        "--target",
        str(target),
        "--concurrency",
        "4",
        "--quiet",
    ]


def _digest(request: RecordedRequest) -> str:
    """Compute the log-key digest the engine gave this request, from what the server saw."""
    body = request.body
    stop = body.get("stop") or []
    params = SamplingParams(
        temperature=body["temperature"],
        top_p=body["top_p"],
        max_tokens=body["max_tokens"],
        presence_penalty=body["presence_penalty"],
        frequency_penalty=body["frequency_penalty"],
        stop=tuple([stop] if isinstance(stop, str) else stop),
        seed=body.get("seed"),
    )
    return request_digest(request.prompt, params)


def _logged_digests(out: Path) -> set[str]:
    path = out / "responses.jsonl"
    if not path.exists():
        return set()
    lines = path.read_bytes().split(b"\n")[:-1]  # a torn last line is not a logged response
    return {json.loads(line)["key"].rsplit("/", 1)[1] for line in lines if line.strip()}


@pytest.mark.parametrize(
    ("mode", "target", "latency", "seed"),
    [("self-instruct", 120, 0.05, 1234), ("alpaca", 150, 0.2, 99)],
)
def test_killed_runs_resume_to_the_same_pool(
    tmp_path: Path, mode: str, target: int, latency: float, seed: int
) -> None:
    # Slow enough that kills land mid-run, in every stage; fast enough for CI.
    teacher = SyntheticTeacher(latency=latency)
    with OpenAITestServer(teacher) as server:
        reference = tmp_path / "reference"
        start = time.monotonic()
        done = subprocess.run(
            _args(server, reference, mode, target), env=cli_env(), capture_output=True
        )
        duration = time.monotonic() - start
        assert done.returncode == 0, done.stderr
        reference_requests = len(server.requests)
    assert duration > 1.5, "the run is too quick for kills to land mid-run"

    rng = random.Random(seed)
    out = tmp_path / "crashed"
    kills = 0
    with OpenAITestServer(teacher) as server:
        for attempt in range(12):
            logged = _logged_digests(out)
            seen_before = len(server.requests)
            proc = subprocess.Popen(
                _args(server, out, mode, target),
                env=cli_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            # Kill anywhere from start-up (logs being opened) to the last rounds still due.
            pool = out / "pool.jsonl"
            done_share = len(pool.read_bytes().splitlines()) / target if pool.exists() else 0
            expected = STARTUP + (duration - STARTUP) * max(0.0, 1 - done_share)
            deadline = time.monotonic() + rng.uniform(0.2, 0.9) * expected
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.01)
            if proc.poll() is None and kills < 6:  # then let it finish
                proc.send_signal(signal.SIGKILL)
                kills += 1
            _, stderr = proc.communicate(timeout=120)
            # No request whose response had been logged is ever sent again.
            repeated = [r for r in server.requests[seen_before:] if _digest(r) in logged]
            assert repeated == [], f"attempt {attempt}: re-asked {len(repeated)} logged requests"
            if proc.returncode == 0:
                break
            assert proc.returncode == -signal.SIGKILL, stderr
        else:
            raise AssertionError("the run never finished")
        total_requests = len(server.requests)

    assert kills >= 4
    for name in ("pool.jsonl", "rejected.jsonl"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    state = json.loads((out / "state.json").read_text())
    assert state["accepted"] == len((out / "pool.jsonl").read_text().splitlines())
    # Only requests in flight at a kill are paid twice: at most `concurrency` per kill.
    assert total_requests <= reference_requests + 4 * kills
