"""Exercise the loopback OpenAI test server through the real openai client over HTTP."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfinstruct.testing import (
    OpenAITestServer,
    RecordedRequest,
    Reply,
    echo_handler,
    echo_text,
    load_handler,
)

API_KEY = "test-key"
REPO_ROOT = Path(__file__).resolve().parents[1]


def _server_threads(server: OpenAITestServer) -> list[threading.Thread]:
    prefix = f"openai-test-server:{server.port}"
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


@pytest.fixture
def server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer(api_key=API_KEY) as srv:
        yield srv


@pytest.fixture
def client(server: OpenAITestServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0) as c:
        yield c


def _http(
    server: OpenAITestServer,
    method: str,
    path: str,
    body: object = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """Send one raw HTTP request, for what the openai client cannot express."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        payload = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=payload, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


# -- response shapes -------------------------------------------------------------------


def test_completion_parses_with_openai_client(
    server: OpenAITestServer, client: openai.OpenAI
) -> None:
    result = client.completions.create(model="teacher", prompt="List three fruits")
    assert result.object == "text_completion"
    assert result.model == "teacher"
    assert result.id.startswith("cmpl-")
    assert len(result.choices) == 1
    choice = result.choices[0]
    assert choice.index == 0
    assert choice.text == echo_text("List three fruits")
    assert choice.finish_reason == "stop"
    assert choice.logprobs is None
    assert result.usage is not None
    assert result.usage.prompt_tokens == 3
    assert result.usage.completion_tokens == len(choice.text.split())
    assert result.usage.total_tokens == 3 + len(choice.text.split())


def test_prompt_list_gets_one_choice_per_prompt(
    server: OpenAITestServer, client: openai.OpenAI
) -> None:
    prompts = ["first prompt", "second one here", "third"]
    result = client.completions.create(model="teacher", prompt=prompts)
    assert [c.index for c in result.choices] == [0, 1, 2]
    assert [c.text for c in result.choices] == [echo_text(p) for p in prompts]
    assert result.usage is not None
    assert result.usage.prompt_tokens == 6
    records = server.requests
    assert [r.prompt for r in records] == prompts
    assert [r.index for r in records] == [0, 1, 2]
    assert len({r.request_id for r in records}) == 1
    assert server.stats().requests == 1


def test_chat_completion_parses_with_openai_client(
    server: OpenAITestServer, client: openai.OpenAI
) -> None:
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "system", "content": "You write tasks."},
        {"role": "user", "content": "Write one task."},
    ]
    result = client.chat.completions.create(model="teacher", messages=messages)
    assert result.object == "chat.completion"
    assert result.id.startswith("chatcmpl-")
    choice = result.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == echo_text("You write tasks.\n\nWrite one task.")
    assert choice.finish_reason == "stop"
    assert result.usage is not None
    assert result.usage.prompt_tokens == 6
    assert server.requests[0].endpoint == "chat"
    assert server.requests[0].prompt == "You write tasks.\n\nWrite one task."


