"""Reasoning teachers: thinking removed and counted, reasoning-only answers rejected, and the
fields OpenAI's reasoning models refuse left out (known, or learned from HTTP 400s)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import bootstrap_args, cli_env, run_cli

from selfinstruct.backends.openai_compat import OpenAICompatBackend
from selfinstruct.backends.openai_wire import (
    apply_stop,
    completion_from_json,
    is_reasoning_model,
    refused_field,
    request_body,
)
from selfinstruct.config import TeacherConfig
from selfinstruct.parse import (
    REASONING_ONLY,
    reasoning_only,
    split_reasoning,
    without_reasoning,
)
from selfinstruct.records import Completion, Request, SamplingParams, Task, Usage
from selfinstruct.store import RESPONSES, RunDir, StageUsage, State
from selfinstruct.testing.server import (
    REASONING_MODEL_REFUSES,
    OpenAITestServer,
    RecordedRequest,
    Reply,
    unsupported_error,
)
from selfinstruct.testing.teacher import SyntheticTeacher

THOUGHT = "The user wants more of these, so let me think about what fits."

# -- splitting reasoning from text -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "answer", "reasoning"),
    [
        ("plain answer", "plain answer", ""),
        ("<think>hm, yes</think>\n\nYes", "Yes", "hm, yes"),
        ("\n  <think>\nstep 1\nstep 2\n</think>\n1. Do it", "1. Do it", "\nstep 1\nstep 2\n"),
        # The token limit ran out inside the thinking: all of it is reasoning.
        ("<think>still thinking about", "", "still thinking about"),
        # The chat template opened the tag in the prompt; the server sends only its end.
        ("thinking without an opening tag</think>\nNo", "No", "thinking without an opening tag"),
        ("</think>Yes", "Yes", ""),
        ("<think></think>", "", ""),
        # A tag that is not at the start is the answer's own text.
        ("Say <think>it</think>.", "Say <think>it</think>.", ""),
    ],
)
def test_split_reasoning(text: str, answer: str, reasoning: str) -> None:
    split = split_reasoning(text)
    assert (split.answer, split.reasoning) == (answer, reasoning)


def test_reasoning_tokens_come_from_the_server_else_an_estimate() -> None:
    counted = without_reasoning(
        "<think>abcdefgh</think>ok", "stop", Usage(5, 30), reasoning_tokens=20
    )
    assert counted.text == "ok"
    assert counted.usage == Usage(5, 30, 20, False)
    # No count from the server: 8 characters of reasoning are about 2 tokens.
    estimated = without_reasoning("<think>abcdefgh</think>ok", "stop", Usage(5, 30))
    assert estimated.usage == Usage(5, 30, 2, True)
    # A field beside the text counts too; a count of 0 with reasoning present is no count.
    beside = without_reasoning("ok", "stop", Usage(5, 30), reasoning="a" * 40, reasoning_tokens=0)
    assert beside.usage == Usage(5, 30, 10, True)
    # Never more than the completion tokens the server counted.
    capped = without_reasoning("<think>" + "x" * 400, "length", Usage(5, 30))
    assert capped.usage.reasoning_tokens == 30
    # No reasoning at all: nothing counted, nothing estimated.
    assert without_reasoning("ok", "stop", Usage(5, 30)).usage == Usage(5, 30)


def test_reasoning_only_is_thinking_with_nothing_after_it() -> None:
    assert reasoning_only(without_reasoning("<think>and then", "length", Usage(1, 9)))
    assert reasoning_only(Completion("", "length", Usage(1, 9, 9)))  # OpenAI: hidden thinking
    assert reasoning_only(Completion(" \n", "length", Usage(1, 9, 9)))
    assert not reasoning_only(Completion("Yes", "stop", Usage(1, 9, 8)))
    assert not reasoning_only(Completion("", "stop", Usage(1, 0)))  # empty, not thinking


# -- the wire format ---------------------------------------------------------------------


def _chat(message: dict[str, Any], usage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "choices": [{"message": message, "finish_reason": "stop"}],
        "usage": usage or {"prompt_tokens": 3, "completion_tokens": 40},
    }


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_a_reasoning_field_is_removed_and_counted(field: str) -> None:
    data = _chat({"content": "Yes", field: "x" * 40})
    completion = completion_from_json(data, chat=True)
    assert (completion.text, completion.usage) == ("Yes", Usage(3, 40, 10, True))
    details = {
        "prompt_tokens": 3,
        "completion_tokens": 40,
        "completion_tokens_details": {"reasoning_tokens": 33},
    }
    completion = completion_from_json(_chat({"content": "Yes", field: "x"}, details), chat=True)
    assert completion.usage == Usage(3, 40, 33, False)


def test_think_tags_in_text_are_removed_in_both_apis() -> None:
    chat = completion_from_json(_chat({"content": "<think>hmm</think>\nNo"}), chat=True)
    assert chat.text == "No" and chat.usage.reasoning_tokens == 1
    plain = {"choices": [{"text": "hmm</think> Yes", "finish_reason": "stop"}], "usage": None}
    completion = completion_from_json(plain, chat=False)
    assert completion.text == "Yes" and completion.usage.reasoning_estimated


def test_openai_reasoning_families_are_known() -> None:
    for model in ("o1", "o1-mini", "o3", "o3-mini-2025-01-31", "o4-mini", "gpt-5", "gpt-5-mini",
                  "gpt-5.1", "openai/o3"):  # fmt: skip
        assert is_reasoning_model(model), model
    for model in ("gpt-4o", "gpt-3.5-turbo-instruct", "o10", "gpt-5-chat-latest", "llama-o3"):
        assert not is_reasoning_model(model), model


def _request(stop: tuple[str, ...] = ("\n9.",), seed: int | None = 7) -> Request:
    params = SamplingParams(0.7, 0.5, 64, presence_penalty=2.0, stop=stop, seed=seed)
    return Request("r0/p0/abc", "instructions", "List things:\n1.", params)


def test_refused_fields_leave_the_body_and_max_tokens_is_renamed() -> None:
    config = TeacherConfig(model="m", api="chat")
    full = request_body(config, _request())
    assert {"max_tokens", "temperature", "stop", "seed"} <= set(full)
    body = request_body(config, _request(), set(REASONING_MODEL_REFUSES))
    assert set(body) == {"model", "messages", "max_completion_tokens"}
    assert body["max_completion_tokens"] == 64


def test_the_error_openai_sends_names_the_field() -> None:
    for name in REASONING_MODEL_REFUSES:
        error = unsupported_error({name: 0.5}, REASONING_MODEL_REFUSES)
        assert error is not None and refused_field(error) == name
    assert unsupported_error({"temperature": 1}, REASONING_MODEL_REFUSES) is None  # the default
    # The token limit is never dropped, and other 400s teach nothing.
    limit = {"code": "unsupported_parameter", "param": "max_completion_tokens"}
    assert refused_field(limit) is None
    assert refused_field({"code": "content_filter", "param": "stop"}) is None
    assert refused_field({"code": "unsupported_parameter", "param": "tools"}) is None


def test_stops_are_applied_here_when_the_server_was_not_sent_them() -> None:
    cut = apply_stop(Completion("7. a\n8. b\n9. c", "length", Usage(1, 2)), ("\n9.", "zz"))
    assert (cut.text, cut.finish_reason) == ("7. a\n8. b", "stop")
    kept = Completion("7. a", "length")
    assert apply_stop(kept, ("\n9.",)) is kept


# -- the direct backend against a refusing server ------------------------------------------


def _complete(server: OpenAITestServer, model: str, requests: list[Request]) -> list[Completion]:
    config = TeacherConfig(model=model, api="chat", base_urls=[server.base_url], max_retries=0)

    async def go() -> list[Completion]:
        backend = OpenAICompatBackend(config, None)
        try:
            return await backend.complete(requests)
        finally:
            await backend.aclose()

    return asyncio.run(go())


def _echo_list(request: RecordedRequest) -> Reply:
    return Reply(text="7. a\n8. b\n9. c\n10. d")


def test_fields_are_learned_from_400s_and_said_once(caplog: pytest.LogCaptureFixture) -> None:
    with OpenAITestServer(_echo_list, refuse=REASONING_MODEL_REFUSES) as server:
        with caplog.at_level(logging.WARNING, logger="selfinstruct"):
            first = _complete(server, "test-model", [_request()])
            # One 400 per field, each answered at once without it; then the answer.
            assert len(server.faulted) == 7 and len(server.answered) == 1
            (_, reply), *_ = server.faulted
            assert reply.status == 400
            assert set(server.answered[0][0].body) == {"model", "messages", "max_completion_tokens"}
        # The stop sequence the server was not sent still ends the answer.
        assert (first[0].text, first[0].finish_reason) == ("7. a\n8. b", "stop")
        said = [r.getMessage() for r in caplog.records if "refuses" in r.getMessage()]
        assert len(said) == 7 and sum("'max_tokens'" in m for m in said) == 1
        assert "max_completion_tokens" in next(m for m in said if "'max_tokens'" in m)


def test_a_stop_sequence_inside_the_thinking_is_applied_after_it_instead() -> None:
    def thinks_in_lines(request: RecordedRequest) -> Reply:
        return Reply(text="<think>one\ntwo</think>\nYes\nmore", completion_tokens=6)

    request = Request("k", "classify", "Is it?", SamplingParams(0.0, 1.0, 64, stop=("\n",)))
    with OpenAITestServer(thinks_in_lines) as server:
        (answer,) = _complete(server, "test-model", [request])
        sent = [r.body for r, _ in server.answered]
    # The server cut the answer inside the thinking; it was asked again without stop
    # sequences, applied here after the thinking. Both answers are paid for, and counted.
    assert [("stop" in b) for b in sent] == [True, False]
    assert (answer.text, answer.finish_reason) == ("Yes", "stop")
    assert answer.usage.completion_tokens == 12


def test_known_reasoning_models_start_without_the_fields() -> None:
    with OpenAITestServer(_echo_list, refuse=REASONING_MODEL_REFUSES) as server:
        _complete(server, "o4-mini", [_request(), _request(seed=8)])
        assert server.faulted == []
        bodies = [r.body for r, _ in server.answered]
        assert all(set(b) == {"model", "messages", "max_completion_tokens"} for b in bodies)


def test_an_ordinary_model_sends_what_it_always_sent() -> None:
    with OpenAITestServer(_echo_list) as server:
        _complete(server, "test-model", [_request()])
        body = server.answered[0][0].body
        assert body["max_tokens"] == 64 and body["seed"] == 7 and body["stop"] == ["\n9."]
        assert "max_completion_tokens" not in body


# -- the response log ----------------------------------------------------------------------


def test_reasoning_counts_are_logged_and_old_logs_still_replay(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.open({"format": 1, "identity": {}, "config": {}})
    run.log_response("a", 0, "instructions", Completion("x", "stop", Usage(3, 9, 7, True)))
    run.log_response("b", 0, "classify", Completion("Yes", "stop", Usage(2, 1)))
    run.close()
    lines = [json.loads(line) for line in (tmp_path / RESPONSES).read_text().splitlines()]
    assert lines[0]["usage"] == [3, 9, 7] and lines[0]["reasoning_estimated"] is True
    # A response without reasoning is logged exactly as before reasoning was counted.
    assert lines[1]["usage"] == [2, 1] and "reasoning_estimated" not in lines[1]
    # A line as an older selfinstruct wrote it (two counts) replays too.
    old = {"key": "c", "round": 0, "stage": "instances", "text": "t", "finish_reason": "stop"}
    with open(tmp_path / RESPONSES, "a") as fh:
        fh.write(json.dumps({**old, "usage": [4, 5]}) + "\n")
    again = RunDir(tmp_path)
    again.open({"format": 1, "identity": {}, "config": {}})
    try:
        assert again.replay["a"] == Completion("x", "stop", Usage(3, 9, 7, True))
        assert again.replay["c"] == Completion("t", "stop", Usage(4, 5))
        assert again.state.usage["instructions"] == StageUsage(1, 3, 9, 7, 1)
        again.save_state()
    finally:
        again.close()
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["usage"]["instructions"]["reasoning_tokens"] == 7
    # Stages that never reasoned keep state.json's old shape.
    assert state["usage"]["classify"] == {"requests": 1, "prompt_tokens": 2, "completion_tokens": 1}
    assert State.from_json(state).usage["classify"] == StageUsage(1, 2, 1)


# -- end to end, through the CLI -----------------------------------------------------------

# Limits with room for the thinking, the same in every run compared.
ROOMY = "[teacher]\nmax_tokens = 2048\nclassify_max_tokens = 64\ninstances_max_tokens = 1000\n"


def _config(tmp_path: Path, text: str = ROOMY) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def _args(server: OpenAITestServer, out: Path, config: Path, *extra: str) -> list[str]:
    return bootstrap_args(
        server, out, "--api", "chat", "--target", "12", "--config", str(config), *extra
    )


def _thinking(mode: str, base: Callable[[RecordedRequest], Reply]) -> Callable[..., Reply]:
    """Wrap a teacher so it thinks first: in <think> tags, or in reasoning_content."""

    def handler(request: RecordedRequest) -> Reply:
        reply = base(request)
        if mode == "think":  # the newline DeepSeek-R1 and Qwen3 write after their thinking
            return dataclasses.replace(reply, text=f"<think>{THOUGHT}</think>\n{reply.text}")
        return dataclasses.replace(reply, reasoning=THOUGHT, reasoning_tokens=11)

    return handler


def _usage(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "state.json").read_text())["usage"])


@pytest.mark.parametrize("mode", ["think", "field"])
def test_a_reasoning_teacher_grows_the_same_pool(tmp_path: Path, mode: str) -> None:
    config = _config(tmp_path)
    with OpenAITestServer(SyntheticTeacher()) as plain:
        assert run_cli(*_args(plain, tmp_path / "plain", config)).returncode == 0
    with OpenAITestServer(_thinking(mode, SyntheticTeacher())) as server:
        done = run_cli(*_args(server, tmp_path / "run", config))
        assert done.returncode == 0, done.stderr
        answered = Counter(_stage(r) for r, _ in server.answered)
    pool = (tmp_path / "run" / "pool.jsonl").read_bytes()
    assert pool == (tmp_path / "plain" / "pool.jsonl").read_bytes()
    logged = (tmp_path / "run" / RESPONSES).read_text()
    assert "<think>" not in logged and THOUGHT not in logged  # the log keeps answers only
    usage = _usage(tmp_path / "run")
    # Every answer is counted, but for those ended inside the thinking by a stop sequence
    # (classify stops at a newline), which are asked again without it.
    assert set(usage) == set(answered)
    assert all(u["requests"] <= answered[stage] for stage, u in usage.items())
    if mode == "think":
        assert "a stop sequence ended its reasoning" in done.stderr
        (late, _), *_ = [(r, a) for r, a in server.answered[::-1] if _stage(r) == "classify"]
        assert "stop" not in late.body
    status = run_cli("status", "--out", str(tmp_path / "run"))
    assert status.returncode == 0, status.stderr
    total = sum(u["reasoning_tokens"] for u in usage.values())
    if mode == "field":  # the server's own count: 11 tokens an answer
        assert all(u["reasoning_tokens"] == 11 * u["requests"] for u in usage.values())
        assert "estimated" not in status.stdout
    else:  # estimated from the removed text, and said to be
        # At most this per answer paid for (never more than its completion tokens); those
        # asked again count both answers.
        per_answer = -(-len(THOUGHT) // 4)
        for stage, u in usage.items():
            assert 0 < u["reasoning_tokens"] <= per_answer * answered[stage]
        assert all(u["reasoning_estimated"] == u["requests"] for u in usage.values())
        logged_answers = sum(u["requests"] for u in usage.values())
        assert f"estimated from the text for {logged_answers} answers" in status.stdout
    assert f"reasoning  {total} of the completion tokens (classify " in status.stdout
    assert "\nreasoning " not in run_cli("status", "--out", str(tmp_path / "plain")).stdout


def _stage(request: RecordedRequest) -> str:
    if request.prompt.endswith("Classification:"):
        return "classify"
    if "Example 1" in request.prompt or "\nLabel: " in request.prompt:
        return "instances"
    return "instructions"


def _spent_thinking(request: RecordedRequest) -> Reply:
    """Answer like the synthetic teacher, but spend some answers' limits thinking.

    Each stage in its own way: <think> cut by the limit (instructions), reasoning_content
    (classify), and thinking the server only counts, as OpenAI's models do (instances).
    """
    reply = SyntheticTeacher()(request)
    stage = _stage(request)
    # Which answers think too long depends on the prompt alone, so every run picks the same;
    # a run asks few instruction lists, so half of those.
    if hashlib.sha256(request.prompt.encode()).digest()[0] % (2 if stage == "instructions" else 4):
        return reply
    if stage == "instructions":
        return Reply(text="<think>" + "and then " * 3000 + "</think>" + reply.text)
    if stage == "classify":
        return dataclasses.replace(reply, reasoning="hmm " * 100)
    return dataclasses.replace(reply, reasoning_tokens=5000)


def test_answers_that_are_only_reasoning_are_rejected_in_every_stage(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with OpenAITestServer(_spent_thinking) as server:
        done = run_cli(*_args(server, out, _config(tmp_path), "--target", "30"))
        assert done.returncode == 0, done.stderr
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    thinking = Counter(r["stage"] for r in rejected if r["reason"] == REASONING_ONLY)
    assert set(thinking) == {"instructions", "classify", "instances"}
    counts = json.loads((out / "state.json").read_text())["rejections"]
    assert {s: counts[f"{s}/{REASONING_ONLY}"] for s in thinking} == dict(thinking)
    by_stage = {r["stage"]: r for r in rejected if r["reason"] == REASONING_ONLY}
    assert "only reasoning (about 3000" not in by_stage["instructions"]["detail"]  # cut at 2048
    assert "reasoning tokens, finish_reason length" in by_stage["instructions"]["detail"]
    assert "(5000 reasoning tokens" not in by_stage["instances"]["detail"]  # at most the limit
    assert "(1000 reasoning tokens" in by_stage["instances"]["detail"]
    # Each names the setting to raise.
    assert "larger --max-new-tokens" in by_stage["instructions"]["detail"]
    assert "larger teacher.classify_max_tokens" in by_stage["classify"]["detail"]
    assert "larger teacher.instances_max_tokens" in by_stage["instances"]["detail"]
    # A task dropped after novelty keeps its place in the index (seq), like other drops.
    assert by_stage["classify"]["seq"] is not None and by_stage["instances"]["seq"] is not None
    status = run_cli("status", "--out", str(out)).stdout
    assert f"classify      {REASONING_ONLY}" in status


def _blind(request: RecordedRequest) -> Reply:
    """Answer as the synthetic teacher would without seeing the seed or the stop sequences.

    So a server that is sent them and one that refuses them get the same texts, and the
    pools differ only if this client mishandles the refusal.
    """
    body = {k: v for k, v in request.body.items() if k not in ("seed", "stop")}
    return SyntheticTeacher()(dataclasses.replace(request, body=body))


class _Stall:
    """Answer `allowed` requests, then hold every further one until the server stops."""

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed
        self.lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> Reply:
        with self.lock:
            self.allowed -= 1
            stalled = self.allowed < 0
        return dataclasses.replace(_blind(request), delay=300.0 if stalled else 0.0)


def test_a_refusing_server_is_learned_and_a_killed_run_pays_nothing_twice(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with OpenAITestServer(_blind) as plain:
        assert run_cli(*_args(plain, tmp_path / "plain", config)).returncode == 0
    out = tmp_path / "run"
    stall = _Stall(allowed=15)
    with OpenAITestServer(stall, refuse=REASONING_MODEL_REFUSES) as first:
        proc = subprocess.Popen(
            [sys.executable, "-m", "selfinstruct", *_args(first, out, config)],
            env=cli_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Killed once the answers it got are logged and it waits on the stalled ones.
        deadline = time.monotonic() + 60
        while _logged(out) < 15 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _logged(out) == 15, proc.poll()
        proc.send_signal(signal.SIGKILL)
        _, stderr = proc.communicate(timeout=30)
        assert stderr.count("refuses 'max_tokens'") == 1
        paid_first = len(first.answered)
    assert paid_first == 15
    with OpenAITestServer(_blind, refuse=REASONING_MODEL_REFUSES) as second:
        done = run_cli(*_args(second, out, config))
        assert done.returncode == 0, done.stderr
        assert done.stderr.count("refuses 'max_tokens'") == 1  # learned again, said once
        bodies = [r.body for r, _ in second.answered]
        paid_second = len(bodies)
    assert all("max_completion_tokens" in b and "max_tokens" not in b for b in bodies)
    # Once learned, a field is left out of every request (top_p 1, the default it takes, is
    # never refused, so it stays).
    learned = {"presence_penalty", "frequency_penalty", "stop", "seed", "temperature"}
    assert not any(learned & set(b) for b in bodies[-10:])
    # Nothing answered was paid for twice: every answer is logged once, under its own key.
    keys = [json.loads(line)["key"] for line in (out / RESPONSES).read_text().splitlines()]
    assert len(keys) == len(set(keys)) == paid_first + paid_second
    # The same pool as a server that took every field: stops applied here, limits kept.
    assert (out / "pool.jsonl").read_bytes() == (tmp_path / "plain" / "pool.jsonl").read_bytes()


def _logged(out: Path) -> int:
    try:
        return (out / RESPONSES).read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_a_known_reasoning_model_is_never_refused_through_the_cli(tmp_path: Path) -> None:
    with OpenAITestServer(_blind, refuse=REASONING_MODEL_REFUSES, models=["o3"]) as server:
        args = _args(server, tmp_path / "run", _config(tmp_path), "--model", "o3")
        done = run_cli(*args)
        assert done.returncode == 0, done.stderr
        assert server.faulted == [] and server.answered
        assert "o3 is a reasoning model: sending max_completion_tokens" in done.stderr


def test_batch_api_strips_reasoning_and_learns_refused_fields(tmp_path: Path) -> None:
    config = _config(tmp_path, ROOMY + "batch_quiet_seconds = 0.3\n")
    with OpenAITestServer(_blind) as plain:
        assert run_cli(*_args(plain, tmp_path / "plain", config)).returncode == 0
    thinking = _thinking("field", _blind)
    with OpenAITestServer(thinking, refuse=REASONING_MODEL_REFUSES, batch_delay=0.1) as server:
        args = _args(server, tmp_path / "run", config, "--batch-api", "--batch-poll-seconds", "0.1")
        done = run_cli(*args)
        assert done.returncode == 0, done.stderr
        lines = server.batch_requests
        assert done.stderr.count("refuses 'max_tokens'") == 1
    out = tmp_path / "run"
    assert (out / "pool.jsonl").read_bytes() == (tmp_path / "plain" / "pool.jsonl").read_bytes()
    assert THOUGHT not in (out / RESPONSES).read_text()
    usage = _usage(out)
    assert all(u["reasoning_tokens"] == 11 * u["requests"] for u in usage.values())
    # The first batch's lines were refused; later batches went without the fields.
    refused = [r for r in lines if unsupported_error(r.body, REASONING_MODEL_REFUSES)]
    assert refused and not any(set(REASONING_MODEL_REFUSES) & set(r.body) for r in lines[-5:])


# -- the local backends --------------------------------------------------------------------


class _ThinkingLlama:
    """Stand in for llama_cpp.Llama: a model that thinks in <think> tags, then answers."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings

    def reset(self) -> None:
        pass

    def close(self) -> None:
        pass

    def create_completion(self, prompt: str, **kwargs: Any) -> dict[str, Any]:
        text = f"<think>{THOUGHT}</think>\n{prompt}!"
        usage = {"prompt_tokens": 3, "completion_tokens": 30}
        return {"choices": [{"text": text, "finish_reason": "stop"}], "usage": usage}

    def create_chat_completion(self, messages: list[Any], **kwargs: Any) -> dict[str, Any]:
        # A chat handler that splits the thinking off itself, as llama-server's does.
        message = {"role": "assistant", "content": "Yes", "reasoning_content": THOUGHT}
        usage = {"prompt_tokens": 3, "completion_tokens": 30}
        return {"choices": [{"message": message, "finish_reason": "stop"}], "usage": usage}


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_the_llama_cpp_backend_removes_reasoning(monkeypatch: pytest.MonkeyPatch, api: str) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    from selfinstruct.backends.local import LocalLlamaBackend, default_model_path

    monkeypatch.setattr(llama_cpp, "Llama", _ThinkingLlama)
    backend = LocalLlamaBackend(TeacherConfig(api=api), default_model_path())

    async def go() -> list[Completion]:
        try:
            return await backend.complete([_request()])
        finally:
            await backend.aclose()

    (completion,) = asyncio.run(go())
    expected = "Yes" if api == "chat" else "List things:\n1.!"
    assert completion.text == expected
    assert completion.usage == Usage(3, 30, -(-len(THOUGHT) // 4), True)


def test_the_vllm_backend_removes_reasoning() -> None:
    from test_vllm_backend import scripted_engine

    from selfinstruct.backends.vllm_offline import VLLMOfflineBackend

    # The stand-in engine answers with the prompt: this one thinks, then answers.
    config = TeacherConfig(backend="vllm", model="m")
    backend = VLLMOfflineBackend(config, factory=scripted_engine)
    params = SamplingParams(0.0, 1.0, 2)
    thinking = Request("k", "classify", f"<think>{THOUGHT}</think>\nYes", params)
    unclosed = Request("j", "classify", f"<think>{THOUGHT}", params)

    async def go() -> list[Completion]:
        try:
            await backend.preflight()
            return await backend.complete([thinking, unclosed])
        finally:
            await backend.aclose()

    answered, cut = asyncio.run(go())
    assert answered.text.startswith("Yes|m:")  # the stand-in appends its tag
    assert answered.usage.reasoning_tokens > 0 and answered.usage.reasoning_estimated
    assert reasoning_only(cut)


def _thinking_judge(request: RecordedRequest) -> Reply:
    """Think before every judge verdict; spend the whole limit thinking for some tasks."""
    reply = SyntheticTeacher()(request)
    if not request.prompt.rstrip().endswith("Score:"):
        return reply
    if hashlib.sha256(request.prompt.encode()).digest()[0] % 3:
        return dataclasses.replace(reply, text=f"<think>{THOUGHT}</think>\n{reply.text}")
    return dataclasses.replace(reply, text="", reasoning_tokens=64)


def test_a_judge_that_thinks_scores_and_says_when_it_only_thought(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with OpenAITestServer(_thinking_judge) as server:
        done = run_cli(*_args(server, out, _config(tmp_path), "--target", "20", "--judge"))
        assert done.returncode == 0, done.stderr
    pool = [
        Task.model_validate_json(line) for line in (out / "pool.jsonl").read_text().splitlines()
    ]
    verdicts = [t.judge for t in pool if t.judge is not None]
    assert len(verdicts) == len(pool)
    scored = [v for v in verdicts if v.score is not None]
    thought = [v for v in verdicts if v.reason.startswith(f"{REASONING_ONLY}: ")]
    # Thinking before a verdict does not hide it; a verdict lost to thinking says so.
    assert scored and thought
    assert all("<think>" not in v.reason for v in verdicts)
    assert all("larger judge.max_tokens" in v.reason for v in thought)
