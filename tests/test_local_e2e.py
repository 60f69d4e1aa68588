"""The whole pipeline against the real embedded model: bootstrap, SIGKILL, resume, export.

Assertions are on pipeline behaviour (counts, uniqueness, reasons, a valid export), never
on the model's wording. Skipped without the [local] extra; CI installs it, so it runs there.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import cli_env

pytest.importorskip("llama_cpp", reason="needs the [local] extra")

TARGET = 6  # llama-cpp-python 0.3.16 accepts ~0.4 tasks a minute here (setup_bench)
REASONS = {
    "unparseable", "missing_output", "missing_input", "truncated", "too_short", "too_long",
    "blacklisted_word", "write_a_program", "starts_with_punctuation", "starts_with_non_ascii",
    "near_duplicate", "unparseable_classification", "empty_output", "output_equals_input",
    "output_ends_with_colon", "duplicate_instance", "too_many_instances", "conflicting_outputs",
    "no_instances",
}  # fmt: skip


def _bootstrap(out: Path) -> list[str]:
    return [
        sys.executable, "-m", "selfinstruct", "bootstrap", "--out", str(out),
        "--target", str(TARGET), "--quiet",
    ]  # fmt: skip


def _logged(out: Path) -> int:
    path = out / "responses.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.mark.slow
def test_real_model_bootstrap_kill_resume_export(tmp_path: Path) -> None:
    out = tmp_path / "run"
    # No key and no --base-url: the embedded model is the default teacher.
    proc = subprocess.Popen(
        _bootstrap(out), env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 900
    while _logged(out) < 12 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert proc.poll() is None, proc.communicate(timeout=60)[1]
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)  # reap it and close the pipe
    logged_before = _logged(out)

    done = subprocess.run(
        _bootstrap(out), env=cli_env(), capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, done.stderr
    assert "replayed from the log" in done.stdout

    pool = [json.loads(line) for line in (out / "pool.jsonl").read_text().splitlines()]
    assert len(pool) >= TARGET
    assert len({t["instruction"] for t in pool}) == len(pool)
    assert [t["id"] for t in pool] == [f"task_{i:06d}" for i in range(1, len(pool) + 1)]
    assert all(isinstance(t["is_classification"], bool) and t["instances"] for t in pool)

    # Every logged response was paid for once: a replayed request is never logged again.
    keys = [json.loads(line)["key"] for line in (out / "responses.jsonl").read_text().splitlines()]
    assert len(keys) == len(set(keys)) and len(keys) > logged_before
    assert {k.split("/")[-2] for k in keys} == {"instructions", "classify", "instances"}

    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert all(r["reason"] in REASONS and r["stage"] for r in rejected)
    state = json.loads((out / "state.json").read_text())
    counted = Counter(f"{r['stage']}/{r['reason']}" for r in rejected)
    assert state["rejections"] == dict(counted)

    data = tmp_path / "data.json"
    exported = subprocess.run(
        [sys.executable, "-m", "selfinstruct", "export", "--out", str(out), "-o", str(data)],
        env=cli_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert exported.returncode == 0, exported.stderr
    records = json.loads(data.read_text())
    assert len(records) == sum(len(t["instances"]) for t in pool)
    assert all(set(r) == {"instruction", "input", "output"} and r["output"] for r in records)
