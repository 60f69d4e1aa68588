"""Serve a loopback OpenAI-compatible API for tests, over real HTTP/1.1.

The server speaks just enough of the OpenAI REST API (``/v1/completions``,
``/v1/chat/completions``, ``/v1/models``, and the Files and Batch APIs: ``/v1/files``,
``/v1/batches``) for the real ``openai`` client to talk to it.
What it answers is decided by a *handler* (a plain function of the recorded request),
optionally preceded by scripted faults (:meth:`OpenAITestServer.push_faults`), seeded
random faults (``fault_rate``) and a concurrency cap (``capacity``). Batches are
processed in a background thread that asks the same handler for each line, after
``batch_delay`` seconds, unless a pushed :class:`BatchPlan` says otherwise.

Run it by hand with ``python -m selfinstruct.testing.server --port 8000``.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import hashlib
import importlib
import json
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import FrameType
from typing import Any, Literal

__all__ = [
    "BatchPlan",
    "Endpoint",
    "Handler",
    "OpenAITestServer",
    "RecordedBatch",
    "RecordedRequest",
    "REASONING_MODEL_REFUSES",
    "Reply",
    "ServerStats",
    "echo_handler",
    "echo_text",
    "load_handler",
    "main",
    "unsupported_error",
]

Endpoint = Literal["completions", "chat"]

_WORD = re.compile(r"\S+")
_JSON = "application/json"
# How often serve_forever checks for shutdown; small so stop() returns promptly.
_POLL_INTERVAL = 0.05
# Upper bound on joining worker threads at stop(); they are daemons, so a handler that
# hangs beyond this cannot keep the interpreter alive.
_JOIN_TIMEOUT = 5.0
_CAPACITY_RETRY_AFTER = 0.05


@dataclass(frozen=True)
class RecordedRequest:
    """Describe one generation request the server received.

    A completions request whose ``prompt`` is a list is recorded once per prompt, each
    with its position in ``index``; all of them share ``request_id`` (one per HTTP
    request). ``prompt`` is the prompt text, or for chat the messages' contents joined
    by a blank line.
    """

    endpoint: Endpoint
    body: dict[str, Any]
    prompt: str
    headers: dict[str, str]
    time: float
    index: int = 0
    request_id: int = 0

    @property
    def model(self) -> str:
        """Return the ``model`` the client asked for ("" when absent)."""
        return str(self.body.get("model", ""))


@dataclass(frozen=True)
class Reply:
    """Describe how to answer one request.

    With ``status`` 200 the server wraps ``text`` in an OpenAI-shaped completion after
    applying the request's ``stop`` and ``max_tokens`` (unless ``finish_reason`` is set,
    which sends ``text`` verbatim with that finish reason). With any other status it
    sends an OpenAI-shaped error whose message is ``text`` (or a stock one).
    ``raw_body`` replaces the whole body verbatim; ``drop_connection`` closes the socket
    without answering; ``reset_connection`` aborts it with a TCP RST (connection reset by
    peer); ``delay`` seconds pass before answering either way.

    A reasoning model's answer: ``reasoning`` goes in a field beside the text, named
    ``reasoning_field`` (vLLM's and DeepSeek's ``reasoning_content``, or ``reasoning``),
    and its words count as completion tokens; ``reasoning_tokens`` is sent as
    ``usage.completion_tokens_details.reasoning_tokens`` (and counted as completion tokens
    too). Reasoning in the text (``<think>`` tags) is just text.
    """

    text: str = ""
    finish_reason: str | None = None
    delay: float = 0.0
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    raw_body: bytes | None = None
    drop_connection: bool = False
    reset_connection: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning: str | None = None
    reasoning_field: str = "reasoning_content"
    reasoning_tokens: int | None = None

    @property
    def ok(self) -> bool:
        """Return whether this reply is a successful (200, not dropped) answer."""
        return self.status == 200 and not self.drop_connection and not self.reset_connection

    @classmethod
    def rate_limited(cls, retry_after: float | None = None, *, delay: float = 0.0) -> Reply:
        """Build a 429 rate-limit error, with a ``Retry-After`` header when given."""
        headers = {} if retry_after is None else {"Retry-After": _format_seconds(retry_after)}
        return cls(
            text="Rate limit reached for requests (test server).",
            status=429,
            headers=headers,
            delay=delay,
        )

    @classmethod
    def server_error(cls, status: int = 500, *, delay: float = 0.0) -> Reply:
        """Build a 5xx server error in OpenAI's error shape."""
        return cls(status=status, delay=delay)

    @classmethod
    def dropped(cls, *, delay: float = 0.0) -> Reply:
        """Build a reply that closes the connection without sending any response."""
        return cls(drop_connection=True, delay=delay)

    @classmethod
    def reset(cls, *, delay: float = 0.0) -> Reply:
        """Build a reply that aborts the connection with a TCP RST instead of answering."""
        return cls(reset_connection=True, delay=delay)

    @classmethod
    def malformed(cls, body: bytes = b'{"id": "cmpl-broken", "choices": [') -> Reply:
        """Build a 200 whose body is not valid JSON."""
        return cls(raw_body=body)


Handler = Callable[[RecordedRequest], Reply]

# What OpenAI's reasoning models (o1, o3, o4-mini, gpt-5) refuse in a chat request, in the
# order this server names them; pass it as OpenAITestServer(refuse=...).
REASONING_MODEL_REFUSES = (
    "max_tokens",
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "stop",
    "seed",
)
# Fields OpenAI refuses by value (only the default, 1, is taken), not by presence.
_DEFAULT_ONLY = {"temperature": 1, "top_p": 1}


