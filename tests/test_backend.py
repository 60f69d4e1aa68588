"""The OpenAI-compatible backend over real HTTP, with the real openai client."""

from __future__ import annotations

import asyncio
import email.utils
import gc
import itertools
import socket
import time

import pytest

from selfinstruct import backends
from selfinstruct.backends.openai_compat import OpenAICompatBackend
from selfinstruct.config import TeacherConfig
from selfinstruct.errors import AuthError, TeacherError
from selfinstruct.records import Completion, Request, SamplingParams
from selfinstruct.testing.server import OpenAITestServer, RecordedRequest, Reply

PARAMS = SamplingParams(temperature=0.7, top_p=0.5, max_tokens=50, stop=("STOP",), seed=7)


def _request(prompt: str = "Say hello.") -> Request:
    return Request(key="k", stage="instructions", prompt=prompt, params=PARAMS)


def _complete(
    server: OpenAITestServer, requests: list[Request], **teacher: object
) -> list[Completion]:
    config = TeacherConfig(base_urls=[server.base_url], model="test-model", **teacher)  # type: ignore[arg-type]

    async def go() -> list[Completion]:
        backend = OpenAICompatBackend(config, "test-key")
        try:
            return await backend.complete(requests)
        finally:
            await backend.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_both_apis_send_params_and_keep_finish_reason_and_usage(api: str) -> None:
    def handler(request: RecordedRequest) -> Reply:
        return Reply(text=f"one two three STOP four ({request.endpoint})")

    with OpenAITestServer(handler) as server:
        (completion,) = _complete(server, [_request()], api=api)
        (recorded,) = server.requests
    assert completion.text == "one two three "
    assert completion.finish_reason == "stop"
    assert completion.usage.completion_tokens == 3
    assert completion.usage.prompt_tokens == 2
    assert recorded.endpoint == ("chat" if api == "chat" else "completions")
    body = recorded.body
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.7, 0.5, 50)
    assert body["stop"] == ["STOP"] and body["seed"] == 7 and body["model"] == "test-model"
    if api == "chat":
        assert body["messages"] == [{"role": "user", "content": "Say hello."}]
    else:
        assert body["prompt"] == "Say hello."
    assert recorded.headers["authorization"] == "Bearer test-key"


def test_length_finish_reason_is_reported() -> None:
    with OpenAITestServer(lambda r: Reply(text="word " * 100)) as server:
        (completion,) = _complete(server, [_request()])
    assert completion.finish_reason == "length"
    assert len(completion.text.split()) == 50


def _retried(*faults: Reply) -> tuple[Completion, list[float], float]:
    """Answer one request after `faults`; return it, the gaps between tries, the time taken."""
    with OpenAITestServer(lambda r: Reply(text="fine")) as server:
        server.push_faults(*faults)
        start = time.monotonic()
        (completion,) = _complete(server, [_request()])
        elapsed = time.monotonic() - start
        times = [r.time for r in server.requests]
    return completion, [b - a for a, b in itertools.pairwise(times)], elapsed


def test_retry_after_is_honoured_then_succeeds() -> None:
    completion, gaps, elapsed = _retried(Reply.rate_limited(0.4), Reply.rate_limited(0.3))
    assert completion.text == "fine"
    assert len(gaps) == 2
    assert gaps[0] >= 0.38 and gaps[1] >= 0.28
    assert elapsed < 5


def test_retry_after_as_an_http_date_or_in_milliseconds_is_honoured() -> None:
    # RFC 9110 lets Retry-After be an HTTP date; Azure OpenAI also sends retry-after-ms,
    # which OpenAI's SDK reads first. Either was dropped for the client's own backoff
    # (at most 1 s after a first refusal): too soon for a server that asked for more.
    refusal = "Rate limit reached (test server)."
    when = email.utils.formatdate(time.time() + 3.0, usegmt=True)  # ~2-3 s: whole seconds
    dated = Reply(text=refusal, status=429, headers={"Retry-After": when})
    millis = Reply(text=refusal, status=429, headers={"retry-after-ms": "400", "Retry-After": "9"})
    completion, gaps, elapsed = _retried(dated, millis)
    assert completion.text == "fine"
    assert len(gaps) == 2
    assert gaps[0] >= 1.9
    assert 0.38 <= gaps[1] < 5  # the milliseconds, not the 9 s beside them
    assert elapsed < 10


