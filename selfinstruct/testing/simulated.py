"""Simulated teachers of three kinds, for the loopback server's tests and benchmarks.

Each wraps a handler (the synthetic teacher, say) whose replies carry a service time in
``Reply.delay``, and behaves like one kind of real server:

- :func:`refusing_server` -- at most K requests at once, an instant HTTP 429 beyond (the
  loopback server's ``capacity``); like a gateway in front of a fixed pool.
- :class:`QueueingTeacher` -- K slots and a FIFO queue in front of them, never a refusal:
  latency grows with the queue, as with ``vllm serve`` or llama.cpp's server.
- :class:`RateLimitedTeacher` -- requests and tokens per minute, stated in OpenAI's
  ``x-ratelimit-*`` headers on every answer and refused with 429 and ``Retry-After`` when
  spent (platform.openai.com/docs/guides/rate-limits).

Each keeps its own figures (busy slot-seconds, queue waits, refusals) for the assertions
and for ``benchmarks/throughput.py``.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, replace

from selfinstruct.testing.server import Handler, OpenAITestServer, RecordedRequest, Reply

__all__ = [
    "QueueingTeacher",
    "RateLimitedTeacher",
    "format_duration",
    "refusing_server",
]


def refusing_server(handler: Handler, capacity: int) -> OpenAITestServer:
    """Return (unstarted) a loopback server that answers 429 at once beyond `capacity`."""
    return OpenAITestServer(handler, capacity=capacity, history=0)


@dataclass(frozen=True)
class Sojourn:
    """One request's time in a queueing server: waiting for a slot, then being served."""

    wait: float
    service: float


class QueueingTeacher:
    """Serve `slots` requests at once, first come first served; the rest wait in line.

    Call it as the loopback server's handler (one thread per connection). The wrapped
    handler's ``delay`` is the service time, spent here holding a slot; the reply goes out
    with no further delay. :meth:`close` releases every waiter (call it before the server
    stops, or let the server's stop time out its threads).
    """

    def __init__(self, handler: Handler, slots: int) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.handler = handler
        self.slots = slots
        self._cond = threading.Condition()
        self._closed = threading.Event()
        self._next_ticket = 0
        self._serving_ticket = 0  # the next ticket let into a slot
        self._busy = 0
        self._waiting = 0
        self.peak_waiting = 0
        self._busy_seconds = 0.0  # integral of busy slots over time (service only)
        self._last_change = time.monotonic()
        self.sojourns: list[Sojourn] = []

    @property
    def waiting(self) -> int:
        """Return how many requests wait in the queue now."""
        with self._cond:
            return self._waiting

    @property
    def serving(self) -> int:
        """Return how many requests hold a slot now."""
        with self._cond:
            return self._busy

    @property
    def busy_seconds(self) -> float:
        """Return busy slot-seconds so far: the integral of slots serving over time."""
        with self._cond:
            self._account()
            return self._busy_seconds

    def _account(self) -> None:  # caller holds the lock
        now = time.monotonic()
        self._busy_seconds += self._busy * (now - self._last_change)
        self._last_change = now

    def __call__(self, request: RecordedRequest) -> Reply:
        reply = self.handler(request)
        arrived = time.monotonic()
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._waiting += 1
            self.peak_waiting = max(self.peak_waiting, self._waiting)
            while not (ticket == self._serving_ticket and self._busy < self.slots):
                if self._closed.is_set():
                    return Reply.dropped()
                self._cond.wait(0.5)  # woken by notify_all; the timeout only checks close()
            self._serving_ticket += 1
            self._waiting -= 1
            self._account()
            self._busy += 1
            self._cond.notify_all()  # the next ticket may take another free slot
        started = time.monotonic()
        try:
            self._closed.wait(reply.delay)
        finally:
            with self._cond:
                self._account()
                self._busy -= 1
                self.sojourns.append(Sojourn(started - arrived, time.monotonic() - started))
                self._cond.notify_all()
        return replace(reply, delay=0.0)

    def close(self) -> None:
        """Release every waiting and serving request (they are dropped)."""
        self._closed.set()
        with self._cond:
            self._cond.notify_all()