def unsupported_error(body: dict[str, Any], refuse: Sequence[str]) -> dict[str, Any] | None:
    """Return OpenAI's 400 error body for the first field of `refuse` that `body` holds.

    The shape and wording are OpenAI's for a reasoning model: ``unsupported_parameter``
    for a field it never takes (max_tokens points to max_completion_tokens), and
    ``unsupported_value`` for temperature or top_p other than the default 1. None when
    `body` holds none of them.
    """
    for name in refuse:
        if name not in body:
            continue
        value = body[name]
        if name in _DEFAULT_ONLY:
            if value == _DEFAULT_ONLY[name]:
                continue
            message = (
                f"Unsupported value: '{name}' does not support {value} with this model. "
                "Only the default (1) value is supported."
            )
            code = "unsupported_value"
        else:
            message = f"Unsupported parameter: '{name}' is not supported with this model."
            if name == "max_tokens":
                message += " Use 'max_completion_tokens' instead."
            code = "unsupported_parameter"
        return {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": name,
                "code": code,
            }
        }
    return None


BatchOutcome = Literal["completed", "expired", "failed", "cancelled"]
BatchStatus = Literal[
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
]


@dataclass(frozen=True)
class BatchPlan:
    """Script how the server treats the next batch (see :meth:`OpenAITestServer.push_batch_plans`).

    ``outcome`` "expired" answers the first ``answered_lines`` lines (all when None) and
    lists the rest as expired in the error file; "failed" fails the batch at validation
    with ``message``; "cancelled" ends it as if a user cancelled it, after
    ``answered_lines`` lines. With "completed", lines past ``answered_lines`` are left out
    of both files, as a faulty server might. ``line_faults`` maps zero-based line numbers to replies
    that answer those lines instead of the handler (their errors go to the error file).
    ``delay`` replaces the server's ``batch_delay`` for this batch. ``drop_create_reply``
    creates the batch but closes the connection instead of answering, as when a reply is
    lost on the way.
    """

    outcome: BatchOutcome = "completed"
    answered_lines: int | None = None
    line_faults: dict[int, Reply] = field(default_factory=dict)
    delay: float | None = None
    message: str = "The batch input file failed validation (test server plan)."
    drop_create_reply: bool = False


@dataclass(frozen=True)
class RecordedBatch:
    """Describe one batch the server accepted, as it stands now.

    ``custom_ids`` are those of the input file's lines, in order; ``answered`` those the
    handler answered (successfully or not), in the order it answered them.
    """

    id: str
    endpoint: str
    input_file_id: str
    status: BatchStatus
    custom_ids: tuple[str, ...]
    answered: tuple[str, ...]
    metadata: dict[str, str]
    output_file_id: str | None
    error_file_id: str | None


@dataclass(frozen=True)
class ServerStats:
    """Summarise traffic and load since the server started.

    Counts are per HTTP request (a batched completions request counts once).
    ``busy_seconds`` integrates the number of requests in flight over time, so
    ``busy_seconds / wall_seconds`` is the mean concurrency.
    """

    requests: int
    answered: int
    rejected_over_capacity: int
    faults: int
    busy_seconds: float
    wall_seconds: float
    peak_in_flight: int
    capacity: int | None

    @property
    def utilisation(self) -> float | None:
        """Return busy_seconds / (capacity * wall_seconds), or None without a capacity."""
        if self.capacity is None or self.wall_seconds <= 0:
            return None
        return self.busy_seconds / (self.capacity * self.wall_seconds)


def echo_text(prompt: str) -> str:
    """Return the default handler's deterministic text for ``prompt``."""
    digest = hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:8]
    words = prompt.split()[-12:]
    return " ".join([f"echo-{digest}:", *words])


def echo_handler(request: RecordedRequest) -> Reply:
    """Answer with :func:`echo_text` of the request's prompt."""
    return Reply(text=echo_text(request.prompt))


