"""Teacher backend that runs vLLM on this machine's GPUs: no server, continuous batching.

Each data-parallel replica is a child process that owns one `vllm.LLM` on its own
tensor x pipeline parallel GPUs, and feeds that LLM's engine directly: a request is added to
the engine as soon as the pipeline asks for it, and each finished one is answered after the
engine step that finished it. So everything in flight (a whole round, the rounds after it,
the classify and instance requests of earlier rounds) shares vLLM's continuous batching.

Why not one `LLM.generate(batch)` call per batch: it returns only when the batch's longest
answer is done, so a 5-token classification would wait for a 1,024-token list of
instructions, and requests arriving meanwhile would wait for the next batch. The engine
interface used instead (`add_request`, `step`, `abort_request`, `has_unfinished_requests`
of `LLM.llm_engine`) is vLLM's documented LLMEngine API, the loop `LLM.generate` itself
runs, in every release from 0.6 on (V0 and V1 engines alike).

Why a child process even for one replica: vLLM wants the main thread of its process (V1
engines of 0.7-0.10 refuse or fall back to V0 in another thread), the pipeline's event loop
must stay responsive, and one process per replica pinned with CUDA_VISIBLE_DEVICES is how
vLLM's own offline data-parallel example runs replicas
(examples/offline_inference/data_parallel.py). With `distributed_executor_backend="ray"`
vLLM places each replica's workers on a Ray cluster instead.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib
import importlib.util
import itertools
import multiprocessing
import os
import queue
import re
import signal
import threading
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from selfinstruct.backends.base import Backend, Notify
from selfinstruct.config import RunConfig, TeacherConfig
from selfinstruct.errors import ConfigError, TeacherError
from selfinstruct.parse import without_reasoning
from selfinstruct.records import Completion, Request, SamplingParams, Usage

INSTALL_HINT = 'pip install "selfinstruct[vllm]" (in a checkout: pip install -e ".[vllm]")'
# Requests in flight when --concurrency is not given: far more than the pipeline has at once
# by default, so vLLM's scheduler (max_num_seqs, 256 or more per replica) decides, not us.
DEFAULT_CONCURRENCY = 1024
POLL_SECONDS = 0.5  # how often an idle side checks that the other is still alive
STOP_GRACE_SECONDS = 60.0  # a replica frees its GPUs on stop; then it is terminated
# vLLM V1 rejects a prompt that alone exceeds the context with this ValueError
# (vllm/v1/engine/processor.py); V0 finishes such a request itself with "length".
_TOO_LONG = re.compile(r"prompt \(length (\d+)\) is longer than the maximum model length")
# LLM keyword arguments that have their own setting, so engine_args may not repeat them.
_OWN_SETTINGS = (
    "model",
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "data_parallel_size",
    "gpu_memory_utilization",
    "distributed_executor_backend",
    "max_model_len",
)

# Messages between the backend and its replicas are plain tuples (cheap to pickle):
#   to a replica:   ("add", rid, prompt, sampling kwargs) | ("abort", rid) | ("stop",)
#   from a replica: ("ready", replica) | ("done", rid, text, finish_reason, prompt_tokens,
#                   completion_tokens) | ("failed", rid, message) | ("fatal", replica,
#                   message) -- the replica is gone
Message = tuple[Any, ...]
Finished = tuple[str, str, str, int, int]  # rid, text, finish_reason, prompt, completion tokens


# -- pure parts ------------------------------------------------------------------------------


def check_installed() -> None:
    """Raise ConfigError with the install command when vLLM is not installed."""
    try:
        spec = importlib.util.find_spec("vllm")
    except (ImportError, ValueError):  # a broken or shadowed installation
        spec = None
    if spec is None:
        raise ConfigError(f"the vllm backend needs vLLM, which is not installed: {INSTALL_HINT}")


def sampling_kwargs(params: SamplingParams) -> dict[str, Any]:
    """Return the vllm.SamplingParams keyword arguments that mean what `params` means.

    vLLM's other knobs keep their defaults, which are off (top_k, min_p, repetition
    penalty), as in the OpenAI API; a stop string is left out of the text, as there.
    """
    return {
        "n": 1,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_tokens,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
        "stop": list(params.stop) or None,
        "seed": params.seed,
    }


def llm_kwargs(teacher: TeacherConfig) -> dict[str, Any]:
    """Return the vllm.LLM keyword arguments of one replica."""
    kwargs: dict[str, Any] = {
        "model": teacher.model,
        "tensor_parallel_size": teacher.tensor_parallel_size,
        "pipeline_parallel_size": teacher.pipeline_parallel_size,
        "gpu_memory_utilization": teacher.gpu_memory_utilization,
    }
    if teacher.distributed_executor_backend != "auto":
        kwargs["distributed_executor_backend"] = teacher.distributed_executor_backend
    if teacher.max_model_len is not None:
        kwargs["max_model_len"] = teacher.max_model_len
    extra = dict(teacher.engine_args or {})
    repeated = sorted(set(extra) & set(_OWN_SETTINGS))
    if repeated:
        raise ConfigError(
            f"teacher.engine_args: {', '.join(repeated)} has its own setting "
            f"(teacher.{repeated[0]}); set it there"
        )
    kwargs.update(extra)
    return kwargs


def visible_devices(env: Mapping[str, str], count: Callable[[], int]) -> list[str]:
    """List the GPUs this process may use: CUDA_VISIBLE_DEVICES, else `count()` of them."""
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip()]
    return [str(i) for i in range(count())]


def replica_devices(visible: Sequence[str], replicas: int, per_replica: int) -> list[list[str]]:
    """Give each replica its own consecutive GPUs, or say how many are missing."""
    need = replicas * per_replica
    if len(visible) < need:
        raise ConfigError(
            f"data_parallel_size {replicas} x {per_replica} GPUs per replica "
            f"(tensor x pipeline parallel) needs {need} GPUs; {len(visible)} visible"
        )
    return [list(visible[i * per_replica : (i + 1) * per_replica]) for i in range(replicas)]


def check_chat_template(api: str, template: object, model: str) -> bool:
    """Say whether prompts go through the chat template; refuse chat without one."""
    if api != "chat":
        return False  # the completions API sends the prompt text as it is, like vllm serve
    if not template:
        raise ConfigError(
            f"{model} has no chat template, so --api chat cannot format its prompts: "
            "use --api completions"
        )
    return True


def chat_token_ids(rendered: Any) -> list[int]:
    """Return the token ids of `apply_chat_template(..., tokenize=True)`, whatever its form.

    transformers 4.x returns a list of ids; 5.x returns a BatchEncoding (a mapping).
    Token ids rather than text go to vLLM, so the template's own BOS is not doubled.
    """
    if isinstance(rendered, Mapping):
        rendered = rendered["input_ids"]
    ids = list(rendered)
    if ids and isinstance(ids[0], (list, tuple)):  # a batch of one
        ids = list(ids[0])
    return [int(i) for i in ids]


def prompt_too_long(message: str) -> int | None:
    """Return the prompt's length when vLLM refused it for exceeding the context."""
    found = _TOO_LONG.search(message)
    return int(found.group(1)) if found else None


