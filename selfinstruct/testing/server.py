"""Serve a loopback OpenAI-compatible API for tests, over real HTTP/1.1.

The server speaks just enough of the OpenAI REST API (``/v1/completions``,
``/v1/chat/completions``, ``/v1/models``) for the real ``openai`` client to talk to it.
What it answers is decided by a *handler* (a plain function of the recorded request),
optionally preceded by scripted faults (:meth:`OpenAITestServer.push_faults`), seeded
random faults (``fault_rate``) and a concurrency cap (``capacity``).

Run it by hand with ``python -m selfinstruct.testing.server --port 8000``.
"""

from __future__ import annotations

import argparse
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
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import FrameType
from typing import Any, Literal

__all__ = [
    "Endpoint",
    "Handler",
    "OpenAITestServer",
    "RecordedRequest",
    "Reply",
    "ServerStats",
    "echo_handler",
    "echo_text",
    "load_handler",
    "main",
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
        history: int | None = None,
    ) -> None:
        if capacity is not None and capacity < 1:
            raise ValueError("capacity must be at least 1")
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError("fault_rate must be within [0, 1]")
        self.handler: Handler = handler if handler is not None else echo_handler
        self.capacity = capacity
        self.fault_rate = fault_rate
        self.api_key = api_key
        self.models = tuple(models)
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
    do_DELETE = _not_found

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
        else:
            self._not_found()

    def do_POST(self) -> None:
        routes: dict[str, Endpoint] = {
            "/v1/completions": "completions",
            "/v1/chat/completions": "chat",
        }
        endpoint = routes.get(self._path())
        if not self._authorised():
            self._unauthorised()
        elif endpoint is None:
            self._not_found()
        else:
            self._generate(endpoint)

    # -- generation --------------------------------------------------------------------

    def _parse(self, endpoint: Endpoint) -> tuple[dict[str, Any], list[str]]:
        raw = self._read_body()
        try:
            body = json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise _BadRequest(f"We could not parse the JSON body of your request: {exc}") from exc
        if not isinstance(body, dict):
            raise _BadRequest("The request body must be a JSON object.")
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
            return body, ["\n\n".join(_message_text(m) for m in messages)]
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            return body, [prompt]
        if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            return body, list(prompt)
        raise _BadRequest("'prompt' must be a string or a non-empty array of strings")

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

    def _completion(
        self,
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
        for record, reply in zip(records, replies, strict=True):
            if reply.finish_reason is not None:
                text, finish = reply.text, reply.finish_reason
            else:
                text, finish = _shape_text(reply.text, body, max_tokens)
            if reply.prompt_tokens is not None:
                prompt_tokens += reply.prompt_tokens
            else:
                prompt_tokens += _count_words(record.prompt)
            if reply.completion_tokens is not None:
                completion_tokens += reply.completion_tokens
            else:
                completion_tokens += _count_words(text)
            if endpoint == "chat":
                message = {"role": "assistant", "content": text, "refusal": None}
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
                    {"text": text, "index": record.index, "logprobs": None, "finish_reason": finish}
                )
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
        "--handler",
        default=None,
        metavar="MODULE:FACTORY",
        help="import FACTORY from MODULE and serve the handler that FACTORY() returns",
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