def load_handler(spec: str) -> Handler:
    """Import ``module:factory`` and return the handler that calling ``factory()`` builds."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"handler spec must look like 'package.module:factory', got {spec!r}")
    factory = getattr(importlib.import_module(module_name), attr)
    handler = factory()
    if not callable(handler):
        raise TypeError(f"{spec} returned {handler!r}, which is not a handler")
    return handler  # type: ignore[no-any-return]


class OpenAITestServer:
    """Run an OpenAI-compatible HTTP server on loopback in a background thread.

    Use it as a context manager (``with OpenAITestServer(handler) as srv:``) or call
    :meth:`start` and :meth:`stop`. Point a client at :attr:`base_url`. ``history`` keeps
    only the latest that many requests for :attr:`requests` and the other lists (None: all).
    """

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        capacity: int | None = None,
        fault_rate: float = 0.0,
        fault_seed: int = 0,
        api_key: str | None = None,
        models: Sequence[str] = ("test-model",),
        host: str = "127.0.0.1",
        port: int = 0,
        batch_delay: float = 0.0,
        history: int | None = None,
        refuse: Sequence[str] = (),
    ) -> None:
        if capacity is not None and capacity < 1:
            raise ValueError("capacity must be at least 1")
        if batch_delay < 0:
            raise ValueError("batch_delay must not be negative")
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError("fault_rate must be within [0, 1]")
        self.handler: Handler = handler if handler is not None else echo_handler
        self.capacity = capacity
        self.fault_rate = fault_rate
        self.api_key = api_key
        self.models = tuple(models)
        # Body fields refused as OpenAI's reasoning models refuse them (unsupported_error),
        # in direct requests and batch lines alike; settable while serving.
        self.refuse: tuple[str, ...] = tuple(refuse)
        self.host = host
        self._requested_port = port

        self._lock = threading.Lock()
        self._rng = random.Random(fault_seed)
        self._fault_queue: deque[Reply] = deque()
        # A long soak run sends hundreds of thousands of requests: `history` bounds what is
        # kept for inspection (the counts in stats() stay exact).
        self._requests: deque[RecordedRequest] = deque(maxlen=history)
        self._answered: deque[tuple[RecordedRequest, Reply]] = deque(maxlen=history)
        self._faulted: deque[tuple[RecordedRequest, Reply]] = deque(maxlen=history)
        self._rejected: deque[RecordedRequest] = deque(maxlen=history)
        self._handler_errors: list[BaseException] = []
        self._next_request_id = 0
        self._n_requests = 0
        self._n_answered = 0
        self._n_rejected = 0
        self._n_faults = 0
        self._in_flight = 0
        self._peak_in_flight = 0
        self._busy_seconds = 0.0
        self._last_change = 0.0
        self._started_at = 0.0

        self.batch_delay = batch_delay
        self._files: dict[str, _StoredFile] = {}
        self._batches: dict[str, _BatchJob] = {}
        self._batch_plans: deque[BatchPlan] = deque()
        self._batch_requests: list[RecordedRequest] = []
        self._batch_threads: list[threading.Thread] = []
        self._next_object_id = 0

        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._serve_thread: threading.Thread | None = None
        self._stopped = False

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> OpenAITestServer:
        """Bind the socket and start serving in a background thread."""
        if self._httpd is not None or self._stopped:
            raise RuntimeError("an OpenAITestServer can be started only once")
        httpd = _HTTPServer((self.host, self._requested_port), self)
        now = time.monotonic()
        self._started_at = now
        self._last_change = now
        self._httpd = httpd
        self._serve_thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name=f"openai-test-server:{self.port}",
            daemon=True,
        )
        self._serve_thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections and join every server thread."""
        httpd = self._httpd
        if httpd is None or self._stopped:
            self._stopped = True
            return
        self._stopped = True
        # Wake handlers sleeping on a reply's delay so they do not hold stop() up.
        self._stopping.set()
        httpd.shutdown()
        # No connection is accepted after shutdown() returns, so this set is final.
        httpd.abort_connections()
        httpd.join_workers(_JOIN_TIMEOUT)
        httpd.server_close()
        if self._serve_thread is not None:
            self._serve_thread.join(_JOIN_TIMEOUT)
        with self._lock:
            batch_threads = list(self._batch_threads)
        for thread in batch_threads:
            thread.join(_JOIN_TIMEOUT)

    def __enter__(self) -> OpenAITestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------

    @property
    def port(self) -> int:
        """Return the bound TCP port (the real one when constructed with port 0)."""
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Return the server root, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """Return the API base URL to give an OpenAI client, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    # -- scripting and inspection ----------------------------------------------------

    def push_faults(self, *replies: Reply) -> None:
        """Queue replies that answer the next requests, in order, before the handler."""
        with self._lock:
            self._fault_queue.extend(replies)

    @property
    def pending_faults(self) -> int:
        """Return how many pushed replies are still waiting for a request."""
        with self._lock:
            return len(self._fault_queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Return every generation request received, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def answered(self) -> list[tuple[RecordedRequest, Reply]]:
        """Return the requests answered with a 200, with the reply that answered each."""
        with self._lock:
            return list(self._answered)

    @property
    def faulted(self) -> list[tuple[RecordedRequest, Reply]]:
        """Return the requests answered with an error or a dropped connection.

        Covers pushed faults, random faults and failing handler replies, but not
        capacity rejections (see :attr:`rejected`).
        """
        with self._lock:
            return list(self._faulted)

    @property
    def rejected(self) -> list[RecordedRequest]:
        """Return the requests turned away with a 429 because the server was at capacity."""
        with self._lock:
            return list(self._rejected)

    @property
    def handler_errors(self) -> list[BaseException]:
        """Return exceptions the handler raised (each answered as a 500)."""
        with self._lock:
            return list(self._handler_errors)

    @property
    def in_flight(self) -> int:
        """Return how many admitted requests are being served right now."""
        with self._lock:
            return self._in_flight

    def push_batch_plans(self, *plans: BatchPlan) -> None:
        """Queue plans that decide, in order, what happens to the next batches created."""
        with self._lock:
            self._batch_plans.extend(plans)

    @property
    def batches(self) -> list[RecordedBatch]:
        """Return every batch created, in creation order, with its current status."""
        with self._lock:
            return [job.recorded() for job in self._batches.values()]

    @property
    def batch_requests(self) -> list[RecordedRequest]:
        """Return the batch lines the handler was asked to answer, in order.

        They are not in :attr:`requests`, which holds direct HTTP generation requests only.
        """
        with self._lock:
            return list(self._batch_requests)

    def file_content(self, file_id: str) -> bytes:
        """Return the bytes of an uploaded or generated file (KeyError when unknown)."""
        with self._lock:
            return self._files[file_id].data

    def stats(self) -> ServerStats:
        """Return counts and load figures since start."""
        now = time.monotonic()
        with self._lock:
            busy = self._busy_seconds + self._in_flight * (now - self._last_change)
            wall = now - self._started_at if self._started_at else 0.0
            return ServerStats(
                requests=self._n_requests,
                answered=self._n_answered,
                rejected_over_capacity=self._n_rejected,
                faults=self._n_faults,
                busy_seconds=busy,
                wall_seconds=wall,
                peak_in_flight=self._peak_in_flight,
                capacity=self.capacity,
            )

    # -- request processing (called from worker threads) -----------------------------

    def _record(self, records: list[RecordedRequest]) -> None:
        with self._lock:
            self._requests.extend(records)
            self._n_requests += 1

    def _next_id(self) -> int:
        with self._lock:
            self._next_request_id += 1
            return self._next_request_id

    def _admit(self) -> bool:
        """Count a request in flight, or refuse it when the server is at capacity."""
        with self._lock:
            if self.capacity is not None and self._in_flight >= self.capacity:
                return False
            self._account_busy()
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
            return True

    def _release(self) -> None:
        with self._lock:
            self._account_busy()
            self._in_flight -= 1

    def _account_busy(self) -> None:
        # Caller holds the lock; integrates in-flight count up to now.
        now = time.monotonic()
        self._busy_seconds += self._in_flight * (now - self._last_change)
        self._last_change = now

    def _scripted_fault(self) -> Reply | None:
        """Pop a pushed fault, or draw a random one at ``fault_rate``."""
        with self._lock:
            if self._fault_queue:
                return self._fault_queue.popleft()
            if self.fault_rate > 0 and self._rng.random() < self.fault_rate:
                return self._rng.choice(_RANDOM_FAULTS)()
            return None

    def _note_rejected(self, records: list[RecordedRequest]) -> None:
        with self._lock:
            self._rejected.extend(records)
            self._n_rejected += 1

    def _note_outcome(self, records: list[RecordedRequest], replies: list[Reply]) -> None:
        with self._lock:
            pairs = list(zip(records, replies, strict=True))
            if all(reply.ok for reply in replies):
                self._answered.extend(pairs)
                self._n_answered += 1
            else:
                self._faulted.extend(pairs)
                self._n_faults += 1

    def _call_handler(self, record: RecordedRequest) -> Reply:
        try:
            return self.handler(record)
        except Exception as exc:
            # A buggy handler should fail one request visibly, not kill the worker thread.
            with self._lock:
                self._handler_errors.append(exc)
            return Reply(status=500, text=f"test handler raised {type(exc).__name__}: {exc}")

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    # -- Files and Batch APIs (called from worker threads) ---------------------------

    def _new_id(self, prefix: str) -> str:
        with self._lock:
            self._next_object_id += 1
            number = self._next_object_id
        # OpenAI's ids are opaque; a counter plus a hash keeps them unique and readable.
        tail = hashlib.sha256(f"{self.port}:{number}".encode()).hexdigest()[:16]
        return f"{prefix}{number:04d}{tail}"

    def _store_file(self, filename: str, purpose: str, data: bytes) -> _StoredFile:
        stored = _StoredFile(self._new_id("file-"), filename, purpose, data, int(time.time()))
        with self._lock:
            self._files[stored.id] = stored
        return stored

    def _get_file(self, file_id: str) -> _StoredFile | None:
        with self._lock:
            return self._files.get(file_id)

    def _delete_file(self, file_id: str) -> bool:
        with self._lock:
            return self._files.pop(file_id, None) is not None

    def _create_batch(self, body: dict[str, Any]) -> dict[str, Any]:
        """Validate a create-batch body, start processing it, and return the Batch object."""
        endpoint = body.get("endpoint")
        if endpoint not in _BATCH_ENDPOINTS:
            raise _BadRequest(
                f"endpoint must be one of {', '.join(_BATCH_ENDPOINTS)} on the test server"
            )
        if body.get("completion_window") != "24h":
            raise _BadRequest("completion_window must be '24h'")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            raise _BadRequest("metadata must map strings to strings")
        file_id = body.get("input_file_id")
        stored = self._get_file(file_id) if isinstance(file_id, str) else None
        if stored is None:
            raise _NotFound(f"No such File object: {file_id}")
        if stored.purpose != "batch":
            raise _BadRequest(f"File {file_id} has purpose {stored.purpose!r}, not 'batch'")
        now = int(time.time())
        obj: dict[str, Any] = {
            "id": self._new_id("batch_"),
            "object": "batch",
            "endpoint": endpoint,
            "errors": None,
            "input_file_id": file_id,
            "completion_window": "24h",
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": None,
            "expires_at": now + 24 * 3600,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": dict(metadata),
        }
        with self._lock:
            plan = self._batch_plans.popleft() if self._batch_plans else BatchPlan()
            job = _BatchJob(obj, stored.data, plan)
            self._batches[obj["id"]] = job
            thread = threading.Thread(
                target=self._process_batch,
                args=(job,),
                name=f"openai-test-server:{self.port}:batch",
                daemon=True,
            )
            self._batch_threads.append(thread)
            snapshot = dict(obj)
        thread.start()
        return snapshot

    def _batch_plan(self, batch_id: str) -> BatchPlan:
        with self._lock:
            return self._batches[batch_id].plan

    def _batch_object(self, batch_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._batches.get(batch_id)
            return None if job is None else dict(job.obj)

    def _cancel_batch(self, batch_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._batches.get(batch_id)
            if job is None:
                return None
            if job.obj["status"] in ("validating", "in_progress"):
                job.obj["status"] = "cancelling"
                job.obj["cancelling_at"] = int(time.time())
                job.cancel.set()
            return dict(job.obj)

    def _list_batches(self, after: str | None, limit: int) -> dict[str, Any]:
        with self._lock:
            newest_first = [dict(job.obj) for job in reversed(self._batches.values())]
        if after is not None:
            ids = [b["id"] for b in newest_first]
            newest_first = newest_first[ids.index(after) + 1 :] if after in ids else []
        page = newest_first[:limit]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(newest_first) > len(page),
        }

    def _set_status(self, job: _BatchJob, status: BatchStatus, **fields: Any) -> None:
        with self._lock:
            job.obj["status"] = status
            job.obj[f"{status}_at"] = int(time.time())
            job.obj.update(fields)

    def _process_batch(self, job: _BatchJob) -> None:
        """Validate, answer and finalise one batch, as OpenAI's batch workers would."""
        plan = job.plan
        delay = self.batch_delay if plan.delay is None else plan.delay
        # A tenth of the time validating, the rest answering lines at an even pace.
        if self._stopping.wait(delay * 0.1):
            return
        lines, errors = _parse_batch_file(job.input, str(job.obj["endpoint"]))
        if not errors and plan.outcome == "failed":
            errors = [{"code": "invalid_request", "message": plan.message, "param": None}]
        if errors:
            self._set_status(job, "failed", errors={"object": "list", "data": errors})
            return
        with self._lock:
            job.custom_ids = tuple(str(line["custom_id"]) for line in lines)
            if job.obj["status"] == "cancelling":
                cancelled_early = True
            else:
                cancelled_early = False
                job.obj["status"] = "in_progress"
                job.obj["in_progress_at"] = int(time.time())
            job.obj["request_counts"] = {"total": len(lines), "completed": 0, "failed": 0}
        limit = len(lines) if plan.answered_lines is None else plan.answered_lines
        outputs: list[bytes] = []
        failures: list[bytes] = []
        start = time.monotonic()
        done = 0
        for number, line in enumerate(lines):
            if cancelled_early or number >= limit:
                break
            due = start + delay * 0.9 * (number + 1) / len(lines)
            if job.cancel.wait(max(0.0, due - time.monotonic())):
                break
            if self._stopping.is_set():
                return
            ok, out = self._answer_batch_line(job, number, line)
            (outputs if ok else failures).append(out)
            done += 1
            with self._lock:
                job.obj["request_counts"]["completed" if ok else "failed"] += 1
        if self._stopping.is_set():
            return
        final: BatchStatus = "completed"
        unfinished: dict[str, str] | None = None  # the error of each line left unanswered
        if job.cancel.is_set() or plan.outcome == "cancelled":
            final = "cancelled"
            unfinished = {
                "code": "batch_cancelled",
                "message": "This request was not executed because the batch was cancelled.",
            }
        elif plan.outcome == "expired":
            final = "expired"
            unfinished = {
                "code": "batch_expired",
                "message": "This request could not be executed before the completion "
                "window expired.",
            }
        if unfinished is not None:
            failures.extend(
                _batch_line(str(line["custom_id"]), None, unfinished) for line in lines[done:]
            )
        if final == "cancelled" and not job.cancel.is_set():
            self._set_status(job, "cancelling")
        elif final == "completed":
            self._set_status(job, "finalizing")
        output_id = error_id = None
        batch_id = str(job.obj["id"])
        if outputs:
            output_id = self._store_file(
                f"{batch_id}_output.jsonl", "batch_output", b"".join(outputs)
            ).id
        if failures:
            error_id = self._store_file(
                f"{batch_id}_error.jsonl", "batch_output", b"".join(failures)
            ).id
        self._set_status(job, final, output_file_id=output_id, error_file_id=error_id)

    def _answer_batch_line(
        self, job: _BatchJob, number: int, line: dict[str, Any]
    ) -> tuple[bool, bytes]:
        """Answer one input line with the handler; return (success, output line)."""
        custom_id = str(line["custom_id"])
        endpoint: Endpoint = "chat" if line["url"] == "/v1/chat/completions" else "completions"
        body = line["body"]
        request_id = self._next_id()
        with self._lock:
            job.answered.append(custom_id)
        try:
            prompts = _prompts_of(endpoint, body)
        except _BadRequest as exc:
            return False, _batch_line(
                custom_id, _line_response(request_id, 400, _error_body(400, str(exc))), None
            )
        now = time.monotonic()
        records = [
            RecordedRequest(endpoint, body, p, {}, now, index=i, request_id=request_id)
            for i, p in enumerate(prompts)
        ]
        with self._lock:
            self._batch_requests.extend(records)
        refused = unsupported_error(body, self.refuse)
        if refused is not None:
            return False, _batch_line(custom_id, _line_response(request_id, 400, refused), None)
        fault = job.plan.line_faults.get(number)
        replies = (
            [fault] * len(records)
            if fault is not None
            else [self._call_handler(r) for r in records]
        )
        lead = next((r for r in replies if not r.ok), None)
        if lead is None:
            completion = _RequestHandler._completion(endpoint, request_id, body, records, replies)
            return True, _batch_line(custom_id, _line_response(request_id, 200, completion), None)
        status = 500 if lead.drop_connection or lead.status == 200 else lead.status
        message = lead.text or _DEFAULT_MESSAGES.get(status, "Test server error.")
        return False, _batch_line(
            custom_id, _line_response(request_id, status, _error_body(status, message)), None
        )