def test_models_list(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["test-model"]


# -- stop, max_tokens and usage --------------------------------------------------------


def test_stop_sequences_cut_at_first_occurrence(
    server: OpenAITestServer, client: openai.OpenAI
) -> None:
    server.handler = lambda request: Reply(text="Task: sort\nInput: x\n### Task: next END")
    result = client.completions.create(model="t", prompt="p", stop=["END", "###"])
    assert result.choices[0].text == "Task: sort\nInput: x\n"
    assert result.choices[0].finish_reason == "stop"
    single = client.completions.create(model="t", prompt="p", stop="Input")
    assert single.choices[0].text == "Task: sort\n"


def test_max_tokens_truncates_words_with_length(
    server: OpenAITestServer, client: openai.OpenAI
) -> None:
    server.handler = lambda request: Reply(text="one two  three\nfour five")
    result = client.completions.create(model="t", prompt="p", max_tokens=3)
    assert result.choices[0].text == "one two  three"
    assert result.choices[0].finish_reason == "length"
    assert result.usage is not None
    assert result.usage.completion_tokens == 3
    roomy = client.completions.create(model="t", prompt="p", max_tokens=5)
    assert roomy.choices[0].finish_reason == "stop"
    chat = client.chat.completions.create(
        model="t", messages=[{"role": "user", "content": "p"}], max_tokens=2
    )
    assert chat.choices[0].message.content == "one two"
    assert chat.choices[0].finish_reason == "length"


def test_explicit_finish_reason_and_usage_override(
    server: OpenAITestServer, client: openai.OpenAI
) -> None:
    server.handler = lambda request: Reply(
        text="a b c d", finish_reason="length", prompt_tokens=100, completion_tokens=7
    )
    result = client.completions.create(model="t", prompt="p", max_tokens=1, stop="b")
    assert result.choices[0].text == "a b c d"
    assert result.choices[0].finish_reason == "length"
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (100, 7)
    assert result.usage.total_tokens == 107


@pytest.fixture(scope="module")
def echo_prompt_client() -> Iterator[openai.OpenAI]:
    with (
        OpenAITestServer(lambda request: Reply(text=request.prompt)) as srv,
        openai.OpenAI(base_url=srv.base_url, api_key=API_KEY, max_retries=0) as c,
    ):
        yield c


@settings(max_examples=60, deadline=None)
@given(
    words=st.lists(st.text(alphabet="abcxyz", min_size=1, max_size=5), max_size=12),
    max_tokens=st.integers(min_value=1, max_value=15),
)
def test_max_tokens_property(
    echo_prompt_client: openai.OpenAI, words: list[str], max_tokens: int
) -> None:
    prompt = " ".join(words)
    result = echo_prompt_client.completions.create(model="t", prompt=prompt, max_tokens=max_tokens)
    choice = result.choices[0]
    assert choice.text.split() == words[:max_tokens]
    assert choice.finish_reason == ("length" if len(words) > max_tokens else "stop")
    assert result.usage is not None
    assert result.usage.completion_tokens == min(len(words), max_tokens)


# -- faults ------------------------------------------------------------------------------


def test_rate_limit_reaches_client_with_retry_after(
    server: OpenAITestServer, client: openai.OpenAI
) -> None:
    server.push_faults(Reply.rate_limited(1.5))
    with pytest.raises(openai.RateLimitError) as caught:
        client.completions.create(model="t", prompt="p")
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "1.5"
    assert caught.value.code == "rate_limit_exceeded"


def test_server_errors_map_to_internal_server_error(
    server: OpenAITestServer, client: openai.OpenAI
) -> None:
    server.push_faults(Reply.server_error(), Reply.server_error(503))
    for status in (500, 503):
        with pytest.raises(openai.InternalServerError) as caught:
            client.completions.create(model="t", prompt="p")
        assert caught.value.status_code == status


def test_dropped_connection_is_connection_error(
    server: OpenAITestServer, client: openai.OpenAI
) -> None:
    server.push_faults(Reply.dropped())
    with pytest.raises(openai.APIConnectionError):
        client.completions.create(model="t", prompt="p")
    # The client recovers on a fresh connection.
    assert client.completions.create(model="t", prompt="p").choices[0].text == echo_text("p")


def test_malformed_json_with_200(server: OpenAITestServer, client: openai.OpenAI) -> None:
    server.push_faults(Reply.malformed(b'{"id": "cmpl-1", "choices": ['))
    raw = client.completions.with_raw_response.create(model="t", prompt="p")
    assert raw.status_code == 200
    assert raw.http_response.content == b'{"id": "cmpl-1", "choices": ['
    server.push_faults(Reply.malformed())
    # The openai client surfaces an undecodable body as a plain JSON ValueError.
    with pytest.raises(ValueError):
        client.completions.create(model="t", prompt="p")


def test_push_faults_are_used_in_order_before_the_handler(
    server: OpenAITestServer, client: openai.OpenAI
) -> None:
    calls: list[str] = []

    def handler(request: RecordedRequest) -> Reply:
        calls.append(request.prompt)
        return echo_handler(request)

    server.handler = handler
    server.push_faults(Reply.rate_limited(0), Reply.server_error())
    assert server.pending_faults == 2
    with pytest.raises(openai.RateLimitError):
        client.completions.create(model="t", prompt="one")
    with pytest.raises(openai.InternalServerError):
        client.completions.create(model="t", prompt="two")
    client.completions.create(model="t", prompt="three")
    assert server.pending_faults == 0
    assert calls == ["three"]
    assert [(r.prompt, f.status) for r, f in server.faulted] == [("one", 429), ("two", 500)]
    assert [r.prompt for r, _ in server.answered] == ["three"]
    stats = server.stats()
    assert (stats.requests, stats.answered, stats.faults) == (3, 1, 2)


def test_client_retries_honour_retry_after(server: OpenAITestServer) -> None:
    server.push_faults(Reply.rate_limited(0.01), Reply.rate_limited(0.01))
    with openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=2) as c:
        started = time.monotonic()
        result = c.completions.create(model="t", prompt="p")
        elapsed = time.monotonic() - started
    assert result.choices[0].text == echo_text("p")
    assert len(server.requests) == 3
    assert elapsed < 0.5  # Retry-After (10 ms), not the client's 0.5 s backoff.


