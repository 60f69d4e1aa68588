"""A hostile teacher, from outside: malformed HTTP, trickles, poison requests, redirects,
echoed credentials and odd usage never crash, brick, hang or leak a run.

Every test runs the real CLI against a loopback server that misbehaves on purpose: the
raw-socket server of selfinstruct.testing.rawhttp (bytes no HTTP library would send), or
OpenAITestServer with a handler that turns the synthetic teacher hostile. Text classes
(surrogates, control characters, huge fields, finish_reason) are covered by
tests/test_parse.py, tests/test_filters.py and tests/test_report.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import bootstrap_args, run_cli

from selfinstruct.testing.keys import digest_of
from selfinstruct.testing.rawhttp import (
    MALFORMED,
    RawHTTPServer,
    RawReply,
    RawRequest,
    completion_body,
    faulty_once,
    http_response,
    proxy_to,
)
from selfinstruct.testing.server import OpenAITestServer, RecordedRequest, Reply
from selfinstruct.testing.teacher import SyntheticTeacher

FAST = ("--max-retries", "2")


def _one_line_error(stderr: str) -> str:
    """Return the error line of a failed run; fail when there is a traceback."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _digest(prompt: str) -> int:
    return int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16)


# -- 3. malformed HTTP ----------------------------------------------------------------------


def test_malformed_http_answers_are_retried_and_the_run_completes(tmp_path: Path) -> None:
    faults = list(MALFORMED.values())
    with OpenAITestServer(SyntheticTeacher()) as teacher:
        script = faulty_once(faults, 3, proxy_to(teacher.base_url))
        with RawHTTPServer(script) as raw:
            done = run_cli(*bootstrap_args(raw, tmp_path / "run", "--target", "15", *FAST))
            sent = len(raw.completions())
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert len(_lines(tmp_path / "run" / "pool.jsonl")) >= 15
    assert sent >= 30


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_persistent_malformed_http_stops_with_one_line(tmp_path: Path, kind: str) -> None:
    with RawHTTPServer(lambda i, r: RawReply(MALFORMED[kind])) as raw:
        args = bootstrap_args(raw, tmp_path / "run", "--target", "5", "--concurrency", "1")
        done = run_cli(*args, *FAST)
        sent = len(raw.completions())
    assert done.returncode == 1
    line = _one_line_error(done.stderr)
    assert raw.base_url in line and "3 attempts" in line
    assert 3 <= sent <= 9  # a retry gives its slot to another request while it waits


# -- 4. --timeout bounds the whole answer ---------------------------------------------------


def test_a_trickling_server_is_cut_off_at_the_timeout(tmp_path: Path) -> None:
    def trickle(index: int, request: RawRequest) -> RawReply:
        body = completion_body(request, "1. Write a poem about rain.\n" * 4)
        return RawReply(http_response(200, body), trickle=0.05)  # ~30 s for the whole answer

    with RawHTTPServer(trickle) as raw:
        start = time.monotonic()
        args = bootstrap_args(raw, tmp_path / "run", "--timeout", "1", "--max-retries", "1")
        done = run_cli(*args, "--target", "5", "--concurrency", "1", timeout=120)
        elapsed = time.monotonic() - start
    assert done.returncode == 1
    assert "timed out" in _one_line_error(done.stderr)
    assert elapsed < 20  # two attempts of one second each, plus start-up


# -- 5. poison requests -----------------------------------------------------------------------


def _poisoning(teacher: SyntheticTeacher, every: int) -> Any:
    """Refuse some prompts always, the same way (a content filter): 400s and empty 200s."""

    def handler(request: RecordedRequest) -> Reply:
        kind = _digest(request.prompt) % every
        if kind == 0:
            return Reply(status=400, text="content filter: this prompt was flagged")
        if kind == 1:
            return Reply(raw_body=b'{"id": "x", "object": "text_completion", "choices": []}')
        return teacher(request)

    return handler


