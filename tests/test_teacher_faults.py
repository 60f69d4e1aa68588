"""Teacher faults, each against the loopback server, through the real CLI in-process.

Transport faults only delay a run: it must end with the very pool a fault-free run makes.
A fault that persists stops the run after bounded retries with one line naming the
endpoint and the last error, and the same command then resumes it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import machine_example_prompts, window_config
from typer.testing import CliRunner

from selfinstruct.cli import app
from selfinstruct.testing.server import OpenAITestServer, RecordedRequest, Reply
from selfinstruct.testing.teacher import SyntheticTeacher

TARGET = 90  # about 4 rounds: with a one-round window, rounds 2 on show machine tasks
NO_CHOICES = Reply(
    raw_body=b'{"id": "x", "object": "text_completion", "created": 1, "model": "m", "choices": []}'
)


def _invoke(server: OpenAITestServer, out: Path, *extra: str) -> tuple[int, str]:
    args = ["bootstrap", "--base-url", server.base_url, "--out", str(out), "-q"]
    # A one-round window, so that faults also hit prompts that show machine tasks.
    config = window_config(out.parent)
    args += ["--target", str(TARGET), "--concurrency", "4", "--config", str(config), *extra]
    result = CliRunner().invoke(app, args, env={"OPENAI_API_KEY": None})
    assert not isinstance(result.exception, AssertionError)
    return result.exit_code, result.stderr


def _pool(out: Path) -> bytes:
    return (out / "pool.jsonl").read_bytes()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The pool of a fault-free run."""
    out = tmp_path_factory.mktemp("reference") / "run"
    with OpenAITestServer(SyntheticTeacher()) as server:
        code, stderr = _invoke(server, out)
        assert machine_example_prompts(server.requests, out) > 0
    assert code == 0, stderr
    return _pool(out)


TRANSIENT: list[tuple[str, list[Reply], list[str]]] = [
    ("429_storm_retry_after", [Reply.rate_limited(0.05)] * 24, []),
    ("429_storm_no_retry_after", [Reply.rate_limited()] * 8, []),
    ("500", [Reply.server_error(500)] * 3, []),
    ("502", [Reply.server_error(502)] * 3, []),
    ("503", [Reply.server_error(503)] * 3, []),
    ("timeout", [Reply(text="late", delay=3.0)] * 2, ["--timeout", "0.5"]),
    ("connection_dropped", [Reply.dropped()] * 3, []),
    ("connection_reset", [Reply.reset()] * 3, []),
    ("malformed_json", [Reply.malformed()] * 3, []),
    ("no_choices", [NO_CHOICES] * 3, []),
]


@pytest.mark.parametrize(
    ("faults", "flags"), [c[1:] for c in TRANSIENT], ids=[c[0] for c in TRANSIENT]
)
def test_transient_fault_changes_nothing(
    reference: bytes, tmp_path: Path, faults: list[Reply], flags: list[str]
) -> None:
    teacher = SyntheticTeacher()
    answered = {"n": 0}
    lock = threading.Lock()
    with OpenAITestServer(teacher) as server:

        def handler(request: RecordedRequest) -> Reply:
            with lock:
                answered["n"] += 1
                if answered["n"] == 10:  # mid-run, once the pipeline is busy
                    server.push_faults(*faults)
            return teacher(request)

        server.handler = handler
        code, stderr = _invoke(server, tmp_path / "run", *flags)
        assert server.pending_faults == 0, "the run ended before meeting every fault"
    assert code == 0, stderr
    assert _pool(tmp_path / "run") == reference


def test_random_faults_at_20_percent(reference: bytes, tmp_path: Path) -> None:
    with OpenAITestServer(SyntheticTeacher(), fault_rate=0.2, fault_seed=5) as server:
        code, stderr = _invoke(server, tmp_path / "run")
        stats = server.stats()
    assert code == 0, stderr
    assert stats.faults >= 0.1 * stats.requests
    assert _pool(tmp_path / "run") == reference


def test_server_that_disappears_and_comes_back(reference: bytes, tmp_path: Path) -> None:
    teacher = SyntheticTeacher()
    gone = threading.Event()
    first = OpenAITestServer(teacher).start()
    port = first.port
    servers = [first]

    def handler(request: RecordedRequest) -> Reply:
        if len(first.requests) == 30 and not gone.is_set():
            gone.set()
        return teacher(request)

    first.handler = handler

    def outage() -> None:
        gone.wait(60)
        first.stop()  # every open connection is cut, new ones are refused
        time.sleep(1.5)
        servers.append(OpenAITestServer(teacher, port=port).start())

    thread = threading.Thread(target=outage)
    thread.start()
    try:
        code, stderr = _invoke(first, tmp_path / "run")
    finally:
        thread.join(timeout=120)
        for server in servers:
            server.stop()
    assert not thread.is_alive(), "the outage never ended"
    assert code == 0, stderr
    assert len(servers) == 2 and servers[1].requests, "the run never needed the second server"
    assert _pool(tmp_path / "run") == reference