@pytest.mark.parametrize(
    "fault",
    [Reply.server_error(500), Reply.server_error(502), Reply.server_error(503), Reply.dropped()],
    ids=["500", "502", "503", "dropped"],
)
def test_transient_faults_are_retried(fault: Reply) -> None:
    with OpenAITestServer(lambda r: Reply(text="recovered")) as server:
        server.push_faults(fault, fault)
        (completion,) = _complete(server, [_request()])
        assert len(server.requests) == 3
    assert completion.text == "recovered"


@pytest.mark.parametrize(
    "fault",
    [
        Reply.malformed(),
        Reply(
            raw_body=b'{"id": "x", "object": "text_completion", '
            b'"created": 1, "model": "m", "choices": []}'
        ),
    ],
    ids=["malformed-json", "no-choices"],
)
def test_bad_200_answers_are_retried(fault: Reply) -> None:
    with OpenAITestServer(lambda r: Reply(text="good")) as server:
        server.push_faults(fault)
        (completion,) = _complete(server, [_request()])
    assert completion.text == "good"


def test_timeout_is_retried() -> None:
    with OpenAITestServer(lambda r: Reply(text="late but here")) as server:
        server.push_faults(Reply(text="too slow", delay=2.0))
        (completion,) = _complete(server, [_request()], timeout=0.5)
    assert completion.text == "late but here"


def test_persistent_fault_stops_after_bounded_retries_naming_endpoint() -> None:
    with OpenAITestServer(lambda r: Reply.server_error(503)) as server:
        with pytest.raises(TeacherError) as info:
            _complete(server, [_request()], max_retries=2)
        assert len(server.requests) == 3
        assert server.base_url in str(info.value)
    assert "503" in str(info.value) and "3 attempts" in str(info.value)


def test_client_errors_are_not_retried() -> None:
    with OpenAITestServer(lambda r: Reply(status=404, text="The model does not exist")) as server:
        with pytest.raises(TeacherError, match="404"):
            _complete(server, [_request()])
        assert len(server.requests) == 1


def test_rejected_key_is_an_auth_error_without_the_key() -> None:
    with OpenAITestServer(lambda r: Reply(text="x"), api_key="right-key") as server:
        with pytest.raises(AuthError) as info:
            _complete(server, [_request()])
    assert "test-key" not in str(info.value)


def test_concurrency_limit_is_kept() -> None:
    with OpenAITestServer(lambda r: Reply(text="ok", delay=0.2)) as server:
        start = time.monotonic()
        results = _complete(server, [_request(f"p{i}") for i in range(12)], concurrency=4)
        elapsed = time.monotonic() - start
        peak = server.stats().peak_in_flight
    assert [c.text for c in results] == ["ok"] * 12
    assert peak == 4
    assert elapsed >= 0.55  # 12 requests, 4 at a time, 0.2 s each


def test_several_endpoints_share_the_load() -> None:
    with (
        OpenAITestServer(lambda r: Reply(text="a", delay=0.1)) as one,
        OpenAITestServer(lambda r: Reply(text="b", delay=0.1)) as two,
    ):
        config = TeacherConfig(base_urls=[one.base_url, two.base_url], concurrency=8)

        async def go() -> list[Completion]:
            backend = OpenAICompatBackend(config, None)
            try:
                return await backend.complete([_request(f"p{i}") for i in range(8)])
            finally:
                await backend.aclose()

        texts = sorted(c.text for c in asyncio.run(go()))
    assert texts == ["a"] * 4 + ["b"] * 4