def own_request_id(engine_id: str, live: Container[str]) -> str | None:
    """Map the id on an engine output back to ours, or None for one no longer wanted.

    Newer vLLM releases append a random suffix ("-" and hex) to request ids inside the engine
    (vllm-project/vllm#27987); outputs are meant to carry ours, and this copes either way.
    """
    if engine_id in live:
        return engine_id
    base = engine_id.rpartition("-")[0]
    return base if base and base in live else None


def pick_replica(outstanding: Sequence[int], alive: Sequence[bool]) -> int:
    """Choose the live replica with the fewest requests outstanding (lowest index on ties)."""
    choices = [i for i, ok in enumerate(alive) if ok]
    if not choices:
        raise TeacherError("no vLLM replica is running")
    return min(choices, key=lambda i: (outstanding[i], i))


def one_line(exc: BaseException) -> str:
    """Summarise an exception in one line, for messages that cross a process boundary."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# -- the replica side ------------------------------------------------------------------------


class Engine(Protocol):
    """What the replica loop needs from an engine: vLLM's, or a stand-in in tests."""

    def add(self, rid: str, prompt: str, params: dict[str, Any]) -> Finished | None:
        """Start a request; return its answer at once when it can have none."""

    def abort(self, rid: str) -> None:
        """Drop a request (unknown or finished ids are ignored)."""

    def busy(self) -> bool:
        """Say whether any request is unfinished."""

    def step(self) -> list[Finished]:
        """Run one engine step; return the requests it finished."""

    def close(self) -> None:
        """Free the GPUs."""