_BATCH_ENDPOINTS = ("/v1/completions", "/v1/chat/completions")
_FILE_PURPOSES = ("batch", "fine-tune", "assistants", "user_data")
_FILE_PATH = re.compile(r"/v1/files/([^/]+)")
_FILE_CONTENT_PATH = re.compile(r"/v1/files/([^/]+)/content")
_BATCH_PATH = re.compile(r"/v1/batches/([^/]+)")
_BATCH_CANCEL_PATH = re.compile(r"/v1/batches/([^/]+)/cancel")
# OpenAI's documented limit on the requests of one batch input file.
_MAX_BATCH_LINES = 50_000


@dataclass
class _StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def object(self) -> dict[str, Any]:
        """Return the file's FileObject as OpenAI serves it."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


@dataclass
class _BatchJob:
    obj: dict[str, Any]
    input: bytes
    plan: BatchPlan
    custom_ids: tuple[str, ...] = ()
    answered: list[str] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)

    def recorded(self) -> RecordedBatch:
        """Return an immutable snapshot for tests; the caller holds the server lock."""
        return RecordedBatch(
            id=str(self.obj["id"]),
            endpoint=str(self.obj["endpoint"]),
            input_file_id=str(self.obj["input_file_id"]),
            status=self.obj["status"],
            custom_ids=self.custom_ids,
            answered=tuple(self.answered),
            metadata=dict(self.obj["metadata"]),
            output_file_id=self.obj["output_file_id"],
            error_file_id=self.obj["error_file_id"],
        )


def _parse_batch_file(
    data: bytes, endpoint: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split a batch input file into its lines, or list what makes it invalid."""
    lines: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()

    def error(number: int, message: str, param: str | None = None) -> None:
        errors.append(
            {"code": "invalid_request", "message": message, "param": param, "line": number}
        )

    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            error(number, "The line is not valid JSON.")
            continue
        if not isinstance(line, dict):
            error(number, "The line must be a JSON object.")
            continue
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            error(number, "custom_id must be a non-empty string.", "custom_id")
        elif custom_id in seen:
            error(number, f"Duplicate custom_id {custom_id!r}.", "custom_id")
        else:
            seen.add(custom_id)
        if line.get("method") != "POST":
            error(number, "method must be POST.", "method")
        if line.get("url") != endpoint:
            error(number, f"url must match the batch endpoint {endpoint}.", "url")
        if not isinstance(line.get("body"), dict):
            error(number, "body must be a JSON object.", "body")
        lines.append(line)
    if not lines and not errors:
        errors.append(
            {
                "code": "empty_file",
                "message": "The input file has no requests.",
                "param": None,
                "line": None,
            }
        )
    if len(lines) > _MAX_BATCH_LINES:
        errors.append(
            {
                "code": "too_many_requests",
                "message": f"At most {_MAX_BATCH_LINES} requests per batch.",
                "param": None,
                "line": None,
            }
        )
    return lines, errors