PERSISTENT: list[tuple[str, Callable[[], Reply], list[str], str]] = [
    ("429", lambda: Reply.rate_limited(0), [], "HTTP 429: Rate limit reached"),
    ("503", lambda: Reply.server_error(503), [], "HTTP 503: The engine is currently overloaded"),
    ("timeout", lambda: Reply(delay=2.0), ["--timeout", "0.3"], "request timed out"),
    ("dropped", Reply.dropped, [], "connection failed"),
    ("reset", Reply.reset, [], "connection failed"),
    ("malformed_json", Reply.malformed, [], "the answer was not valid JSON"),
    ("no_choices", lambda: NO_CHOICES, [], "the answer had no choices"),
]


# Faults that are a refusal of the request when they persist (see openai_wire.is_refusal).
POISON = ("the answer was not valid JSON", "the answer had no choices")


@pytest.mark.parametrize(
    ("fault", "flags", "message"),
    [c[1:] for c in PERSISTENT],
    ids=[c[0] for c in PERSISTENT],
)
def test_persistent_fault_stops_cleanly_and_resumes(
    reference: bytes,
    tmp_path: Path,
    fault: Callable[[], Reply],
    flags: list[str],
    message: str,
) -> None:
    teacher = SyntheticTeacher()
    broken = threading.Event()
    out = tmp_path / "run"
    with OpenAITestServer(teacher) as server:

        def handler(request: RecordedRequest) -> Reply:
            if len(server.requests) >= 25:
                broken.set()
            return fault() if broken.is_set() else teacher(request)

        server.handler = handler
        code, stderr = _invoke(server, out, "--max-retries", "2", *flags)
        assert code == 1
        if message in POISON:
            # An answer that is no answer, every time, is a refusal of that request (recorded
            # as teacher_refused); a teacher refusing everything stops the run all the same.
            assert stderr.startswith("error: ")
            assert "the teacher refuses everything" in stderr
            assert f"{server.base_url}: {message}" in stderr
            assert "after 3 attempts); progress is saved: re-run the same command" in stderr
        else:
            assert stderr.startswith(f"error: {server.base_url}: {message}")
            assert "after 3 attempts; progress is saved: re-run the same command" in stderr
        assert stderr.count("\n") == 1 and "Traceback" not in stderr
        before = _pool(out)
        server.handler = teacher
        code, stderr = _invoke(server, out, *flags)
    assert code == 0, stderr
    assert reference.startswith(before)
    if message in POISON:
        # The refusals logged before the stop replay as rejections, so the pool goes on
        # from there (nothing is sent twice) and reaches the target by other tasks.
        assert _pool(out).count(b"\n") >= reference.count(b"\n")
    else:
        assert _pool(out) == reference


def _empty_for(stage: str) -> Callable[[RecordedRequest], Reply]:
    teacher = SyntheticTeacher()

    def handler(request: RecordedRequest) -> Reply:
        prompt = request.prompt
        kind = (
            "classify"
            if prompt.endswith("Classification:")
            else "instances"
            if prompt.endswith("\n") and "Task:" in prompt
            else "instructions"
        )
        # Deterministic: the same requests get empty answers, whatever the timing.
        if kind == stage and sum(prompt.encode()) % 4 == 0:
            return Reply(text="", finish_reason="stop")
        return teacher(request)

    return handler


@pytest.mark.parametrize("stage", ["instructions", "classify", "instances"])
def test_empty_completions_are_accounted_for(tmp_path: Path, stage: str) -> None:
    import json

    out = tmp_path / "run"
    with OpenAITestServer(_empty_for(stage)) as server:
        code, stderr = _invoke(server, out)
        empty = [r for r, reply in server.answered if reply.text == ""]
    assert code == 0, stderr
    assert empty, "no request got an empty answer"
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    reasons = {(r["stage"], r["reason"]) for r in rejected}
    if stage == "instances":
        assert ("instances", "no_instances") in reasons
    if stage == "classify":  # empty twice: the sampled retry has the same prompt
        assert ("classify", "unparseable_classification") in reasons
    pool = [json.loads(line) for line in _pool(out).splitlines()]
    assert len(pool) >= TARGET and all(t["instances"] for t in pool)


def test_answer_that_never_stops(tmp_path: Path) -> None:
    """A teacher that ignores the stop sequence is cut by max_tokens; nothing torn is kept."""
    import json

    teacher = SyntheticTeacher()

    def handler(request: RecordedRequest) -> Reply:
        reply = teacher(request)
        if request.body["max_tokens"] < 1000:
            return reply
        endless = reply.text.replace("\n17.", "\n17b.") * 200  # the stop sequence never comes
        return Reply(text=endless)  # the server cuts at max_tokens: finish_reason "length"

    out = tmp_path / "run"
    with OpenAITestServer(handler) as server:
        code, stderr = _invoke(server, out)
        cut = [r for r, _ in server.answered if r.body["max_tokens"] >= 1000]
    assert code == 0, stderr
    assert cut
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert any(r["reason"] == "truncated" for r in rejected)
    pool = [json.loads(line) for line in _pool(out).splitlines()]
    assert len(pool) >= TARGET