def format_duration(seconds: float) -> str:
    """Write seconds the way OpenAI's reset headers do: "20ms", "1.5s", "6m0s", "1h2m3s"."""
    if seconds < 1.0:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    hours, rest = divmod(seconds, 3600.0)
    minutes, secs = divmod(rest, 60.0)
    text = f"{secs:.3f}".rstrip("0").rstrip(".") + "s"
    if minutes or hours:
        text = f"{int(minutes)}m" + text
    if hours:
        text = f"{int(hours)}h" + text
    return text


@dataclass
class _Bucket:
    limit: float
    level: float


class RateLimitedTeacher:
    """Admit requests within requests- and tokens-per-`period` limits, as OpenAI does.

    Both limits refill continuously (`limit` per `period` seconds). A request costs one
    request and its prompt's estimated tokens (characters / 4) plus ``max_tokens``,
    counted when it is admitted. Every answer carries the ``x-ratelimit-*`` headers; a
    request the limits do not cover is refused at once with 429, the headers and
    ``Retry-After`` (seconds until it would be covered).
    """

    def __init__(
        self,
        handler: Handler,
        *,
        requests: int,
        tokens: int,
        period: float = 60.0,
    ) -> None:
        if requests < 1 or tokens < 1 or period <= 0:
            raise ValueError("limits and period must be positive")
        self.handler = handler
        self.period = period
        self._lock = threading.Lock()
        self._requests = _Bucket(float(requests), float(requests))
        self._tokens = _Bucket(float(tokens), float(tokens))
        self._last = time.monotonic()
        self.admitted = 0
        self.admitted_tokens = 0  # what the admitted requests counted against the limit
        self.refused = 0
        self.lowest_remaining = (float(requests), float(tokens))

    @staticmethod
    def cost(request: RecordedRequest) -> int:
        """Return the tokens a request counts against the limit when admitted."""
        max_tokens = request.body.get("max_tokens") or request.body.get("max_completion_tokens")
        return len(request.prompt) // 4 + (max_tokens if isinstance(max_tokens, int) else 16)

    def _refill(self) -> None:  # caller holds the lock
        now = time.monotonic()
        for bucket in (self._requests, self._tokens):
            bucket.level = min(
                bucket.limit, bucket.level + bucket.limit * (now - self._last) / self.period
            )
        self._last = now

    def _headers(self) -> dict[str, str]:  # caller holds the lock
        headers = {}
        for name, bucket in (("requests", self._requests), ("tokens", self._tokens)):
            full_in = (bucket.limit - bucket.level) * self.period / bucket.limit
            headers[f"x-ratelimit-limit-{name}"] = str(int(bucket.limit))
            headers[f"x-ratelimit-remaining-{name}"] = str(int(bucket.level))
            headers[f"x-ratelimit-reset-{name}"] = format_duration(full_in)
        return headers

    def __call__(self, request: RecordedRequest) -> Reply:
        cost = self.cost(request)
        with self._lock:
            self._refill()
            short = max(0.0, 1.0 - self._requests.level), max(0.0, cost - self._tokens.level)
            if short[0] > 0 or short[1] > 0:
                self.refused += 1
                after = max(
                    short[0] * self.period / self._requests.limit,
                    short[1] * self.period / self._tokens.limit,
                )
                headers = {**self._headers(), "Retry-After": f"{after:.3f}"}
                return Reply(text="Rate limit reached (simulated).", status=429, headers=headers)
            self._requests.level -= 1.0
            self._tokens.level -= cost
            self.admitted += 1
            self.admitted_tokens += cost
            self.lowest_remaining = (
                min(self.lowest_remaining[0], self._requests.level),
                min(self.lowest_remaining[1], self._tokens.level),
            )
            headers = self._headers()
        reply = self.handler(request)
        return replace(reply, headers={**reply.headers, **headers})