def _line_response(request_id: int, status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"status_code": status, "request_id": f"req_test_{request_id}", "body": body}


def _batch_line(
    custom_id: str, response: dict[str, Any] | None, error: dict[str, Any] | None
) -> bytes:
    """Serialise one line of a batch output or error file, in OpenAI's shape."""
    line_id = (
        "batch_req_"
        + hashlib.sha256(f"{custom_id}:{time.monotonic_ns()}".encode()).hexdigest()[:24]
    )
    payload = {"id": line_id, "custom_id": custom_id, "response": response, "error": error}
    return json.dumps(payload).encode("utf-8") + b"\n"


def _prompts_of(endpoint: Endpoint, body: dict[str, Any]) -> list[str]:
    """Check a generation body and return its prompt texts (raise _BadRequest when invalid)."""
    if "model" not in body:
        raise _BadRequest("you must provide a model parameter")
    if body.get("stream"):
        raise _BadRequest("stream=true is not supported by the test server")
    if body.get("n", 1) != 1:
        raise _BadRequest("n>1 is not supported by the test server")
    if endpoint == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _BadRequest("'messages' must be a non-empty array")
        return ["\n\n".join(_message_text(m) for m in messages)]
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return list(prompt)
    raise _BadRequest("'prompt' must be a string or a non-empty array of strings")