def test_preflight_fails_fast_on_unreachable_server() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        config = TeacherConfig(base_urls=[f"http://127.0.0.1:{port}/v1"])

        async def go() -> None:
            backend = OpenAICompatBackend(config, None)
            try:
                await backend.preflight()
            finally:
                await backend.aclose()

        start = time.monotonic()
        with pytest.raises(TeacherError, match=f"cannot reach http://127.0.0.1:{port}/v1"):
            asyncio.run(go())
    assert time.monotonic() - start < 10


def test_one_wire_format_for_the_direct_and_batch_backends() -> None:
    from selfinstruct.backends import batch_api, openai_compat, openai_wire

    for name in ("request_body", "completion_from_json", "describe_error", "is_transient"):
        shared = getattr(openai_wire, name)
        assert getattr(openai_compat, name) is shared
        assert getattr(batch_api, name) is shared
    assert openai_compat.DEFAULT_BASE_URL is batch_api.DEFAULT_BASE_URL


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": 3, "completion_tokens": 4}, (3, 4)),
        ({"prompt_tokens": 3}, (3, 0)),
        ({"prompt_tokens": "3", "completion_tokens": 4}, (0, 4)),
        ({"prompt_tokens": True, "completion_tokens": -1}, (0, 0)),
        (None, (0, 0)),
    ],
)
def test_usage_is_read_field_by_field(usage: object, expected: tuple[int, int]) -> None:
    from selfinstruct.backends.openai_wire import completion_from_json

    data = {"choices": [{"text": "hi", "finish_reason": "length"}], "usage": usage}
    completion = completion_from_json(data, chat=False)
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == expected
    assert (completion.text, completion.finish_reason) == ("hi", "length")


@pytest.mark.parametrize("text", [123, ["a"], {"x": 1}])
def test_non_string_text_is_a_bad_answer_for_both_apis(text: object) -> None:
    from selfinstruct.backends.openai_wire import BadResponse, completion_from_json

    with pytest.raises(BadResponse, match="not a string"):
        completion_from_json({"choices": [{"text": text}]}, chat=False)
    with pytest.raises(BadResponse, match="not a string"):
        completion_from_json({"choices": [{"message": {"content": text}}]}, chat=True)


def test_served_model_names_the_checkpoint_behind_a_served_name() -> None:
    from openai.types import Model

    from selfinstruct.backends.openai_wire import served_model

    def model(name: str, **extra: str) -> Model:
        return Model.model_validate(
            {"id": name, "object": "model", "created": 0, "owned_by": "vllm", **extra}
        )

    vllm = [model("teacher", root="/models/qwen2.5-7b")]
    assert served_model(vllm, "teacher") == "teacher (/models/qwen2.5-7b)"
    # One model served: whatever name a request gives, that one answers.
    assert served_model(vllm, "other-name") == "teacher (/models/qwen2.5-7b)"
    many = [model("gpt-4o"), model("gpt-4o-mini")]
    assert served_model(many, "gpt-4o-mini") == "gpt-4o-mini"
    assert served_model(many, "missing") is None
    assert served_model([], "missing") is None


@pytest.mark.parametrize(
    "usage",
    [
        None,
        {"prompt_tokens": -5, "completion_tokens": -5},
        {"prompt_tokens": "12", "completion_tokens": 1.5},
        {"prompt_tokens": 10**12, "completion_tokens": 10**12},
    ],
    ids=["missing", "negative", "not-integers", "absurd"],
)
def test_implausible_usage_is_estimated_from_the_text(usage: object) -> None:
    from selfinstruct.backends.openai_wire import completion_from_json, estimate_tokens

    request = _request("p" * 400)  # max_tokens 50
    data = {"choices": [{"text": "t" * 120, "finish_reason": "stop"}], "usage": usage}
    completion = completion_from_json(data, chat=False, request=request)
    assert completion.usage.prompt_tokens == estimate_tokens("p" * 400) == 100
    assert completion.usage.completion_tokens == estimate_tokens("t" * 120) == 30


def test_plausible_usage_is_kept_as_reported() -> None:
    from selfinstruct.backends.openai_wire import completion_from_json

    data = {"choices": [{"text": "hi"}], "usage": {"prompt_tokens": 7, "completion_tokens": 50}}
    completion = completion_from_json(data, chat=False, request=_request())
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (7, 50)