class Inbox(Protocol):
    """The get side of queue.Queue and multiprocessing.Queue."""

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Return the next message, or raise queue.Empty."""

    def get_nowait(self) -> Any:
        """Return the next message now, or raise queue.Empty."""


def _drain(inbox: Inbox, wait: float | None) -> list[Message]:
    """Take every waiting message; when `wait` is set, first wait that long for one."""
    messages: list[Message] = []
    try:
        messages.append(inbox.get(timeout=wait) if wait is not None else inbox.get_nowait())
        while True:
            messages.append(inbox.get_nowait())
    except queue.Empty:
        pass
    return messages


def serve(
    engine: Engine,
    inbox: Inbox,
    emit: Callable[[Message], None],
    parent_alive: Callable[[], bool] = lambda: True,
    poll: float = POLL_SECONDS,
) -> None:
    """Feed `engine` from `inbox` and emit each answer, until told to stop.

    New requests join the engine between steps, so they share the batch with the ones
    already running; when idle, it waits for work and returns if the parent has gone.
    """
    while True:
        busy = engine.busy()
        messages = _drain(inbox, None if busy else poll)
        for message in messages:
            kind = message[0]
            if kind == "stop":
                return
            if kind == "abort":
                engine.abort(message[1])
            elif kind == "add":
                _, rid, prompt, params = message
                try:
                    answer = engine.add(rid, prompt, params)
                except (ValueError, TypeError) as exc:  # vLLM's verdict on this request
                    emit(("failed", rid, one_line(exc)))
                    continue
                if answer is not None:
                    emit(("done", *answer))
        if not messages and not busy and not parent_alive():
            return
        if engine.busy():
            for answer in engine.step():
                emit(("done", *answer))


@dataclass(frozen=True)
class ReplicaSpec:
    """What a replica process needs to build its engine (picklable)."""

    model: str
    chat: bool
    llm_kwargs: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)  # set before vLLM is imported


EngineFactory = Callable[[ReplicaSpec], Engine]


class VLLMEngine:
    """Drive one `vllm.LLM`'s engine request by request (runs in a replica process)."""

    def __init__(self, spec: ReplicaSpec) -> None:
        try:
            vllm = importlib.import_module("vllm")
        except ImportError as exc:
            raise ConfigError(f"vLLM is installed but cannot be imported ({exc})") from None
        self._params_type: Any = vllm.SamplingParams
        # Only the final output of each request is wanted; RequestOutputKind exists from
        # vLLM 0.6.1 on, and without it every step reports the text so far (also fine).
        kinds = getattr(importlib.import_module("vllm.sampling_params"), "RequestOutputKind", None)
        self._final_only = getattr(kinds, "FINAL_ONLY", None)
        self._llm: Any = vllm.LLM(**spec.llm_kwargs)
        self._engine: Any = self._llm.llm_engine
        self._tokenizer: Any = None
        tokenizer = self._llm.get_tokenizer()
        if check_chat_template(
            "chat" if spec.chat else "completions",
            getattr(tokenizer, "chat_template", None),
            spec.model,
        ):
            self._tokenizer = tokenizer
        self._live: set[str] = set()

    def add(self, rid: str, prompt: str, params: dict[str, Any]) -> Finished | None:
        """Add one request to the engine; a prompt longer than the context gets "length"."""
        sampling = self._params_type(**params)
        if self._final_only is not None:
            sampling.output_kind = self._final_only
        vllm_prompt: Any = prompt
        if self._tokenizer is not None:
            messages = [{"role": "user", "content": prompt}]
            rendered = self._tokenizer.apply_chat_template(
                messages, tokenize=True, add_generation_prompt=True
            )
            vllm_prompt = {"prompt_token_ids": chat_token_ids(rendered)}
        try:
            self._engine.add_request(rid, vllm_prompt, sampling)
        except ValueError as exc:
            length = prompt_too_long(str(exc))
            if length is None:
                raise
            # No room for a single token, which is what "length" means; the round loses this
            # one prompt instead of the run stopping (as with the local backend).
            return (rid, "", "length", length, 0)
        self._live.add(rid)
        return None

    def abort(self, rid: str) -> None:
        """Abort a request still in the engine."""
        if rid in self._live:
            self._live.discard(rid)
            self._engine.abort_request([rid])

    def busy(self) -> bool:
        """Say whether the engine has unfinished requests."""
        return bool(self._engine.has_unfinished_requests())

    def step(self) -> list[Finished]:
        """Run one engine step and collect the requests it finished."""
        finished: list[Finished] = []
        for out in self._engine.step():
            rid = own_request_id(str(out.request_id), self._live)
            if not out.finished or rid is None:
                continue
            self._live.discard(rid)
            first = out.outputs[0]
            finished.append(
                (
                    rid,
                    first.text,
                    str(first.finish_reason or ""),  # missing: not "stop"
                    len(out.prompt_token_ids or ()),
                    len(first.token_ids),
                )
            )
        return finished

    def close(self) -> None:
        """Drop the LLM so vLLM shuts its workers down."""
        self._engine = None
        self._llm = None