def _outcomes(seed: int, n: int) -> list[str]:
    outcomes: list[str] = []
    with (
        OpenAITestServer(fault_rate=0.5, fault_seed=seed) as srv,
        openai.OpenAI(base_url=srv.base_url, api_key=API_KEY, max_retries=0) as c,
    ):
        for i in range(n):
            try:
                c.completions.create(model="t", prompt=f"p{i}")
                outcomes.append("ok")
            except openai.APIStatusError as exc:
                outcomes.append(str(exc.status_code))
            except openai.APIConnectionError:
                outcomes.append("dropped")
        answered = [r.prompt for r, _ in srv.answered]
        faulted = [r.prompt for r, _ in srv.faulted]
    assert answered == [f"p{i}" for i, o in enumerate(outcomes) if o == "ok"]
    assert faulted == [f"p{i}" for i, o in enumerate(outcomes) if o != "ok"]
    return outcomes


def test_fault_rate_is_seeded_and_recorded() -> None:
    first = _outcomes(seed=7, n=40)
    assert first == _outcomes(seed=7, n=40)
    assert set(first) == {"ok", "429", "500", "503", "dropped"}
    assert 8 <= first.count("ok") <= 32


def test_handler_exception_becomes_500(server: OpenAITestServer, client: openai.OpenAI) -> None:
    def broken(request: RecordedRequest) -> Reply:
        raise KeyError("boom")

    server.handler = broken
    with pytest.raises(openai.InternalServerError, match="KeyError"):
        client.completions.create(model="t", prompt="p")
    assert [type(e) for e in server.handler_errors] == [KeyError]


# -- auth, routing, recording ------------------------------------------------------------


def test_wrong_or_missing_key_is_401(server: OpenAITestServer) -> None:
    with (
        openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0) as c,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        c.completions.create(model="t", prompt="p")
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    status, _, body = _http(server, "POST", "/v1/completions", {"model": "t", "prompt": "p"})
    assert status == 401
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    assert server.requests == []


def test_unknown_path_is_404_in_openai_shape(server: OpenAITestServer) -> None:
    auth = {"Authorization": f"Bearer {API_KEY}"}
    status, headers, body = _http(server, "POST", "/v1/engines/x", {"a": 1}, auth)
    assert status == 404
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "/v1/engines/x" in error["message"]
    assert _http(server, "GET", "/v1/completions", headers=auth)[0] == 404


