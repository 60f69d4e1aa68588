"""The vllm backend: its pure parts and replica plumbing everywhere, vLLM itself on a GPU.

Without vLLM and a CUDA GPU only the parts that are ours run: the mapping of settings and
sampling parameters, GPU assignment, the chat-template decision, the replica loop and the
backend's processes and messages. Those use `ScriptedEngine` below, a stand-in for vLLM's
engine that finishes each request after `max_tokens` steps; it checks our queueing, never
vLLM. The tests marked `gpu` run the real `vllm.LLM` (model from SELFINSTRUCT_VLLM_MODEL,
default Qwen/Qwen2.5-0.5B-Instruct) and skip cleanly where vLLM or CUDA is missing.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import queue
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_env, run_cli

from selfinstruct.backends.vllm_offline import (
    INSTALL_HINT,
    Finished,
    Message,
    ReplicaSpec,
    VLLMOfflineBackend,
    chat_token_ids,
    check_chat_template,
    check_installed,
    llm_kwargs,
    own_request_id,
    pick_replica,
    prompt_too_long,
    replica_devices,
    sampling_kwargs,
    serve,
    visible_devices,
)
from selfinstruct.config import TeacherConfig, identity, load_config
from selfinstruct.errors import ConfigError, TeacherError
from selfinstruct.records import Completion, Request, SamplingParams

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
PARAMS = SamplingParams(temperature=0.7, top_p=0.5, max_tokens=3, presence_penalty=2.0)


def _request(prompt: str, max_tokens: int = 3, key: str = "k") -> Request:
    params = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=max_tokens)
    return Request(key=key, stage="instructions", prompt=prompt, params=params)


# -- pure parts ------------------------------------------------------------------------------


def test_sampling_params_map_one_to_one() -> None:
    params = SamplingParams(
        temperature=0.7,
        top_p=0.5,
        max_tokens=1024,
        presence_penalty=2.0,
        frequency_penalty=0.5,
        stop=("\n17.",),
        seed=1234,
    )
    assert sampling_kwargs(params) == {
        "n": 1,
        "temperature": 0.7,
        "top_p": 0.5,
        "max_tokens": 1024,
        "presence_penalty": 2.0,
        "frequency_penalty": 0.5,
        "stop": ["\n17."],
        "seed": 1234,
    }
    # No stop strings: None, which vLLM reads as "none" (an empty list would do too).
    assert sampling_kwargs(PARAMS)["stop"] is None
    assert sampling_kwargs(PARAMS)["seed"] is None


def test_llm_kwargs_from_the_teacher_settings() -> None:
    plain = llm_kwargs(TeacherConfig(backend="vllm", model="Qwen/Qwen2.5-7B"))
    assert plain == {
        "model": "Qwen/Qwen2.5-7B",
        "tensor_parallel_size": 1,
        "pipeline_parallel_size": 1,
        "gpu_memory_utilization": 0.9,
    }  # vLLM chooses the executor and the context itself
    full = llm_kwargs(
        TeacherConfig(
            model="m",
            tensor_parallel_size=4,
            pipeline_parallel_size=2,
            data_parallel_size=3,  # replicas are ours: vllm.LLM never sees this
            gpu_memory_utilization=0.8,
            distributed_executor_backend="ray",
            max_model_len=4096,
            engine_args={"dtype": "half", "enforce_eager": True},
        )
    )
    assert full == {
        "model": "m",
        "tensor_parallel_size": 4,
        "pipeline_parallel_size": 2,
        "gpu_memory_utilization": 0.8,
        "distributed_executor_backend": "ray",
        "max_model_len": 4096,
        "dtype": "half",
        "enforce_eager": True,
    }


def test_engine_args_may_not_repeat_a_setting() -> None:
    teacher = TeacherConfig(model="m", engine_args={"tensor_parallel_size": 2})
    with pytest.raises(ConfigError, match=r"tensor_parallel_size has its own setting"):
        llm_kwargs(teacher)


def test_vllm_settings_are_validated_and_named() -> None:
    for bad in (
        {"tensor_parallel_size": 0},
        {"data_parallel_size": 0},
        {"gpu_memory_utilization": 1.5},
        {"distributed_executor_backend": "slurm"},
        {"max_model_len": 1},
    ):
        with pytest.raises(ConfigError, match=f"teacher.{next(iter(bad))}"):
            load_config(None, {"teacher": bad})


def test_layout_is_operational_but_context_and_engine_args_are_identity() -> None:
    base = identity(load_config(None, {"teacher": {"backend": "vllm", "model": "m"}}))
    layout = load_config(
        None,
        {
            "teacher": {
                "backend": "vllm",
                "model": "m",
                "tensor_parallel_size": 8,
                "data_parallel_size": 2,
                "distributed_executor_backend": "ray",
            }
        },
    )
    assert identity(layout) == base
    quantized = load_config(
        None, {"teacher": {"backend": "vllm", "model": "m", "engine_args": {"dtype": "half"}}}
    )
    assert identity(quantized) != base


def test_visible_devices_follow_cuda_visible_devices() -> None:
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "4, 5,6,7"}, lambda: 99) == list("4567")
    assert visible_devices({"CUDA_VISIBLE_DEVICES": ""}, lambda: 99) == []
    assert visible_devices({}, lambda: 3) == ["0", "1", "2"]


def test_each_replica_gets_its_own_gpus() -> None:
    gpus = [str(i) for i in range(8)]
    assert replica_devices(gpus, 4, 2) == [["0", "1"], ["2", "3"], ["4", "5"], ["6", "7"]]
    assert replica_devices(gpus, 2, 3) == [["0", "1", "2"], ["3", "4", "5"]]  # 6, 7 unused
    assert replica_devices(["3", "1"], 2, 1) == [["3"], ["1"]]
    with pytest.raises(ConfigError, match=r"needs 16 GPUs; 8 visible"):
        replica_devices(gpus, 4, 4)


def test_chat_template_only_for_the_chat_api() -> None:
    assert check_chat_template("completions", None, "facebook/opt-125m") is False
    assert check_chat_template("chat", "{% for m in messages %}...", "Qwen/Qwen2.5") is True
    with pytest.raises(ConfigError, match=r"opt-125m has no chat template.*--api completions"):
        check_chat_template("chat", None, "facebook/opt-125m")


def test_chat_token_ids_accept_both_transformers_forms() -> None:
    assert chat_token_ids([1, 2, 3]) == [1, 2, 3]
    assert chat_token_ids({"input_ids": [4, 5], "attention_mask": [1, 1]}) == [4, 5]
    assert chat_token_ids({"input_ids": [[6, 7]]}) == [6, 7]
    assert chat_token_ids([]) == []


def test_prompt_too_long_reads_vllm_v1_refusal() -> None:
    # The message of vllm/v1/engine/processor.py for a prompt longer than the context.
    message = (
        "The decoder prompt (length 5000) is longer than the maximum model length of 4096. "
        "Make sure that `max_model_len` is no smaller than the number of text tokens."
    )
    assert prompt_too_long(message) == 5000
    assert prompt_too_long("temperature must be non-negative") is None


def test_engine_output_ids_map_back_to_ours() -> None:
    live = {"7", "12"}
    assert own_request_id("7", live) == "7"
    assert own_request_id("12-9f3ac2b1", live) == "12"  # a suffix added inside the engine
    assert own_request_id("3", live) is None  # aborted or already answered
    assert own_request_id("3-12", live) is None


def test_requests_go_to_the_least_loaded_live_replica() -> None:
    assert pick_replica([3, 1, 2], [True, True, True]) == 1
    assert pick_replica([2, 2, 2], [True, True, True]) == 0
    assert pick_replica([0, 5, 1], [False, True, True]) == 2
    with pytest.raises(TeacherError, match="no vLLM replica"):
        pick_replica([0], [False])


# -- the replica loop, with a stand-in engine ------------------------------------------------


class ScriptedEngine:
    """Finish each request after `max_tokens` steps, answering with what it knows.

    A stand-in for vLLM's engine, to drive our replica loop and backend. It records which
    requests shared each step, so tests can see requests join a running batch.
    """

    def __init__(self, tag: str = "") -> None:
        self.tag = tag
        self.left: dict[str, int] = {}
        self.prompts: dict[str, str] = {}
        self.steps: list[set[str]] = []
        self.aborted: list[str] = []
        self.closed = False

    def add(self, rid: str, prompt: str, params: dict[str, Any]) -> Finished | None:
        if prompt == "refuse":
            raise ValueError("this prompt is refused\nsecond line")
        if prompt == "too long":
            return (rid, "", "length", 9999, 0)
        if prompt == "aborted?":  # lets a test see, across processes, what was aborted
            return (rid, "aborted:" + ",".join(self.aborted), "stop", 0, 0)
        self.left[rid] = int(params["max_tokens"])
        self.prompts[rid] = prompt
        return None

    def abort(self, rid: str) -> None:
        if self.left.pop(rid, None) is not None:
            self.aborted.append(rid)

    def busy(self) -> bool:
        return bool(self.left)

    def step(self) -> list[Finished]:
        time.sleep(0.001)  # a real step takes time; this keeps an endless request cheap
        self.steps.append(set(self.left))
        if "crash" in self.prompts.values():
            os._exit(3)  # a replica that dies without a word, like a CUDA fault
        done = []
        for rid in list(self.left):
            self.left[rid] -= 1
            if self.left[rid] == 0:
                del self.left[rid]
                prompt = self.prompts[rid]
                text = f"{prompt}|{self.tag}|{os.environ.get('CUDA_VISIBLE_DEVICES', '')}"
                done.append((rid, text, "length", len(prompt), len(self.steps)))
        return done

    def close(self) -> None:
        self.closed = True


class FeedingInbox:
    """A queue.Queue that puts more messages in when the loop has taken some steps."""

    def __init__(self, engine: ScriptedEngine, script: dict[int, list[Message]]) -> None:
        self._queue: queue.Queue[Message] = queue.Queue()
        self._engine = engine
        self._script = script

    def put(self, message: Message) -> None:
        self._queue.put(message)

    def _feed(self) -> None:
        for message in self._script.pop(len(self._engine.steps), []):
            self._queue.put(message)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        self._feed()
        return self._queue.get(block, timeout)

    def get_nowait(self) -> Any:
        self._feed()
        return self._queue.get_nowait()


def _add(rid: str, prompt: str, max_tokens: int) -> Message:
    return ("add", rid, prompt, {"max_tokens": max_tokens})


def test_requests_join_the_running_batch_and_short_ones_finish_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    engine = ScriptedEngine()
    inbox = FeedingInbox(
        engine,
        {
            # After two steps of "long", two short requests arrive; once all are done, stop.
            2: [_add("b", "short", 2), _add("c", "shorter", 1)],
            6: [("stop",)],
        },
    )
    inbox.put(_add("a", "long", 6))
    emitted: list[Message] = []
    serve(engine, inbox, emitted.append, poll=0.01)
    assert [m[1] for m in emitted] == ["c", "b", "a"]  # in the order they finished
    assert engine.steps[:4] == [{"a"}, {"a"}, {"a", "b", "c"}, {"a", "b"}]
    assert emitted[-1] == ("done", "a", "long||", "length", 4, 6)


def test_abort_refusal_and_too_long_prompts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    engine = ScriptedEngine()
    inbox = FeedingInbox(engine, {1: [("abort", "a"), ("abort", "unknown")], 3: [("stop",)]})
    for message in (_add("a", "x", 5), _add("b", "refuse", 1), _add("c", "too long", 1)):
        inbox.put(message)
    inbox.put(_add("d", "y", 3))
    emitted: list[Message] = []
    serve(engine, inbox, emitted.append, poll=0.01)
    assert engine.aborted == ["a"]
    assert emitted == [
        ("failed", "b", "ValueError: this prompt is refused"),
        ("done", "c", "", "length", 9999, 0),
        ("done", "d", "y||", "length", 1, 3),
    ]


def test_idle_loop_returns_when_the_parent_is_gone() -> None:
    engine = ScriptedEngine()
    inbox = FeedingInbox(engine, {})
    inbox.put(_add("a", "x", 2))
    checks: list[bool] = []

    def parent_alive() -> bool:
        checks.append(True)
        return len(checks) < 3

    emitted: list[Message] = []
    serve(engine, inbox, emitted.append, parent_alive, poll=0.01)
    assert [m[1] for m in emitted] == ["a"] and len(checks) == 3  # answered, then noticed


# -- the backend: replica processes with the stand-in engine --------------------------------


def scripted_engine(spec: ReplicaSpec) -> ScriptedEngine:
    """Build the stand-in in a replica process (module level, so spawn can pickle it)."""
    if spec.model == "broken":
        raise OSError("broken is not a model directory")
    if spec.model == "slow to load":
        Path(os.environ["SCRIPTED_LOAD_MARKER"]).touch()  # the parent's env, inherited
        time.sleep(600)
    return ScriptedEngine(tag=f"{spec.model}:{os.getpid()}")


def _backend(**settings: Any) -> VLLMOfflineBackend:
    teacher = TeacherConfig(**{"backend": "vllm", "model": "m", **settings})
    return VLLMOfflineBackend(teacher, factory=scripted_engine)


def test_backend_spreads_concurrent_requests_over_replicas(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3,5,7")
    backend = _backend(data_parallel_size=2, tensor_parallel_size=2)

    async def go() -> list[list[Completion]]:
        try:
            await backend.preflight()
            # As the pipeline calls it: one request per call, many calls at once.
            calls = [backend.complete([_request(f"p{i}", 1 + i % 4)]) for i in range(40)]
            return list(await asyncio.wait_for(asyncio.gather(*calls), 120))
        finally:
            await backend.aclose()

    answers = asyncio.run(go())
    texts = [completion.text for (completion,) in answers]
    assert [t.split("|")[0] for t in texts] == [f"p{i}" for i in range(40)]  # in order
    by_replica: dict[str, set[str]] = {}
    for text in texts:
        _, tag, devices = text.split("|")
        by_replica.setdefault(devices, set()).add(tag)
    # Two replica processes, each pinned to its own pair of GPUs, both used.
    assert set(by_replica) == {"2,3", "5,7"}
    assert all(len(tags) == 1 for tags in by_replica.values())
    first = answers[0][0]
    assert (first.finish_reason, first.usage.prompt_tokens) == ("length", 2)
    assert all(not r.process.is_alive() for r in backend._replicas)
    assert [r.process.exitcode for r in backend._replicas] == [0, 0]


def test_backend_reports_refusals_and_load_failures() -> None:
    async def refused() -> None:
        backend = _backend()
        try:
            (ok,) = await backend.complete([_request("fine", 2)])
            assert ok.text.startswith("fine|m:")
            with pytest.raises(TeacherError, match="vLLM refused a request: ValueError"):
                await backend.complete([_request("refuse")])
            (again,) = await backend.complete([_request("still fine", 1)])  # it carries on
            assert again.text.startswith("still fine|")
        finally:
            await backend.aclose()

    async def broken() -> None:
        backend = _backend(model="broken")
        try:
            with pytest.raises(ConfigError, match="vLLM cannot load broken: OSError: broken is"):
                await backend.preflight()
        finally:
            await backend.aclose()

    asyncio.run(refused())
    asyncio.run(broken())


def test_a_replica_that_dies_stops_the_run_with_a_teacher_error() -> None:
    async def go() -> None:
        backend = _backend()
        try:
            await backend.preflight()
            waiting = asyncio.ensure_future(backend.complete([_request("slow", 10_000)]))
            await asyncio.sleep(0.2)
            with pytest.raises(TeacherError, match=r"replica 0 exited \(code 3\)"):
                await backend.complete([_request("crash")])
            with pytest.raises(TeacherError, match="exited"):
                await waiting
            with pytest.raises(TeacherError, match="exited"):
                await backend.complete([_request("after")])
        finally:
            await backend.aclose()

    asyncio.run(go())


def test_cancelled_requests_are_aborted_and_close_is_prompt() -> None:
    async def go() -> VLLMOfflineBackend:
        backend = _backend()
        await backend.preflight()
        task = asyncio.ensure_future(backend.complete([_request("endless", 10**9)]))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        (report,) = await backend.complete([_request("aborted?")])
        assert report.text == "aborted:0"  # request 0 left the engine, not just our books
        (answer,) = await backend.complete([_request("next", 1)])
        assert answer.text.startswith("next|")
        started = time.monotonic()
        await backend.aclose()
        assert time.monotonic() - started < 10
        return backend

    backend = asyncio.run(go())
    assert [r.process.exitcode for r in backend._replicas] == [0]
    assert backend._pending == {}


def test_closing_while_the_model_loads_does_not_wait_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "loading"
    monkeypatch.setenv("SCRIPTED_LOAD_MARKER", str(marker))

    async def go() -> VLLMOfflineBackend:
        backend = _backend(model="slow to load")
        loading = asyncio.ensure_future(backend.preflight())
        for _ in range(600):  # until the replica is inside its (endless) load
            if marker.exists():
                break
            await asyncio.sleep(0.05)
        loading.cancel()
        started = time.monotonic()
        await backend.aclose()
        assert time.monotonic() - started < 15
        return backend

    backend = asyncio.run(go())
    assert backend._replicas[0].process.exitcode == 128 + 15  # SIGTERM, unwound


# -- without vLLM ----------------------------------------------------------------------------


def test_missing_vllm_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # find_spec then says it is absent
    with pytest.raises(ConfigError, match=r'pip install "selfinstruct\[vllm\]"'):
        check_installed()
    with pytest.raises(ConfigError, match=r"not installed"):
        VLLMOfflineBackend(TeacherConfig(backend="vllm", model="m"))


@pytest.mark.skipif(HAVE_VLLM, reason="vLLM is installed here")
def test_cli_without_vllm_prints_the_install_hint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = run_cli("bootstrap", "--backend", "vllm", "--model", "facebook/opt-125m", "-d", str(out))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: the vllm backend needs vLLM, which is not installed: {INSTALL_HINT}"
    ]
    assert "Traceback" not in done.stderr and not out.exists()


def test_cli_vllm_needs_a_model_and_no_base_url(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = run_cli("bootstrap", "--backend", "vllm", "-d", str(out))
    assert done.returncode == 1 and not out.exists()
    assert done.stderr.startswith("error: --backend vllm needs --model NAME_OR_PATH")
    done = run_cli("bootstrap", "--backend", "vllm", "--base-url", "http://h/v1", "-d", str(out))
    assert done.returncode == 1 and "--base-url is for --backend openai" in done.stderr
    assert "Traceback" not in done.stderr


# -- on a GPU with vLLM installed ------------------------------------------------------------

GPU_MODEL = os.environ.get("SELFINSTRUCT_VLLM_MODEL", "Qwen/Qwen2.5-0.5B-Instruct")


@pytest.fixture(scope="session")
def gpu_count() -> int:
    """Count CUDA GPUs; skip unless vLLM is installed and there is at least one.

    Neither vLLM nor torch is imported here: they are asked in a child process, so their
    import-time warnings never meet this process's `-W error`.
    """
    if not HAVE_VLLM:
        pytest.skip("needs the [vllm] extra")
    probe = "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=False
    )
    count = int(found.stdout.strip() or 0) if found.returncode == 0 else 0
    if count == 0:
        pytest.skip("needs a CUDA GPU")
    return count


@pytest.fixture
def gpu_model(gpu_count: int) -> str:
    """Name the model of the GPU tests (SELFINSTRUCT_VLLM_MODEL); skip without a GPU."""
    return GPU_MODEL


def _gpu_teacher(model: str, **settings: Any) -> TeacherConfig:
    # A small share of memory, so the test runs beside other work on the GPU.
    return TeacherConfig(
        backend="vllm",
        model=model,
        gpu_memory_utilization=0.3,
        max_model_len=4096,
        **settings,
    )


def _gpu_complete(teacher: TeacherConfig, requests: list[Request]) -> list[Completion]:
    async def go() -> list[Completion]:
        backend = VLLMOfflineBackend(teacher)
        try:
            await backend.preflight()
            calls = [backend.complete([r]) for r in requests]
            return [c for (c,) in await asyncio.wait_for(asyncio.gather(*calls), 600)]
        finally:
            await backend.aclose()

    return asyncio.run(go())


@pytest.mark.gpu
def test_gpu_completions_keep_finish_reason_and_usage(gpu_model: str) -> None:
    sampled = SamplingParams(
        temperature=0.7, top_p=0.5, max_tokens=32, presence_penalty=2.0, seed=7
    )
    requests = [
        _request("The capital of France is", 8),
        _request("1, 2, 3, 4,", 64),
        Request("s1", "instructions", "Write a short poem:", sampled),
        Request("s2", "instructions", "List three fruits:", sampled),
        Request(
            "stop",
            "instructions",
            "Count: 1, 2, 3,",
            SamplingParams(temperature=0.0, top_p=1.0, max_tokens=64, stop=(",",)),
        ),
    ]
    answers = _gpu_complete(_gpu_teacher(gpu_model), requests)
    assert answers[0].finish_reason == "length" and answers[0].usage.completion_tokens == 8
    assert all(a.usage.prompt_tokens > 0 for a in answers)
    assert all(
        0 < a.usage.completion_tokens <= r.params.max_tokens
        for a, r in zip(answers, requests, strict=True)
    )
    assert answers[2].text.strip() and answers[3].text.strip()
    # Stopped at the first comma, which (as in the OpenAI API) is not part of the text.
    assert answers[4].finish_reason == "stop" and "," not in answers[4].text


@pytest.mark.gpu
def test_gpu_chat_api_applies_the_chat_template(gpu_model: str) -> None:
    prompt = "Name one colour. Answer with one word."
    plain, chat = (
        _gpu_complete(_gpu_teacher(gpu_model, api=api), [_request(prompt, 16)])[0]
        for api in ("completions", "chat")
    )
    # The template wraps the prompt in role markers: more prompt tokens than the bare text.
    assert chat.usage.prompt_tokens > plain.usage.prompt_tokens
    assert chat.text.strip()


@pytest.mark.gpu
def test_gpu_data_parallel_replicas(gpu_model: str, gpu_count: int) -> None:
    if gpu_count < 2:
        pytest.skip("needs two GPUs")
    requests = [_request(f"Item {i}:", 8) for i in range(16)]
    answers = _gpu_complete(_gpu_teacher(gpu_model, data_parallel_size=2), requests)
    assert all(a.usage.completion_tokens > 0 for a in answers)


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_short_bootstrap_and_export(gpu_model: str, tmp_path: Path) -> None:
    gpu_run = tmp_path / "run"
    command = [
        sys.executable, "-m", "selfinstruct", "bootstrap", "--backend", "vllm",
        "--model", gpu_model, "--target", "10", "--out", str(gpu_run), "--quiet",
        "--gpu-memory-utilization", "0.3", "--max-model-len", "4096",
    ]  # fmt: skip
    done = subprocess.run(command, env=cli_env(), capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr
    pool = [json.loads(line) for line in (gpu_run / "pool.jsonl").read_text().splitlines()]
    assert len(pool) >= 10
    assert len({t["instruction"] for t in pool}) == len(pool)
    header = json.loads((gpu_run / "config.json").read_text())
    assert header["config"]["teacher"]["backend"] == "vllm"
    assert header["config"]["teacher"]["concurrency"] == 1024  # raised for vLLM's batching
    assert header["identity"]["teacher.model"] == gpu_model
    exported = gpu_run / "data.json"
    done = run_cli("export", "-d", str(gpu_run), "-o", str(exported))
    assert done.returncode == 0, done.stderr
    assert json.loads(exported.read_text())