def vllm_engine(spec: ReplicaSpec) -> Engine:
    """Build the real engine of a replica (the default factory)."""
    return VLLMEngine(spec)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def replica_main(
    index: int,
    spec: ReplicaSpec,
    inbox: Inbox,
    outbox: Any,
    factory: EngineFactory = vllm_engine,
) -> None:
    """Run one replica: build the engine, say ready, serve until stopped."""
    # Ctrl-C reaches every process of the terminal; the parent decides when replicas stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # terminate() unwinds Python instead of killing outright, so vLLM's exit hooks still
    # stop the processes it started (a replica told to stop while loading gets this).
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    os.environ.update(spec.env)
    parent = multiprocessing.parent_process()
    try:
        engine = factory(spec)
    except SystemExit:  # told to stop (SIGTERM) while loading
        raise
    except BaseException as exc:  # anything at all: reported to the parent, which raises
        text = str(exc) if isinstance(exc, ConfigError) else one_line(exc)
        outbox.put(("fatal", index, f"vLLM cannot load {spec.model}: {text}"))
        return
    outbox.put(("ready", index))
    try:
        serve(engine, inbox, outbox.put, parent.is_alive if parent else (lambda: True))
    except SystemExit:
        raise
    except BaseException as exc:  # the engine died: reported to the parent, which raises
        outbox.put(("fatal", index, f"vLLM failed on replica {index}: {one_line(exc)}"))
    finally:
        engine.close()


# -- the backend side ------------------------------------------------------------------------


@dataclass
class _Replica:
    process: Any  # multiprocessing.Process (spawn context)
    inbox: Any  # multiprocessing.Queue
    ready: asyncio.Future[None]
    outstanding: int = 0
    alive: bool = True
    seen_dead: bool = False  # exited; declared lost one poll later, once its last words are in


@dataclass
class _Pending:
    replica: int
    future: asyncio.Future[Completion]