def test_bad_request_body_is_400(server: OpenAITestServer) -> None:
    auth = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    status, _, body = _http(server, "POST", "/v1/completions", {"prompt": "no model"}, auth)
    assert status == 400
    assert json.loads(body)["error"]["type"] == "invalid_request_error"


def test_requests_are_recorded(server: OpenAITestServer, client: openai.OpenAI) -> None:
    before = time.monotonic()
    client.completions.create(
        model="teacher", prompt="a b", temperature=0.7, top_p=0.5, seed=3, stop=["\n\n"]
    )
    client.chat.completions.create(model="teacher", messages=[{"role": "user", "content": "c"}])
    first, second = server.requests
    assert (first.endpoint, first.prompt, first.model) == ("completions", "a b", "teacher")
    assert first.body["temperature"] == 0.7
    assert first.body["seed"] == 3
    assert first.body["stop"] == ["\n\n"]
    assert first.headers["authorization"] == f"Bearer {API_KEY}"
    assert before <= first.time <= second.time <= time.monotonic()
    assert second.request_id == first.request_id + 1
    assert [r for r, _ in server.answered] == [first, second]


# -- concurrency and capacity ------------------------------------------------------------


async def _many(
    base_url: str, n: int, max_retries: int = 0, latencies: list[float] | None = None
) -> list[object]:
    """Send n requests at once; each one's client-side latency goes to `latencies` if given."""

    async def one(c: openai.AsyncOpenAI, i: int) -> object:
        sent = time.monotonic()
        try:
            return await c.completions.create(model="t", prompt=f"p{i}")
        finally:
            if latencies is not None:
                latencies.append(time.monotonic() - sent)

    async with openai.AsyncOpenAI(base_url=base_url, api_key=API_KEY, max_retries=max_retries) as c:
        calls = [one(c, i) for i in range(n)]
        return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 120)


def test_concurrent_async_requests_overlap() -> None:
    with OpenAITestServer(lambda request: Reply(text="ok", delay=0.2)) as srv:
        started = time.monotonic()
        latencies: list[float] = []
        results = asyncio.run(_many(srv.base_url, 64, latencies=latencies))
        elapsed = time.monotonic() - started
        stats = srv.stats()
    assert all(isinstance(r, openai.types.Completion) for r in results)
    assert elapsed < 64 * 0.2 / 4
    assert stats.answered == 64
    assert stats.peak_in_flight >= 16
    # Each request is busy for at least its delay, and only while the client waits for it:
    # the server holds it between receiving it and answering, within the client's round trip
    # (a fixed bound on the serving overhead failed on a busy two-core machine).
    assert 64 * 0.2 <= stats.busy_seconds <= sum(latencies)


def test_handles_300_concurrent_connections() -> None:
    with OpenAITestServer(lambda request: Reply(text="ok", delay=0.3)) as srv:
        results = asyncio.run(_many(srv.base_url, 300))
        peak = srv.stats().peak_in_flight
    assert all(isinstance(r, openai.types.Completion) for r in results)
    assert peak >= 100


def test_capacity_rejects_with_429() -> None:
    with OpenAITestServer(lambda request: Reply(text="ok", delay=0.3), capacity=2) as srv:
        results = asyncio.run(_many(srv.base_url, 6))
        stats = srv.stats()
        rejected = srv.rejected
    errors = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert sum(isinstance(r, openai.types.Completion) for r in results) == 2
    assert len(errors) == 4
    assert all(e.response.headers["retry-after"] == "0.05" for e in errors)
    assert (stats.answered, stats.rejected_over_capacity, stats.faults) == (2, 4, 0)
    assert stats.peak_in_flight == 2
    assert len(rejected) == 4