def test_poison_requests_become_rejections_and_the_run_goes_on(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with OpenAITestServer(_poisoning(SyntheticTeacher(), 12)) as server:
        done = run_cli(*bootstrap_args(server, out, "--target", "30", *FAST))
        assert done.returncode == 0, done.stderr
        status = run_cli("status", "--out", str(out))
    refused = [r for r in _lines(out / "rejected.jsonl") if r["reason"] == "teacher_refused"]
    assert refused, "no request was refused: the test teacher is not hostile enough"
    assert {r["stage"] for r in refused} <= {"instructions", "classify", "instances"}
    details = " ".join(r["detail"] for r in refused)
    assert "HTTP 400: content filter: this prompt was flagged" in details
    assert "no choices" in details
    assert len(_lines(out / "pool.jsonl")) >= 30
    assert "teacher_refused" in status.stdout


def test_a_refusal_is_logged_so_a_resume_never_sends_it_again(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    with OpenAITestServer(_poisoning(SyntheticTeacher(), 12)) as server:
        assert run_cli(*bootstrap_args(server, one, "--target", "40", *FAST)).returncode == 0
        refused: set[str] = set()
        for target in ("12", "25", "40"):
            before = len(server.requests)
            done = run_cli(*bootstrap_args(server, two, "--target", target, *FAST))
            assert done.returncode == 0, done.stderr
            sent = {digest_of(r) for r in list(server.requests)[before:]}
            assert not sent & refused  # a logged refusal is replayed, never paid for again
            logged = _lines(two / "responses.jsonl")
            refused |= {e["key"].rsplit("/", 1)[1] for e in logged if "refused" in e}
    assert refused
    # The refusals replay like answers: the pool is the one an uninterrupted run grows.
    assert (one / "pool.jsonl").read_bytes() == (two / "pool.jsonl").read_bytes()
    assert (one / "rejected.jsonl").read_bytes() == (two / "rejected.jsonl").read_bytes()


def test_a_teacher_refusing_everything_stops_the_run_cleanly(tmp_path: Path) -> None:
    refuse = Reply(status=400, text="content filter: everything is flagged")
    with OpenAITestServer(lambda r: refuse) as server:
        done = run_cli(*bootstrap_args(server, tmp_path / "run", "--target", "5", *FAST))
        sent = len(server.requests)
    assert done.returncode == 1
    line = _one_line_error(done.stderr)
    assert server.base_url in line and "refuses everything" in line and "HTTP 400" in line
    assert sent < 100


@pytest.mark.parametrize("status", [403, 404])
def test_a_wrong_model_or_forbidden_key_stops_at_once(tmp_path: Path, status: int) -> None:
    with OpenAITestServer(lambda r: Reply(status=status, text="no such model")) as server:
        done = run_cli(*bootstrap_args(server, tmp_path / "run", "--target", "5", *FAST))
        prompts = [r.prompt for r in server.requests]
    assert done.returncode == 1
    assert f"HTTP {status}" in _one_line_error(done.stderr)
    assert len(prompts) == len(set(prompts))  # never retried: the answer will not change


# -- 6. redirects -----------------------------------------------------------------------------


@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_a_redirect_is_never_followed(tmp_path: Path, code: int) -> None:
    with OpenAITestServer(SyntheticTeacher()) as elsewhere:

        def redirect(index: int, request: RawRequest) -> RawReply:
            location = elsewhere.base_url + request.path.removeprefix("/v1")
            return RawReply(http_response(code, b"", headers={"Location": location}))

        with RawHTTPServer(redirect, script_gets=True) as raw:
            done = run_cli(*bootstrap_args(raw, tmp_path / "run", "--target", "5"))
        leaked = len(elsewhere.requests)
    assert done.returncode == 1
    line = _one_line_error(done.stderr)
    assert raw.base_url in line and "redirect" in line
    assert f"127.0.0.1:{elsewhere.base_url.split(':')[2].split('/')[0]}" in line
    assert leaked == 0


# -- 7. odd usage -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "usage",
    [None, {"prompt_tokens": -100, "completion_tokens": -100}, {"completion_tokens": "9"}, 10**15],
    ids=["missing", "negative", "strings", "absurd"],
)
def test_odd_usage_never_disables_the_token_budget(tmp_path: Path, usage: Any) -> None:
    def odd(data: dict[str, Any]) -> None:
        if usage is None:
            data.pop("usage", None)
        elif isinstance(usage, int):
            data["usage"] = {"prompt_tokens": usage, "completion_tokens": usage}
        else:
            data["usage"] = usage

    out = tmp_path / "run"
    with OpenAITestServer(SyntheticTeacher()) as teacher:
        with RawHTTPServer(proxy_to(teacher.base_url, odd)) as raw:
            args = bootstrap_args(raw, out, "--target", "500", "--max-tokens", "20000", *FAST)
            done = run_cli(*args)
    assert done.returncode == 3, done.stderr  # the budget stopped it, as it would with usage
    assert "Traceback" not in done.stderr
    assert done.stderr.count("token count") <= 1  # said once, not per answer
    state = json.loads((out / "state.json").read_text())
    counted = sum(s["prompt_tokens"] + s["completion_tokens"] for s in state["usage"].values())
    assert 20000 <= counted < 10**9


# -- 9, 10. credentials -----------------------------------------------------------------------


def _echoing(teacher: SyntheticTeacher) -> Any:
    """Put the request's Authorization header into some answers (a debugging proxy)."""

    def handler(request: RecordedRequest) -> Reply:
        header = request.headers.get("authorization", "")
        reply = teacher(request)
        if _digest(request.prompt) % 4 == 0 and reply.status == 200:
            return Reply(text=f"(debug: {header})\n{reply.text}")  # first: never cut off
        return reply

    return handler


@pytest.mark.parametrize(
    "key", ["token-abc123XYZ", "gsk_0123456789abcdefABCDEF", "my vLLM key!"], ids=str
)
def test_an_echoed_key_is_never_written_or_printed(tmp_path: Path, key: str) -> None:
    out = tmp_path / "run"

    def echo_error(request: RecordedRequest) -> Reply:
        return Reply(status=500, text=f"echo: {request.headers.get('authorization', '')}")

    with OpenAITestServer(_echoing(SyntheticTeacher())) as server:
        # An endpoint that always fails is set aside with a warning quoting its error.
        with OpenAITestServer(echo_error) as broken:
            args = bootstrap_args(server, out, "--target", "20", "--base-url", broken.base_url)
            done = run_cli(*args, "--max-retries", "8", api_key=key)
    assert done.returncode == 0, done.stderr
    assert "set aside" in done.stderr
    assert "[redacted]" in done.stderr
    for name in ("responses.jsonl", "rejected.jsonl", "pool.jsonl", "config.json", "state.json"):
        assert key not in (out / name).read_text(), name
    assert key not in done.stderr and key not in done.stdout
    assert "[redacted]" in (out / "responses.jsonl").read_text()


def test_credentials_in_the_base_url_work_and_are_never_stored(tmp_path: Path) -> None:
    token = "url-token-0123456789"
    out = tmp_path / "run"
    with OpenAITestServer(SyntheticTeacher(), api_key=token) as server:
        url = server.base_url.replace("http://", f"http://{token}@") + "?api-key=q-secret-42"
        args = bootstrap_args(server, out, "--target", "5")
        args[args.index(server.base_url)] = url
        done = run_cli(*args)
        status = run_cli("status", "--out", str(out))
        headers = server.requests[-1].headers
    assert done.returncode == 0, done.stderr
    assert headers["authorization"] == f"Bearer {token}"
    for text in (done.stderr, done.stdout, status.stdout, (out / "config.json").read_text()):
        assert token not in text and "q-secret-42" not in text
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["teacher"]["base_urls"] == [server.base_url]


def test_user_and_password_in_the_base_url_are_sent_as_basic_auth(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with OpenAITestServer(SyntheticTeacher()) as server:
        url = server.base_url.replace("http://", "http://alice:pa%40ss-word@")
        args = bootstrap_args(server, out, "--target", "3")
        args[args.index(server.base_url)] = url
        done = run_cli(*args)
        headers = server.requests[-1].headers
    assert done.returncode == 0, done.stderr
    expected = base64.b64encode(b"alice:pa@ss-word").decode()
    assert headers["authorization"] == f"Basic {expected}"
    assert "pa@ss-word" not in (out / "config.json").read_text()
    assert "pa%40ss-word" not in (out / "config.json").read_text()


def test_an_unparseable_base_url_is_one_line(tmp_path: Path) -> None:
    args = ["bootstrap", "--base-url", "http://u:p@[::1:8000/v1", "--out", str(tmp_path / "r")]
    done = run_cli(*args)
    assert done.returncode != 0
    line = _one_line_error(done.stderr)
    assert "base_urls" in line and "u:p" not in line
    assert not (tmp_path / "r").exists()