def _multipart_fields(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Parse a multipart/form-data body into {field name: (file name, bytes)}."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise _BadRequest("Content-Type must be multipart/form-data")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise _BadRequest("the multipart body could not be parsed")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        fields[name] = (part.get_filename(), data)
    return fields


def _rate_limited_now() -> Reply:
    return Reply.rate_limited(0)


def _internal_error() -> Reply:
    return Reply.server_error(500)


def _unavailable() -> Reply:
    return Reply.server_error(503)


_RANDOM_FAULTS: tuple[Callable[[], Reply], ...] = (
    _rate_limited_now,
    _internal_error,
    _unavailable,
    Reply.dropped,
)


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


def _count_words(text: str) -> int:
    return len(text.split())


def _stop_sequences(value: object) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list):
        return [s for s in value if isinstance(s, str) and s]
    return []


def _shape_text(text: str, body: dict[str, Any], max_tokens: object) -> tuple[str, str]:
    """Cut ``text`` at the first stop sequence, then at ``max_tokens`` words."""
    cut = min(
        (i for s in _stop_sequences(body.get("stop")) if (i := text.find(s)) >= 0), default=-1
    )
    if cut >= 0:
        text = text[:cut]
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens >= 0:
        words = list(_WORD.finditer(text))
        if len(words) > max_tokens:
            end = words[max_tokens - 1].end() if max_tokens > 0 else 0
            return text[:end], "length"
    return text, "stop"