def test_capacity_with_client_retries_serves_everything() -> None:
    with OpenAITestServer(lambda request: Reply(text="ok", delay=0.05), capacity=4) as srv:
        results = asyncio.run(_many(srv.base_url, 16, max_retries=50))
        stats = srv.stats()
    assert all(isinstance(r, openai.types.Completion) for r in results)
    assert stats.answered == 16
    assert stats.peak_in_flight <= 4
    assert stats.utilisation is not None
    assert 0.0 < stats.utilisation <= 1.0


def test_busy_seconds_and_utilisation() -> None:
    with (
        OpenAITestServer(lambda request: Reply(text="ok", delay=0.1), capacity=4) as srv,
        openai.OpenAI(base_url=srv.base_url, api_key=API_KEY, max_retries=0) as c,
    ):
        for _ in range(3):
            c.completions.create(model="t", prompt="p")
        stats = srv.stats()
    assert 0.3 <= stats.busy_seconds < 0.5
    assert stats.peak_in_flight == 1
    assert stats.utilisation == pytest.approx(stats.busy_seconds / (4 * stats.wall_seconds))
    assert stats.utilisation is not None and stats.utilisation < 0.25


# -- lifecycle ---------------------------------------------------------------------------


def test_stop_is_prompt_and_leaves_no_threads() -> None:
    before = set(threading.enumerate())
    srv = OpenAITestServer(lambda request: Reply(text="slow", delay=30)).start()
    assert _server_threads(srv)
    errors: list[BaseException] = []

    def call() -> None:
        with openai.OpenAI(base_url=srv.base_url, api_key=API_KEY, max_retries=0) as c:
            try:
                c.completions.create(model="t", prompt="p")
            except openai.APIConnectionError as exc:
                errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    # An idle keep-alive connection must not hold stop() up either.
    idle = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    idle.request("GET", "/v1/models")
    idle.getresponse().read()
    deadline = time.monotonic() + 5
    while srv.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 1.0
    caller.join(5)
    idle.close()
    assert not caller.is_alive()
    assert len(errors) == 1
    assert _server_threads(srv) == []
    assert set(threading.enumerate()) <= before
    srv.stop()  # idempotent


def test_server_cannot_restart_and_needs_start_for_url() -> None:
    srv = OpenAITestServer()
    with pytest.raises(RuntimeError):
        _ = srv.base_url
    with srv:
        assert srv.base_url == f"http://127.0.0.1:{srv.port}/v1"
    with pytest.raises(RuntimeError):
        srv.start()


def test_load_handler_rejects_bad_spec() -> None:
    with pytest.raises(ValueError):
        load_handler("no_colon")


def test_cli_serves_custom_handler(tmp_path: Path) -> None:
    (tmp_path / "shout_handler.py").write_text(
        textwrap.dedent(
            """
            from selfinstruct.testing import Reply

            def make():
                return lambda request: Reply(text=request.prompt.upper())
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(tmp_path)])}
    command = [sys.executable, "-W", "error", "-m", "selfinstruct.testing.server"]
    args = ["--port", "0", "--api-key", API_KEY, "--handler", "shout_handler:make"]
    with subprocess.Popen(
        [*command, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            assert ready, "the server printed nothing in 60 s"
            line = proc.stdout.readline()
            base_url = line.strip().rsplit(" ", 1)[-1]
            assert base_url.startswith("http://127.0.0.1:"), line
            with openai.OpenAI(base_url=base_url, api_key=API_KEY, max_retries=0, timeout=30) as c:
                result = c.completions.create(model="t", prompt="hello")
            assert result.choices[0].text == "HELLO"
        finally:
            # SIGTERM, not SIGINT: a shell starts background jobs (`nohup pytest &`) with
            # SIGINT ignored, the server inherits that, and SIGINT would never stop it.
            proc.send_signal(signal.SIGTERM)
            try:
                _, stderr = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()  # so that leaving the `with` (which waits) cannot hang
                proc.communicate(timeout=30)
                raise
    assert proc.returncode == 0, stderr
    assert "Stopped after 1 requests (1 answered)." in stderr