def _raw_complete(script: object, requests: list[Request], **teacher: object) -> list[Completion]:
    from selfinstruct.testing.rawhttp import RawHTTPServer

    with RawHTTPServer(script) as raw:  # type: ignore[arg-type]
        return _complete(raw, requests, **teacher)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["bad-status-line", "bad-chunk-size", "oversized-header"])
def test_a_malformed_http_answer_is_retried_like_a_drop(kind: str) -> None:
    from selfinstruct.testing.rawhttp import MALFORMED, faulty_first, good

    script = faulty_first(MALFORMED[kind], 2, good("recovered"))
    (completion,) = _raw_complete(script, [_request()], max_retries=2)
    assert completion.text == "recovered"


def test_a_trickled_answer_is_cut_at_the_timeout_and_retried() -> None:
    from selfinstruct.testing.rawhttp import RawReply, completion_body, http_response

    def script(index: int, request: object) -> RawReply:
        body = completion_body(request, "slow" if index == 0 else "fast")  # type: ignore[arg-type]
        return RawReply(http_response(200, body), trickle=0.05 if index == 0 else 0.0)

    start = time.monotonic()
    (completion,) = _raw_complete(script, [_request()], timeout=1.0, max_retries=1)
    assert completion.text == "fast"
    assert time.monotonic() - start < 6  # the trickle alone would take ~10 s


@pytest.mark.parametrize(
    ("reply", "attempts"),
    [
        (Reply(status=400, text="flagged by the content filter"), 1),
        (Reply(status=422, text="prompt too long"), 1),
        (Reply(raw_body=b'{"id": "x", "choices": []}'), 3),
        (Reply(raw_body=b"not json at all"), 3),
    ],
    ids=["400", "422", "no-choices", "not-json"],
)
def test_a_poison_request_is_refused_after_its_retries(reply: Reply, attempts: int) -> None:
    from selfinstruct.backends.base import RequestRefused

    with OpenAITestServer(lambda r: reply) as server:
        with pytest.raises(RequestRefused) as info:
            _complete(server, [_request()], max_retries=2)
        assert len(server.requests) == attempts
    assert server.base_url in info.value.message


def test_an_answered_request_leaves_no_reference_cycle() -> None:
    # The engine freezes the heap after each commit (engine._quiet_collector): a cycle a
    # request made is moved out of the cyclic collector's reach and kept for good. So an
    # answered request must be freed by reference counting alone (a timer closure that
    # referred to itself kept ~7 KB per request: 350 MiB more at 52,000 tasks).

    def cycles_after(server: OpenAITestServer, n: int) -> int:
        config = TeacherConfig(base_urls=[server.base_url], model="test-model")

        async def go() -> int:
            backend = OpenAICompatBackend(config, "test-key")
            try:
                await backend.complete([_request("warm up")])
                gc.collect()
                gc.disable()
                for i in range(n):
                    await backend.complete([_request(f"prompt {i}")])
                return gc.collect()
            finally:
                gc.enable()
                await backend.aclose()

        return asyncio.run(go())

    with OpenAITestServer(lambda r: Reply(text="one two")) as server:
        few, many = cycles_after(server, 10), cycles_after(server, 110)
    assert many - few < 100, (few, many)  # under one object per request


def test_importing_a_backend_leaves_the_collector_as_it_found_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The collector is paused while a backend's SDK is imported (it only builds objects
    # that live as long as the process); it must be back on afterwards, even when the
    # import fails, and left off when the caller had it off.
    assert gc.isenabled()
    assert backends.backend_class("openai") is OpenAICompatBackend
    assert gc.isenabled()
    monkeypatch.setitem(backends.BACKENDS, "broken", "selfinstruct.no_such_module:Backend")
    with pytest.raises(ModuleNotFoundError):
        backends.backend_class("broken")
    assert gc.isenabled()
    gc.disable()
    try:
        backends.backend_class("openai")
        assert not gc.isenabled()
    finally:
        gc.enable()