def _message_text(message: object) -> str:
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        # Content parts: keep the text ones, as a model would read them.
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _error_body(status: int, message: str) -> dict[str, Any]:
    kind, code = _ERROR_KINDS.get(status, ("server_error" if status >= 500 else "error", None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "unknown_url"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", None),
    503: ("server_error", None),
}

_DEFAULT_MESSAGES: dict[int, str] = {
    400: "Bad request.",
    401: "Incorrect API key provided.",
    404: "Not found.",
    429: "Rate limit reached for requests.",
    500: "The server had an error while processing your request.",
    502: "Bad gateway.",
    503: "The engine is currently overloaded, please try again later.",
}


class _BadRequest(Exception):
    """Signal a request the server answers with a 400."""


class _NotFound(Exception):
    """Signal a request for an object the server does not have (a 404)."""


class _HTTPServer(HTTPServer):
    """Spawn one daemon thread per connection and keep track of them for a clean stop."""

    # Many clients connect at once in concurrency tests; a short backlog would refuse them.
    request_queue_size = 1024
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: OpenAITestServer) -> None:
        self.owner = owner
        self._workers: set[threading.Thread] = set()
        self._connections: set[socket.socket] = set()
        self._track_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the FQDN, which can stall on hosts without DNS.
        super(HTTPServer, self).server_bind()
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._work,
            args=(request, client_address),
            name=f"openai-test-server:{self.server_port}:conn",
            daemon=True,
        )
        with self._track_lock:
            self._workers.add(thread)
            self._connections.add(request)
        thread.start()

    def _work(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            # A client that vanishes mid-request is routine in fault tests, not an error.
            pass
        finally:
            self.shutdown_request(request)
            with self._track_lock:
                self._connections.discard(request)
                self._workers.discard(threading.current_thread())

    def abort_connections(self) -> None:
        """Shut down every open connection so workers blocked on reads return."""
        with self._track_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def join_workers(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds in all for connection threads to finish."""
        deadline = time.monotonic() + timeout
        with self._track_lock:
            workers = list(self._workers)
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))


class _RequestHandler(BaseHTTPRequestHandler):
    """Translate HTTP requests to handler calls and replies to OpenAI-shaped responses."""

    protocol_version = "HTTP/1.1"
    server_version = "selfinstruct-openai-test/1.0"
    # Headers and body go out in separate writes; without this Nagle's algorithm and
    # delayed ACKs can add ~40 ms to every keep-alive response.
    disable_nagle_algorithm = True
    server: _HTTPServer

    # -- plumbing ----------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        # Tests run thousands of requests; access logs would only be noise on stderr.
        return

    @property
    def owner(self) -> OpenAITestServer:
        return self.server.owner

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/")

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        extra = dict(headers or {})
        lowered = {k.lower() for k in extra}
        if "content-type" not in lowered:
            self.send_header("Content-Type", _JSON)
        for name, value in extra.items():
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_json(
        self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        self._send(status, json.dumps(payload).encode("utf-8"), headers)

    def _send_error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send_json(status, _error_body(status, message), headers)

    def _authorised(self) -> bool:
        key = self.owner.api_key
        if key is None:
            return True
        return self.headers.get("Authorization", "") == f"Bearer {key}"

    def _not_found(self) -> None:
        self._read_body()
        self._send_error(404, f"Invalid URL ({self.command} {self.path})")

    def _unauthorised(self) -> None:
        self._read_body()
        self._send_error(
            401,
            "Incorrect API key provided. You can find your API key in your test fixture.",
        )

    # http.server dispatches on do_<METHOD>; other methods get OpenAI's 404, not a 501.
    do_PUT = _not_found
    do_PATCH = _not_found

    def do_DELETE(self) -> None:
        path = self._path()
        if not self._authorised():
            self._unauthorised()
        elif (m := _FILE_PATH.fullmatch(path)) is not None:
            self._read_body()
            if self.owner._delete_file(m.group(1)):
                self._send_json(200, {"id": m.group(1), "object": "file", "deleted": True})
            else:
                self._send_error(404, f"No such File object: {m.group(1)}")
        else:
            self._not_found()

    # -- routes ------------------------------------------------------------------------

    def do_GET(self) -> None:
        if not self._authorised():
            self._unauthorised()
        elif self._path() == "/v1/models":
            created = int(time.time())
            data = [
                {"id": m, "object": "model", "created": created, "owned_by": "selfinstruct-test"}
                for m in self.owner.models
            ]
            self._send_json(200, {"object": "list", "data": data})
        elif self._path().startswith(("/v1/files", "/v1/batches")):
            self._get_object(self._path())
        else:
            self._not_found()

    def _get_object(self, path: str) -> None:
        """Serve a file, a file's content, a batch, or the list of batches."""
        owner = self.owner
        self._read_body()
        if (m := _FILE_PATH.fullmatch(path)) is not None:
            stored = owner._get_file(m.group(1))
            if stored is None:
                self._send_error(404, f"No such File object: {m.group(1)}")
            else:
                self._send_json(200, stored.object())
        elif (m := _FILE_CONTENT_PATH.fullmatch(path)) is not None:
            stored = owner._get_file(m.group(1))
            if stored is None:
                self._send_error(404, f"No such File object: {m.group(1)}")
            else:
                self._send(200, stored.data, {"Content-Type": "application/octet-stream"})
        elif (m := _BATCH_PATH.fullmatch(path)) is not None:
            batch = owner._batch_object(m.group(1))
            if batch is None:
                self._send_error(404, f"No batch found with id '{m.group(1)}'.")
            else:
                self._send_json(200, batch)
        elif path == "/v1/batches":
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            after = query.get("after", [None])[0]
            try:
                limit = int(query.get("limit", ["20"])[0])
            except ValueError:
                self._send_error(400, "limit must be an integer")
                return
            self._send_json(200, owner._list_batches(after, max(1, min(limit, 100))))
        else:
            self._send_error(404, f"Invalid URL ({self.command} {self.path})")

    def do_POST(self) -> None:
        routes: dict[str, Endpoint] = {
            "/v1/completions": "completions",
            "/v1/chat/completions": "chat",
        }
        path = self._path()
        endpoint = routes.get(path)
        if not self._authorised():
            self._unauthorised()
        elif endpoint is not None:
            self._generate(endpoint)
        elif path in ("/v1/files", "/v1/batches") or _BATCH_CANCEL_PATH.fullmatch(path):
            self._post_object(path)
        else:
            self._not_found()

    def _post_object(self, path: str) -> None:
        """Upload a file, create a batch, or cancel one."""
        owner = self.owner
        raw = self._read_body()
        try:
            if path == "/v1/files":
                fields = _multipart_fields(self.headers.get("Content-Type", ""), raw)
                purpose = fields.get("purpose", (None, b""))[1].decode("utf-8", "replace")
                filename, data = fields.get("file", (None, b""))
                if "file" not in fields:
                    raise _BadRequest("a 'file' field is required")
                if purpose not in _FILE_PURPOSES:
                    raise _BadRequest(f"purpose must be one of {', '.join(_FILE_PURPOSES)}")
                stored = owner._store_file(filename or "upload", purpose, data)
                self._send_json(200, stored.object())
            elif path == "/v1/batches":
                try:
                    body = json.loads(raw or b"null")
                except (ValueError, UnicodeDecodeError) as exc:
                    raise _BadRequest(f"We could not parse the JSON body: {exc}") from exc
                if not isinstance(body, dict):
                    raise _BadRequest("The request body must be a JSON object.")
                created = owner._create_batch(body)
                if owner._batch_plan(str(created["id"])).drop_create_reply:
                    self.close_connection = True
                    return
                self._send_json(200, created)
            else:
                m = _BATCH_CANCEL_PATH.fullmatch(path)
                assert m is not None
                batch = owner._cancel_batch(m.group(1))
                if batch is None:
                    raise _NotFound(f"No batch found with id '{m.group(1)}'.")
                self._send_json(200, batch)
        except _BadRequest as exc:
            self._send_error(400, str(exc))
        except _NotFound as exc:
            self._send_error(404, str(exc))

    # -- generation --------------------------------------------------------------------

    def _parse(self, endpoint: Endpoint) -> tuple[dict[str, Any], list[str]]:
        raw = self._read_body()
        try:
            body = json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise _BadRequest(f"We could not parse the JSON body of your request: {exc}") from exc
        if not isinstance(body, dict):
            raise _BadRequest("The request body must be a JSON object.")
        return body, _prompts_of(endpoint, body)

    def _generate(self, endpoint: Endpoint) -> None:
        owner = self.owner
        try:
            body, prompts = self._parse(endpoint)
        except _BadRequest as exc:
            self._send_error(400, str(exc))
            return
        request_id = owner._next_id()
        now = time.monotonic()
        headers = {k.lower(): v for k, v in self.headers.items()}
        records = [
            RecordedRequest(endpoint, body, p, headers, now, index=i, request_id=request_id)
            for i, p in enumerate(prompts)
        ]
        owner._record(records)
        refused = unsupported_error(body, owner.refuse)
        if refused is not None:
            owner._note_outcome(records, [Reply(status=400)] * len(records))
            self._send_json(400, refused)
            return

        if not owner._admit():
            owner._note_rejected(records)
            busy = Reply.rate_limited(_CAPACITY_RETRY_AFTER)
            message = f"Server at capacity ({owner.capacity} requests in flight)."
            self._send_error(429, message, busy.headers)
            return
        try:
            fault = owner._scripted_fault()
            replies = (
                [fault] * len(records)
                if fault is not None
                else [owner._call_handler(r) for r in records]
            )
            owner._sleep(max(r.delay for r in replies))
            if owner._stopping.is_set():
                # Stopping cut the delay short; answering now would hand the client a reply
                # it was meant to wait for, so abort the request the way a dying server would.
                self.close_connection = True
                return
            owner._note_outcome(records, replies)
            self._respond(endpoint, request_id, body, records, replies)
        finally:
            owner._release()

    def _respond(
        self,
        endpoint: Endpoint,
        request_id: int,
        body: dict[str, Any],
        records: list[RecordedRequest],
        replies: list[Reply],
    ) -> None:
        # One HTTP response carries the whole batch, so the first failing reply decides it.
        lead = next((r for r in replies if not r.ok), replies[0])
        headers = {k: v for r in replies for k, v in r.headers.items()}
        if lead.reset_connection:
            # Linger 0: close() sends RST at once, as a crashed peer or a middlebox does.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if lead.drop_connection:
            self.close_connection = True
            return
        if lead.raw_body is not None:
            self._send(lead.status, lead.raw_body, headers)
            return
        if lead.status != 200:
            message = lead.text or _DEFAULT_MESSAGES.get(lead.status, "Test server error.")
            self._send_error(lead.status, message, headers)
            return
        self._send_json(
            200, self._completion(endpoint, request_id, body, records, replies), headers
        )

    @staticmethod
    def _completion(
        endpoint: Endpoint,
        request_id: int,
        body: dict[str, Any],
        records: list[RecordedRequest],
        replies: list[Reply],
    ) -> dict[str, Any]:
        if endpoint == "chat":
            max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        else:
            max_tokens = body.get("max_tokens")
        choices: list[dict[str, Any]] = []
        prompt_tokens = completion_tokens = 0
        reasoning_tokens: int | None = None
        for record, reply in zip(records, replies, strict=True):
            # Reasoning comes first and spends the token limit first, as with OpenAI's
            # max_completion_tokens: past it, the answer is empty and cut ("length").
            thought = (
                reply.reasoning_tokens
                if reply.reasoning_tokens is not None
                else _count_words(reply.reasoning or "")
            )
            limit = max_tokens if isinstance(max_tokens, int) else None
            reasoning = reply.reasoning
            if reply.finish_reason is not None:
                text, finish = reply.text, reply.finish_reason
            elif limit is not None and thought and thought >= limit:
                # The limit ran out while thinking: the reasoning stops there, no answer.
                text, finish, thought = "", "length", limit
                if reasoning is not None:
                    reasoning = " ".join(reasoning.split()[:limit])
            else:
                left = limit - thought if limit is not None and thought else max_tokens
                text, finish = _shape_text(reply.text, body, left)
            if reply.prompt_tokens is not None:
                prompt_tokens += reply.prompt_tokens
            else:
                prompt_tokens += _count_words(record.prompt)
            if reply.completion_tokens is not None:
                completion_tokens += reply.completion_tokens
            else:
                completion_tokens += _count_words(text) + thought
            if reply.reasoning_tokens is not None:
                reasoning_tokens = (reasoning_tokens or 0) + thought
            extra = {} if reasoning is None else {reply.reasoning_field: reasoning}
            if endpoint == "chat":
                message = {"role": "assistant", "content": text, "refusal": None, **extra}
                choices.append(
                    {
                        "index": record.index,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": finish,
                    }
                )
            else:
                choices.append(
                    {
                        "text": text,
                        "index": record.index,
                        "logprobs": None,
                        "finish_reason": finish,
                        **extra,
                    }
                )
        details: dict[str, Any] = {}
        if reasoning_tokens is not None:
            details["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
        return {
            "id": f"{'chatcmpl' if endpoint == 'chat' else 'cmpl'}-test-{request_id}",
            "object": "chat.completion" if endpoint == "chat" else "text_completion",
            "created": int(time.time()),
            "model": str(body.get("model", "")),
            "system_fingerprint": None,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                **details,
            },
        }


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the test API from the command line until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m selfinstruct.testing.server",
        description="Serve a loopback OpenAI-compatible API for tests and local runs.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--capacity", type=int, default=None, help="max concurrent requests")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of random faults")
    parser.add_argument("--fault-seed", type=int, default=0)
    parser.add_argument("--api-key", default=None, help="require this bearer token")
    parser.add_argument(
        "--batch-delay", type=float, default=0.0, help="seconds a batch takes to process"
    )
    parser.add_argument(
        "--handler",
        default=None,
        metavar="MODULE:FACTORY",
        help="import FACTORY from MODULE and serve the handler that FACTORY() returns",
    )
    parser.add_argument(
        "--refuse-like-reasoning-models",
        action="store_true",
        help="answer HTTP 400 to max_tokens, temperature, top_p, penalties, stop and seed, "
        "as OpenAI's reasoning models do",
    )
    args = parser.parse_args(argv)
    handler = load_handler(args.handler) if args.handler else None
    server = OpenAITestServer(
        handler,
        capacity=args.capacity,
        fault_rate=args.fault_rate,
        fault_seed=args.fault_seed,
        api_key=args.api_key,
        host=args.host,
        port=args.port,
        batch_delay=args.batch_delay,
        refuse=REASONING_MODEL_REFUSES if args.refuse_like_reasoning_models else (),
    )
    # SIGTERM (e.g. from a supervising script) should stop as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    with server:
        print(f"Serving OpenAI-compatible test API at {server.base_url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    stats = server.stats()
    print(
        f"Stopped after {stats.requests} requests ({stats.answered} answered).",
        file=sys.stderr,
        flush=True,
    )
    return 0


if __name__ == "__main__":
    # Run the canonical module rather than this __main__ copy, so handlers imported by
    # path build the same Reply class the server inspects.
    from selfinstruct.testing.server import main as _canonical_main

    raise SystemExit(_canonical_main())
