"""No credential is written to a file of the run directory or to a line the CLI prints.

The CLI tests first, then the one redactor (selfinstruct.secrets) on its own.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from conftest import run_cli

from selfinstruct import secrets
from selfinstruct.config import ConfigError, TeacherConfig, load_config
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


@pytest.mark.parametrize(
    "key",
    ["token-abc123XYZ", "gsk_0123456789abcdefABCDEF", "my vLLM key!", "hf_AbCdEf0123456789xyz"],
)
def test_a_registered_value_is_redacted_whatever_its_form(key: str) -> None:
    secrets.register(key)
    text = f"upstream said: Authorization: Bearer {key}; x-api-key: {key}; raw {key}!"
    for redacted in (secrets.redact(text), secrets.redact_values(text)):
        assert key not in redacted and "[redacted]" in redacted


def test_environment_credentials_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "vllm-local-key-42")
    monkeypatch.setenv("HF_TOKEN", "hf-token-from-env")
    text = "echo: vllm-local-key-42 and hf-token-from-env"
    assert secrets.redact_values(text) == "echo: [redacted] and [redacted]"


def test_short_placeholders_are_not_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    # Local servers take any key; "EMPTY" or "none" must not vanish from teacher text.
    monkeypatch.setenv("OPENAI_API_KEY", "EMPTY")
    assert secrets.redact_values("EMPTY lists are allowed") == "EMPTY lists are allowed"


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        ("Authorization: Bearer abcdef123456", "abcdef123456"),
        ('{"api_key": "unseen-value-123"}', "unseen-value-123"),
        ("GET /v1?api-key=querysecret99&x=1", "querysecret99"),
        ("proxy http://bob:hunter22@proxy:3128 failed", "hunter22"),
        ("key sk-proj-AAAAAAAAAAAAAAAAAAAAAAAA leaked", "sk-proj-AAAA"),
        ("groq gsk_BBBBBBBBBBBBBBBBBBBBBBBB leaked", "gsk_BBBB"),
    ],
)
def test_credential_shapes_are_redacted_in_messages(text: str, gone: str) -> None:
    assert gone not in secrets.redact(text)


def test_ordinary_text_is_left_alone() -> None:
    text = "Write a haiku about max_tokens=50 and a token bucket; prompt_tokens: 12."
    assert secrets.redact(text) == text


def test_log_records_are_redacted_before_they_are_written() -> None:
    secrets.register("logged-secret-777")
    record = logging.LogRecord(
        "x", logging.WARNING, "f", 1, "failed (%s)", ("logged-secret-777",), None
    )
    assert secrets.RedactFilter().filter(record)
    assert record.getMessage() == "failed ([redacted])"


def test_url_credentials_leave_the_config_and_reach_the_backend() -> None:
    config = TeacherConfig(
        base_urls=[
            "http://tok-en-123456@127.0.0.1:8000/v1",
            "https://alice:s3cret-pw@example.com/v1?api-key=azure-key-99&api-version=2024",
        ]
    )
    assert config.base_urls == [
        "http://127.0.0.1:8000/v1",
        "https://example.com/v1?api-version=2024",
    ]
    first = secrets.url_credentials(config.base_urls[0])
    second = secrets.url_credentials(config.base_urls[1])
    assert first is not None and first.api_key == "tok-en-123456" and first.basic is None
    assert second is not None and second.basic == ("alice", "s3cret-pw")
    assert second.query == {"api-key": "azure-key-99"}
    dumped = config.model_dump_json()
    for value in ("tok-en-123456", "s3cret-pw", "azure-key-99"):
        assert value not in dumped
        assert secrets.redact(f"x {value} y") == "x [redacted] y"


@pytest.mark.parametrize(
    "url",
    ["http://[::1:8000/v1", "http://host:port/v1", "ftp://host/v1", "http:///v1", "http://:@h/v1"],
)
def test_a_bad_base_url_is_a_config_error_naming_the_key(url: str) -> None:
    with pytest.raises(ConfigError, match="base_urls"):
        load_config(None, {"teacher": {"base_urls": [url]}})


def test_basic_auth_values_are_redacted_but_words_are_not() -> None:
    assert "dXNlcjpwYXNz" not in secrets.redact("Authorization: Basic dXNlcjpwYXNz")
    assert secrets.redact("Basic authentication failed") == "Basic authentication failed"
    assert secrets.redact("rejected the API key: HTTP 401") == "rejected the API key: HTTP 401"
