"""The API key is written to no file of the run directory and to no line the CLI prints."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli

from selfinstruct.testing.server import OpenAITestServer, RecordedRequest, Reply
from selfinstruct.testing.teacher import SyntheticTeacher

SECRET = "sk-proj-Secret0123456789abcdef"


def _assert_nowhere(out: Path, *texts: str) -> None:
    for text in texts:
        assert SECRET not in text
        assert SECRET[8:20] not in text  # nor a recognisable piece of it
    if out.exists():
        for path in out.rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500])
def test_error_that_echoes_the_request_headers(tmp_path: Path, status: int) -> None:
    teacher = SyntheticTeacher()
    calls = {"n": 0}

    def handler(request: RecordedRequest) -> Reply:
        calls["n"] += 1
        if calls["n"] <= 12:  # a good start, so the run directory has every file
            return teacher(request)
        # Some proxies answer a bad request by dumping what they received.
        return Reply(status=status, text=f"rejected request with headers {request.headers}")

    out = tmp_path / "run"
    with OpenAITestServer(handler) as server:
        done = run_cli(
            "bootstrap",
            "--base-url",
            server.base_url,
            "--out",
            str(out),
            "--target",
            "500",
            "--max-retries",
            "0",
            api_key=SECRET,
        )
        assert server.requests[-1].headers["authorization"] == f"Bearer {SECRET}"
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"HTTP {status}" in done.stderr and "[redacted]" in done.stderr
    _assert_nowhere(out, done.stdout, done.stderr)
    assert (out / "responses.jsonl").stat().st_size > 0


def test_successful_run_and_status(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with OpenAITestServer(SyntheticTeacher(), api_key=SECRET) as server:
        done = run_cli(
            "bootstrap", "--base-url", server.base_url, "--out", str(out), "--target", "20",
            api_key=SECRET,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    status = run_cli("status", "--out", str(out), api_key=SECRET)
    assert status.returncode == 0
    _assert_nowhere(out, done.stdout, done.stderr, status.stdout, status.stderr)