class VLLMOfflineBackend(Backend):
    """Answer requests with vLLM on this machine's GPUs, one engine per replica process.

    `timeout` and `max_retries` do not apply: nothing goes over a network, and a request
    vLLM refuses would be refused again. Pass `factory` (a picklable function) to run
    another engine in the replicas; the default builds `vllm.LLM` from the config.
    """

    # No limit of its own: vLLM's scheduler queues what it cannot run yet, so the pipeline's
    # gate is teacher.concurrency alone (resolve raises it to DEFAULT_CONCURRENCY).
    max_concurrency = None

    def __init__(self, config: TeacherConfig, *, factory: EngineFactory | None = None) -> None:
        if factory is None:
            check_installed()
            factory = vllm_engine
        self._config = config
        self._factory = factory
        kwargs = llm_kwargs(config)
        per_replica = config.tensor_parallel_size * config.pipeline_parallel_size
        envs: list[dict[str, str]] = [{} for _ in range(config.data_parallel_size)]
        # vLLM's INFO lines (dozens per replica) would bury the progress line.
        base_env = {} if "VLLM_LOGGING_LEVEL" in os.environ else {"VLLM_LOGGING_LEVEL": "WARNING"}
        if config.data_parallel_size > 1 and config.distributed_executor_backend != "ray":
            # Each replica sees only its own GPUs; under Ray, Ray places them.
            visible = visible_devices(os.environ, _cuda_device_count)
            devices = replica_devices(visible, config.data_parallel_size, per_replica)
            for env, own in zip(envs, devices, strict=True):
                env["CUDA_VISIBLE_DEVICES"] = ",".join(own)
        self._specs = [
            ReplicaSpec(config.model, config.api == "chat", kwargs, {**base_env, **env})
            for env in envs
        ]
        self._replicas: list[_Replica] = []
        self._pending: dict[str, _Pending] = {}
        self._ids = itertools.count()
        self._outbox: Any = None
        self._pump: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failure: str | None = None
        self._all_ready = False
        self._closed = False

    @classmethod
    def resolve(cls, config: RunConfig) -> dict[str, Any]:
        """Require --model; put every request in flight unless --concurrency says otherwise."""
        teacher = config.teacher
        if "model" not in teacher.model_fields_set:
            raise ConfigError(
                "--backend vllm needs --model NAME_OR_PATH (a Hugging Face model id or a "
                "local model directory)"
            )
        # vLLM batches whatever is in flight, so let the pipeline put everything in.
        if "concurrency" not in teacher.model_fields_set:
            return {"concurrency": DEFAULT_CONCURRENCY}
        return {}

    @classmethod
    def from_config(
        cls, config: RunConfig, api_key: str | None, *, notify: Notify | None = None
    ) -> VLLMOfflineBackend:
        """Build the backend: one engine per data-parallel replica, started on preflight."""
        return cls(config.teacher)

    async def preflight(self) -> None:
        """Start the replicas and load the model, so a bad model fails before the run starts."""
        await self._ready()

    async def complete(self, requests: Sequence[Request]) -> list[Completion]:
        """Answer the requests; each joins vLLM's running batch at once."""
        await self._ready()
        futures = [self._submit(request) for request in requests]
        return list(await asyncio.gather(*futures))

    async def aclose(self) -> None:
        """Stop the replicas (they free their GPUs), then end the message pump."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._stop_now)
        self._fail_pending("the vLLM backend was closed")
        if self._replicas:
            await asyncio.to_thread(self._stop_now)
        if self._outbox is not None:
            self._outbox.put(("closed",))
        if self._pump is not None:
            await asyncio.to_thread(self._pump.join)
        for replica in self._replicas:
            replica.inbox.cancel_join_thread()  # what a stopped replica did not read is moot
            replica.inbox.close()
        if self._outbox is not None:
            self._outbox.close()

    # -- starting -------------------------------------------------------------------------

    async def _ready(self) -> None:
        if self._closed:
            raise TeacherError("the vLLM backend was closed")
        if self._all_ready and self._failure is None:
            return
        if not self._replicas:
            self._start()
        # Wait for every replica, so none is left loading with its error unread.
        outcomes = await asyncio.gather(*(r.ready for r in self._replicas), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        self._all_ready = True
        if self._failure is not None:
            raise TeacherError(self._failure)

    def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # spawn, never fork: CUDA cannot be initialised in a forked child.
        ctx = multiprocessing.get_context("spawn")
        self._outbox = ctx.Queue()
        for index, spec in enumerate(self._specs):
            inbox = ctx.Queue()
            # Not a daemon: vLLM starts processes of its own, which daemons may not.
            process = ctx.Process(
                target=replica_main,
                args=(index, spec, inbox, self._outbox, self._factory),
                name=f"vllm-replica-{index}",
                daemon=False,
            )
            process.start()
            self._replicas.append(_Replica(process, inbox, self._loop.create_future()))
        # A run that ends without aclose() must still stop them, or interpreter exit would
        # wait for them forever (multiprocessing joins non-daemon children at exit).
        atexit.register(self._stop_now)
        self._pump = threading.Thread(target=self._pump_messages, name="vllm-pump", daemon=True)
        self._pump.start()

    def _stop_now(self) -> None:
        for replica in self._replicas:
            if replica.process.exitcode is None:
                with contextlib.suppress(OSError, ValueError):
                    replica.inbox.put(("stop",))
        for replica in self._replicas:
            # A loading replica reads no messages: no point waiting for it to see "stop".
            loaded = replica.ready.done() and not replica.ready.cancelled()
            replica.process.join(STOP_GRACE_SECONDS if loaded else 1.0)
            if replica.process.exitcode is None:
                replica.process.terminate()
                replica.process.join(10)
            if replica.process.exitcode is None:
                replica.process.kill()
                replica.process.join()

    # -- requests -------------------------------------------------------------------------

    def _submit(self, request: Request) -> asyncio.Future[Completion]:
        if self._failure is not None:
            raise TeacherError(self._failure)
        assert self._loop is not None
        index = pick_replica(
            [r.outstanding for r in self._replicas], [r.alive for r in self._replicas]
        )
        replica = self._replicas[index]
        rid = str(next(self._ids))
        future: asyncio.Future[Completion] = self._loop.create_future()
        self._pending[rid] = _Pending(index, future)
        replica.outstanding += 1
        replica.inbox.put(("add", rid, request.prompt, sampling_kwargs(request.params)))
        future.add_done_callback(lambda f: self._on_done(rid, f))
        return future

    def _on_done(self, rid: str, future: asyncio.Future[Completion]) -> None:
        pending = self._pending.pop(rid, None)
        if pending is None:
            return
        replica = self._replicas[pending.replica]
        replica.outstanding -= 1
        if future.cancelled() and replica.alive and not self._closed:  # no longer needed
            replica.inbox.put(("abort", rid))

    def _fail_pending(self, message: str, replica: int | None = None) -> None:
        for pending in list(self._pending.values()):
            if (replica is None or pending.replica == replica) and not pending.future.done():
                pending.future.set_exception(TeacherError(message))

    # -- messages from the replicas (run on the event loop) --------------------------------

    def _pump_messages(self) -> None:
        """Move replica messages onto the event loop (runs on its own thread)."""
        assert self._loop is not None
        while True:
            try:
                message: Message = self._outbox.get(timeout=POLL_SECONDS)
            except queue.Empty:
                message = ("tick",)
            except (EOFError, OSError):
                return
            if message[0] == "closed":
                return
            try:
                self._loop.call_soon_threadsafe(self._dispatch, message)
            except RuntimeError:  # the event loop is closed
                return

    def _dispatch(self, message: Message) -> None:
        kind = message[0]
        if kind == "done":
            _, rid, text, finish, prompt_tokens, completion_tokens = message
            pending = self._pending.get(rid)
            if pending is not None and not pending.future.done():
                usage = Usage(int(prompt_tokens), int(completion_tokens))
                # vLLM's reasoning parsers belong to its server: offline, a reasoning model's
                # thinking stays in the text (<think> tags). It is removed here and its
                # tokens estimated, as the other backends do.
                pending.future.set_result(without_reasoning(text, finish, usage))
        elif kind == "failed":
            _, rid, reason = message
            pending = self._pending.get(rid)
            if pending is not None and not pending.future.done():
                pending.future.set_exception(TeacherError(f"vLLM refused a request: {reason}"))
        elif kind == "ready":
            ready = self._replicas[message[1]].ready
            if not ready.done():
                ready.set_result(None)
        elif kind == "fatal":
            self._replica_lost(message[1], message[2])
        elif kind == "tick" and not self._closed:
            for index, replica in enumerate(self._replicas):
                code = replica.process.exitcode if replica.alive else None
                if code is None:
                    continue
                if replica.seen_dead:
                    self._replica_lost(index, f"vLLM replica {index} exited (code {code})")
                replica.seen_dead = True

    def _replica_lost(self, index: int, message: str) -> None:
        replica = self._replicas[index]
        if not replica.alive:
            return
        replica.alive = False
        if not replica.ready.done():  # it never loaded: a setting or the model is wrong
            replica.ready.set_exception(ConfigError(message))
            return
        # One replica down stops the run: resuming redoes only the unanswered requests.
        self._failure = message
        self._fail_pending(message, None)


def _cuda_device_count() -> int:
    """Count CUDA devices with torch (installed with vLLM), without a CUDA context."""
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        raise ConfigError(
            "cannot count the GPUs (torch is not installed): set CUDA_VISIBLE_DEVICES"
        ) from None
    return int(torch.cuda.device_count())
