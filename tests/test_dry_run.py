"""`bootstrap --dry-run` as a user runs it: it shows the plan, writes nothing, sends nothing."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest
from conftest import run_cli

from selfinstruct.testing.server import OpenAITestServer


def _args(base_url: str, out: Path, *extra: str) -> list[str]:
    return ["bootstrap", "--base-url", base_url, "--model", "test-model", "--out", str(out), *extra]


def _snapshot(directory: Path) -> dict[str, tuple[str, int]]:
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(directory.iterdir())
    }


def test_dry_run_prints_the_plan_and_touches_nothing(
    teacher: OpenAITestServer, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    done = run_cli(
        *_args(teacher.base_url, out, "--dry-run", "--target", "500", "--max-tokens", "200000"),
        "--price-in",
        "0.5",
        "--price-out",
        "1.5",
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for line in (
        f"run        {out} (new)",
        "mode       self-instruct",
        "teacher    test-model (completions API, openai backend)",
        f"endpoints  {teacher.base_url}",
        "target     500 tasks (500 to go)",
        "budget     200,000 tokens",
        "prices     0.5 / 1.5 USD per million tokens in/out",
    ):
        assert line in text, line
    # One prompt of each kind, as the engine renders them.
    assert "prompt 1: instructions" in text and "\n9.\n" in text
    assert "prompt 2: classify" in text and "Classification:" in text
    assert "input-first" in text and "output-first" in text
    assert "estimate to reach 500 tasks, from defaults" in text
    assert "--max-tokens 200,000 stops the run at about" in text
    assert not out.exists()
    assert teacher.requests == []


def test_dry_run_opens_no_connection(tmp_path: Path) -> None:
    # A bare listening socket: any connection at all, even GET /v1/models, would queue here.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        done = run_cli(*_args(url, tmp_path / "run", "--dry-run"), api_key="sk-dry")
        assert done.returncode == 0, done.stderr
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            pass
        else:
            conn.close()
            raise AssertionError("the dry run connected to the teacher")


def test_dry_run_of_an_existing_run_uses_observed_rates_and_writes_nothing(
    teacher: OpenAITestServer, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    assert run_cli(*_args(teacher.base_url, out, "--target", "20", "-q")).returncode == 0
    before = _snapshot(out)
    sent = len(teacher.requests)
    done = run_cli(*_args(teacher.base_url, out, "--dry-run", "--target", "100"))
    assert done.returncode == 0, done.stderr
    assert "rates observed in this run" in done.stdout
    assert "(exists:" in done.stdout and "to go)" in done.stdout
    assert "cost USD" in done.stdout
    assert _snapshot(out) == before  # not a byte, not a timestamp
    assert len(teacher.requests) == sent

    # A command the real run would refuse is refused by the dry run too.
    refused = run_cli(*_args(teacher.base_url, out, "--dry-run", "--temperature", "0.2"))
    assert refused.returncode == 1 and "teacher.temperature" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert _snapshot(out) == before


def test_dry_run_alpaca_shows_its_one_prompt(teacher: OpenAITestServer, tmp_path: Path) -> None:
    done = run_cli(*_args(teacher.base_url, tmp_path / "run", "--dry-run", "--mode", "alpaca"))
    assert done.returncode == 0, done.stderr
    assert "prompt 1: instructions: new tasks" in done.stdout
    assert "prompt 2" not in done.stdout
    assert "### Task 9" in done.stdout
    # No known price for test-model: the estimate says how to get one.
    assert "pass --price-in and --price-out" in done.stdout
    assert teacher.requests == [] and not (tmp_path / "run").exists()


def test_dry_run_of_a_chinese_run_renders_chinese_prompts_and_accepts_the_run(
    tmp_path: Path,
) -> None:
    from selfinstruct.testing.teacher_zh import ChineseSyntheticTeacher

    out = tmp_path / "run"
    with OpenAITestServer(ChineseSyntheticTeacher()) as server:
        zh = ("--language", "zh")
        fresh = run_cli(*_args(server.base_url, out, "--dry-run", *zh))
        assert fresh.returncode == 0, fresh.stderr
        assert "编号清单" in fresh.stdout  # the Chinese instruction template
        assert run_cli(*_args(server.base_url, out, "--target", "15", "-q", *zh)).returncode == 0
        sent = len(server.requests)
        # The run is Chinese: its prompts' digest is the Chinese templates'; a dry run agrees.
        done = run_cli(*_args(server.base_url, out, "--dry-run", "--target", "30", *zh))
        assert done.returncode == 0, done.stderr
        assert "(exists:" in done.stdout and "编号清单" in done.stdout
        assert len(server.requests) == sent


def test_dry_run_with_vllm_shows_the_in_process_engine_and_needs_a_model(tmp_path: Path) -> None:
    out = tmp_path / "run"
    base = ["bootstrap", "--backend", "vllm", "--out", str(out), "--dry-run"]
    refused = run_cli(*base)
    assert refused.returncode == 1 and "--backend vllm needs --model" in refused.stderr
    done = run_cli(*base, "--model", "org/some-model")
    assert done.returncode == 0, done.stderr
    assert "teacher    org/some-model (completions API, vllm backend)" in done.stdout
    assert "endpoints  in-process vLLM on this machine" in done.stdout
    assert "api.openai.com" not in done.stdout
    assert "requests   1024 in flight at most" in done.stdout
    assert not out.exists()


def test_dry_run_refuses_what_the_run_refuses(tmp_path: Path) -> None:
    out = tmp_path / "run"
    two = ["--base-url", "http://127.0.0.1:9/v1", "--base-url", "http://127.0.0.1:10/v1"]
    batch = run_cli("bootstrap", "--out", str(out), "--dry-run", "--batch-api", *two)
    assert batch.returncode == 1 and "--batch-api sends every batch to one endpoint" in batch.stderr
    local = run_cli(
        "bootstrap",
        "--out",
        str(out),
        "--dry-run",
        "--backend",
        "local",
        "--base-url",
        "http://x/v1",
    )
    assert local.returncode == 1 and "--base-url is for --backend openai" in local.stderr
    assert not out.exists()


def test_dry_run_estimates_batch_api_requests_at_half_price(
    teacher: OpenAITestServer, tmp_path: Path
) -> None:
    prices = ("--price-in", "1000", "--price-out", "1000", "--target", "500")
    totals = {}
    for extra in ((), ("--batch-api",)):
        done = run_cli(*_args(teacher.base_url, tmp_path / "run", "--dry-run", *prices, *extra))
        assert done.returncode == 0, done.stderr
        total = next(x for x in done.stdout.splitlines() if x.strip().startswith("total"))
        totals[extra] = float(total.split()[-1])
    assert "through the Batch API" in done.stdout
    assert totals[("--batch-api",)] == pytest.approx(totals[()] / 2, abs=0.02)
