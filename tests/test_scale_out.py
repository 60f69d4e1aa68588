"""Scale-out over real HTTP: adaptive concurrency and several endpoints, some failing."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import run_cli

from selfinstruct.backends.openai_compat import OpenAICompatBackend
from selfinstruct.config import TeacherConfig
from selfinstruct.errors import TeacherError
from selfinstruct.records import Completion, Request, SamplingParams
from selfinstruct.testing.server import OpenAITestServer, Reply
from selfinstruct.testing.teacher import SyntheticTeacher

PARAMS = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=20)


def _requests(n: int) -> list[Request]:
    return [Request(f"k{i}", "instances", f"prompt {i}", PARAMS) for i in range(n)]


def _run(
    urls: list[str], requests: list[Request], *, set_aside: float = 0.2, **teacher: object
) -> tuple[list[Completion], OpenAICompatBackend]:
    config = TeacherConfig(base_urls=urls, model="test-model", **teacher)  # type: ignore[arg-type]

    async def go() -> tuple[list[Completion], OpenAICompatBackend]:
        backend = OpenAICompatBackend(config, None, set_aside=set_aside)
        try:
            await backend.preflight()
            return await backend.complete(requests), backend
        finally:
            await backend.aclose()

    return asyncio.run(go())


@contextmanager
def _dead_url() -> Iterator[str]:
    """Yield a loopback URL where connections are refused (bound, not listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def test_adaptive_concurrency_finds_the_servers_capacity() -> None:
    capacity = 12
    with OpenAITestServer(lambda r: Reply(text="ok", delay=0.03), capacity=capacity) as server:
        results, backend = _run([server.base_url], _requests(400))
        stats = server.stats()
    assert [c.text for c in results] == ["ok"] * 400
    limit = backend.limit
    assert limit.adaptive and not limit.slow_start  # it met the capacity and backed off
    # It settles near the capacity: not stuck at its start (16), not far above (429 storms).
    assert capacity * 0.6 <= limit.limit <= capacity * 1.5
    assert stats.peak_in_flight == capacity  # it did use all of it
    assert stats.rejected_over_capacity < 0.2 * 400  # refusals stay a small share


def test_overshooting_the_capacity_costs_retries_not_failures() -> None:
    # The limit starts at 16 against a server that takes 3, with answers slow enough that
    # a refused request retrying at once (Retry-After 0.05 s) would meet a full server again:
    # refused requests must give their slots back and wait for the lowered limit, or some
    # run out of their 4 retries (the old code did, every time).
    with OpenAITestServer(lambda r: Reply(text="ok", delay=0.3), capacity=3) as server:
        results, backend = _run([server.base_url], _requests(40), max_retries=4)
        stats = server.stats()
    assert [c.text for c in results] == ["ok"] * 40
    assert stats.rejected_over_capacity >= 13  # the first overshoot was really refused
    assert backend.limit.limit <= 6


def test_fixed_concurrency_is_kept_without_probing() -> None:
    with OpenAITestServer(lambda r: Reply(text="ok", delay=0.05)) as server:
        _, backend = _run([server.base_url], _requests(40), concurrency=5)
        assert server.stats().peak_in_flight == 5
    assert backend.limit.limit == 5 and not backend.limit.adaptive


def test_a_failing_endpoint_is_set_aside_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        OpenAITestServer(lambda r: Reply(text="good", delay=0.02)) as good,
        OpenAITestServer(lambda r: Reply.server_error(503)) as broken,
    ):
        with caplog.at_level(logging.WARNING, logger="selfinstruct"):
            results, _ = _run(
                [broken.base_url, good.base_url], _requests(60), concurrency=8, set_aside=30
            )
        broken_seen = len(broken.requests)
    assert [c.text for c in results] == ["good"] * 60
    # Set aside after 3 failures in a row (a few more were already on their way).
    assert broken_seen <= 3 + 8
    assert any(f"{broken.base_url} set aside" in m for m in caplog.messages)


def test_a_set_aside_endpoint_is_tried_again_and_used_once_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        OpenAITestServer(lambda r: Reply(text="steady", delay=0.05)) as steady,
        OpenAITestServer(lambda r: Reply(text="back", delay=0.05)) as flaky,
    ):
        flaky.push_faults(*[Reply.server_error(502)] * 3)
        with caplog.at_level(logging.WARNING, logger="selfinstruct"):
            results, _ = _run(
                [flaky.base_url, steady.base_url], _requests(120), concurrency=4, set_aside=0.2
            )
    texts = [c.text for c in results]
    assert set(texts) == {"steady", "back"} and texts.count("back") > 10
    assert any(f"{flaky.base_url} answers again" in m for m in caplog.messages)


def test_an_unreachable_endpoint_at_start_is_set_aside_not_fatal() -> None:
    with _dead_url() as dead, OpenAITestServer(lambda r: Reply(text="up")) as up:
        results, _ = _run([dead, up.base_url], _requests(10), concurrency=4, set_aside=60)
    assert [c.text for c in results] == ["up"] * 10


def test_every_endpoint_failing_stops_after_bounded_retries_naming_one() -> None:
    with (
        OpenAITestServer(lambda r: Reply.server_error(500)) as one,
        OpenAITestServer(lambda r: Reply.server_error(503)) as two,
    ):
        with pytest.raises(TeacherError) as info:
            _run([one.base_url, two.base_url], _requests(1), max_retries=4, set_aside=0.05)
        attempts = len(one.requests) + len(two.requests)
    assert attempts == 5
    message = str(info.value)
    assert (one.base_url in message or two.base_url in message) and "5 attempts" in message


def test_bootstrap_over_four_endpoints_with_one_down(tmp_path: Path) -> None:
    out = tmp_path / "run"
    teacher = SyntheticTeacher(latency=0.01)
    with (
        _dead_url() as dead,
        OpenAITestServer(teacher, capacity=6) as a,
        OpenAITestServer(teacher, capacity=6) as b,
        OpenAITestServer(teacher, capacity=6) as c,
    ):
        urls = [dead, a.base_url, b.base_url, c.base_url]
        args = ["bootstrap", "--model", "synthetic", "--out", str(out), "--target", "60"]
        for url in urls:
            args += ["--base-url", url]
        done = run_cli(*args, "--quiet")
        served = [len(s.answered) for s in (a, b, c)]
    assert done.returncode == 0, done.stderr
    assert f"{dead} set aside" in done.stderr
    state = json.loads((out / "state.json").read_text())
    assert state["accepted"] >= 60
    # The load is spread: each live endpoint served a fair share.
    assert min(served) > 0.2 * sum(served)
    # The stored run names no endpoint as identity: the same run resumes on other servers.
    header = json.loads((out / "config.json").read_text())
    assert "teacher.base_urls" not in header["identity"]
