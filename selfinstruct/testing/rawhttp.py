"""A loopback TCP server that answers HTTP requests with scripted bytes, for hostile tests.

OpenAITestServer speaks correct HTTP; this one speaks whatever a test scripts: a bad status
line, a bad chunk size, an oversized header, a body trickled one byte at a time, a redirect.
Each request is read (headers and a Content-Length body), recorded, and answered with the
`RawReply` that `script(index, request)` returns; the connection is then closed, so every
request arrives on a fresh connection and the script sees them in order.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

# Requests bigger than this are not ours: a test prompt is a few kilobytes.
MAX_REQUEST = 4 * 1024 * 1024
SOCKET_TIMEOUT = 30.0  # seconds a stalled client may hold a handler thread


@dataclass(frozen=True)
class RawRequest:
    """One request as the server read it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """Return the body parsed as JSON (None when it is not JSON)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass(frozen=True)
class RawReply:
    """The bytes to send back, and how: all at once, or `trickle` seconds between bytes."""

    data: bytes
    trickle: float = 0.0


Script = Callable[[int, RawRequest], RawReply]


def http_response(
    status: int, body: bytes, *, reason: str = "X", headers: dict[str, str] | None = None
) -> bytes:
    """Return a well-formed HTTP/1.1 JSON response with a Content-Length; the connection closes."""
    lines = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode() + body


def completion_body(
    request: RawRequest, text: str, *, usage: object = "count", finish_reason: str = "stop"
) -> bytes:
    """Return the JSON body of a (chat) completion answering `request` with `text`.

    `usage` is sent as given, except "count": word counts of the prompt and the text.
    """
    chat = request.path.endswith("/chat/completions")
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish_reason}
    if chat:
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    data: dict[str, Any] = {
        "id": "raw-1",
        "object": "chat.completion" if chat else "text_completion",
        "created": 0,
        "model": "test-model",
        "choices": [choice],
    }
    if usage == "count":
        body = request.json() or {}
        prompt = str(body.get("prompt") or body.get("messages") or "")
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}
    if usage is not None:
        data["usage"] = usage
    return json.dumps(data).encode()


def models_body() -> bytes:
    """Return the JSON body of GET /models listing one model."""
    return json.dumps(
        {"object": "list", "data": [{"id": "test-model", "object": "model"}]}
    ).encode()


class RawHTTPServer:
    """Serve `script` on 127.0.0.1 in background threads; a context manager.

    GET requests (the client's /models preflight) are answered with one model unless
    `script_gets` is set, so scripts deal with completions only.
    """

    def __init__(self, script: Script, *, script_gets: bool = False) -> None:
        self.script = script
        self.script_gets = script_gets
        self.requests: list[RawRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="rawhttp", daemon=True)

    @property
    def base_url(self) -> str:
        """Return the URL to pass as --base-url."""
        return f"http://127.0.0.1:{self.port}/v1"

    def completions(self) -> list[RawRequest]:
        """Return the POST requests received so far."""
        with self._lock:
            return [r for r in self.requests if r.method == "POST"]

    def __enter__(self) -> RawHTTPServer:
        self._acceptor.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        self._acceptor.join(timeout=5)
        for thread in list(self._threads):
            thread.join(timeout=5)
        self._sock.close()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(SOCKET_TIMEOUT)
            try:
                request = self._read(conn)
                if request is None:
                    return
                with self._lock:
                    self.requests.append(request)
                    index = sum(r.method == "POST" for r in self.requests) - 1
                if request.method == "GET" and not self.script_gets:
                    reply = RawReply(http_response(200, models_body()))
                else:
                    reply = self.script(index, request)
                self._send(conn, reply)
            except OSError:
                pass  # the client gave up (a timeout on its side): that is the point

    def _send(self, conn: socket.socket, reply: RawReply) -> None:
        if reply.trickle <= 0:
            conn.sendall(reply.data)
            return
        for i in range(len(reply.data)):
            if self._stopping.is_set():
                return
            conn.sendall(reply.data[i : i + 1])
            time.sleep(reply.trickle)

    @staticmethod
    def _read(conn: socket.socket) -> RawRequest | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk or len(data) > MAX_REQUEST:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, *_ = request_line.split(" ")
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        while len(body) < min(length, MAX_REQUEST):
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        return RawRequest(method, path, headers, body)


def good(text: str = "fine") -> Script:
    """Return a script that answers every request well with `text`."""

    def script(index: int, request: RawRequest) -> RawReply:
        return RawReply(http_response(200, completion_body(request, text)))

    return script


def proxy_to(base_url: str, transform: Callable[[dict[str, Any]], Any] | None = None) -> Script:
    """Return a script that forwards each request to a real server and relays its answer.

    With `transform`, a JSON answer is passed through it (it may change the dict in
    place, or return bytes to send instead), to make a good teacher misbehave selectively.
    """
    target = urlsplit(base_url)

    def script(index: int, request: RawRequest) -> RawReply:
        conn = http.client.HTTPConnection(target.hostname or "", target.port, timeout=60)
        try:
            headers = {k: v for k, v in request.headers.items() if k not in ("host",)}
            conn.request(request.method, request.path, body=request.body, headers=headers)
            answer = conn.getresponse()
            status, body = answer.status, answer.read()
        finally:
            conn.close()
        if transform is not None and status == 200:
            data = json.loads(body)
            changed = transform(data)
            body = changed if isinstance(changed, bytes) else json.dumps(data).encode()
        return RawReply(http_response(status, body))

    return script


def faulty_first(fault: bytes, times: int, then: Script) -> Script:
    """Return a script that sends `fault` to the first `times` requests, then defers to `then`."""

    def script(index: int, request: RawRequest) -> RawReply:
        if index < times:
            return RawReply(fault)
        return then(index, request)

    return script


def faulty_once(faults: list[bytes], every: int, then: Script) -> Script:
    """Return a script that faults the first attempt of one request in `every`, then heals.

    Which requests fault depends on their bodies alone (not on arrival order), and each
    faults once, so a client that retries always gets through; the faults cycle.
    """
    seen: set[bytes] = set()
    lock = threading.Lock()

    def script(index: int, request: RawRequest) -> RawReply:
        digest = hashlib.sha256(request.body).digest()
        with lock:
            first = digest not in seen
            seen.add(digest)
        if first and digest[0] % every == 0:
            return RawReply(faults[digest[1] % len(faults)])
        return then(index, request)

    return script


# Malformed answers of the kinds proxies and broken servers send, by name.
MALFORMED: dict[str, bytes] = {
    "bad-status-line": b"HTTP/1.1 OK-ish\r\nContent-Length: 2\r\n\r\n{}",
    "garbage": b"\x00\x01\x02 not http at all\r\n\r\n",
    "bad-chunk-size": (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        b"\r\nzz\r\n{}\r\n0\r\n\r\n"
    ),
    "oversized-header": (
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200_000 + b"\r\nContent-Length: 2\r\n\r\n{}"
    ),
    "truncated-body": (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n"
        b'Connection: close\r\n\r\n{"choices": ['
    ),
}
