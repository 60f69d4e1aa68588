"""The adaptive limit against a real queueing server: llama.cpp's OpenAI-compatible server.

llama-cpp-python's server answers one request at a time and queues the rest, so its
latency grows with what is in flight and it never refuses. Several requests go at once,
with no retries: none may time out or be sent twice, and the limit must come down to what
the server serves instead of growing its queue. Skipped without the [local] extra (with
its [server] part); CI installs it. Tiny answers and a handful of requests keep it short.
"""

from __future__ import annotations

import asyncio
import http.client
import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from selfinstruct.backends.openai_compat import INITIAL_CONCURRENCY, OpenAICompatBackend
from selfinstruct.concurrency import ACCEPT_BURST
from selfinstruct.config import TeacherConfig
from selfinstruct.errors import ConfigError
from selfinstruct.records import Request, SamplingParams

pytest.importorskip("llama_cpp", reason="needs the [local] extra")
for _module in ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f"needs llama-cpp-python[server] ({_module})", allow_module_level=True)

START_DEADLINE = 120.0  # seconds for the server to load the model and listen
REQUESTS = 30
PARAMS = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=4)


def _model() -> Path:
    from selfinstruct.backends.local import default_model_path

    try:
        return default_model_path()
    except ConfigError as exc:
        pytest.skip(str(exc))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited with {proc.returncode} before listening")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"llama_cpp.server did not answer within {START_DEADLINE:g} s")


def _probe(url: str) -> None:
    """Skip when llama.cpp cannot answer one request on its own (a broken build, not ours).

    Seen with llama-cpp-python 0.3.x builds that crash in llama_decode on the embedded GGUF
    whatever the caller (a five-line script does it too): the server drops the connection.
    """
    body = json.dumps({"model": "m", "prompt": "Count to 3:", "max_tokens": 2}).encode()
    request = urllib.request.Request(
        f"{url}/completions", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            json.loads(answer.read())
    except (OSError, http.client.HTTPException, ValueError) as exc:
        pytest.skip(f"llama.cpp could not answer a single request here ({exc!r})")


@pytest.mark.slow
def test_a_real_queueing_server_is_not_overfilled_and_nothing_times_out(tmp_path: Path) -> None:
    port = _free_port()
    log = (tmp_path / "server.log").open("wb")  # a pipe nobody reads could fill and stall it
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(_model()),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2",
         "--verbose", "False",
         # By default a new request interrupts the one being served (for chat UIs): a
         # batch client needs it to queue, as `vllm serve` does.
         "--interrupt_requests", "False"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/v1"
        _wait_until_up(url, proc)
        _probe(url)
        config = TeacherConfig(base_urls=[url], model="smollm2", timeout=120.0, max_retries=0)
        requests = [
            Request(key=f"k{i}", stage="instructions", prompt=f"Count to {i}:", params=PARAMS)
            for i in range(REQUESTS)
        ]

        async def go() -> tuple[int, int]:
            backend = OpenAICompatBackend(config, None)
            try:
                completions = await asyncio.wait_for(backend.complete(requests), 300)
                return len(completions), backend.limit.limit
            finally:
                await backend.aclose()

        answered, limit = asyncio.run(go())
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()
    # max_retries=0: every request was sent once and answered once, none timed out.
    assert answered == REQUESTS
    # One slot: the answers come one after another, ever slower, and the limit comes down
    # from where it started instead of growing with the queue.
    assert limit < min(INITIAL_CONCURRENCY, ACCEPT_BURST)
