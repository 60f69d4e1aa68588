"""How many teacher requests to keep in flight: a fixed number, or one found by probing.

:class:`AdaptiveLimit` finds a server's capacity the way TCP finds a link's: it starts
small, doubles each round trip while the server keeps up ("slow start"), and after the
first sign of overload grows by one request per round trip ("congestion avoidance").
After a decrease it first closes half the gap to where refusals began each round trip
(TCP CUBIC's fast return to the last maximum), so the limit spends its time near the
capacity rather than climbing back to it one request at a time.
Overload is an HTTP 429, or latency far above what the same kind of request took
before (a batching server such as vLLM slows down before it refuses). On overload the
limit drops to a fraction of what was in flight when the refused request was sent, at
most once per round trip, and by one more for each further refusal of the same burst.

The limits are plain objects fed with events, so their behaviour is a table of cases
in the tests; the clock is passed in for the same reason.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

# Multiplicative decrease on a 429. TCP Reno halves; a server that says where its capacity
# is (429 beyond K requests) needs far less, and a small step keeps the average close to
# the capacity (the sawtooth averages ~ (1 + BACKOFF) / 2 of it).
BACKOFF = 0.95
# Rising latency is a vaguer signal (it may be the requests, not the load): step further.
LATENCY_BACKOFF = 0.8
# Latency this many times the running mean for the same kind of request means queueing.
LATENCY_TOLERANCE = 2.0
# Weight of a new sample in the running mean latency of a request kind (~50 samples).
LATENCY_WEIGHT = 0.02
# Weight of a new sample in the recent latency ratio (~10 samples): reacts within a burst.
RATIO_WEIGHT = 0.1
# Grow only while this share of the limit is in use: an idle limit proves nothing.
DEMAND_SHARE = 0.5
# After a decrease, the share of the gap to the limit before it closed per round trip.
RECOVERY = 0.5


class ConcurrencyLimit:
    """A fixed number of requests in flight; the base of the adaptive limit."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._limit = float(limit)

    @property
    def limit(self) -> int:
        """Return how many requests may be in flight now."""
        return max(1, int(self._limit))

    @property
    def adaptive(self) -> bool:
        """Say whether the limit moves with the server's answers."""
        return False

    def on_success(self, kind: str, latency: float, in_flight: int) -> None:
        """Learn from a request answered after `latency` s with `in_flight` others out."""

    def on_overload(self, sent_at: float, in_flight: int) -> None:
        """Learn from a request refused for overload (HTTP 429) that was sent at `sent_at`."""

    def describe(self) -> str:
        """Say in a few words how the limit is chosen."""
        return f"{self.limit} requests in flight"


@dataclass
class _Kind:
    mean: float  # running mean latency of this kind of request
    ratio: float = 1.0  # recent latency / mean


class AdaptiveLimit(ConcurrencyLimit):
    """Probe for the server's capacity: slow start, then additive increase, backing off."""

    def __init__(
        self,
        initial: int = 8,
        maximum: int = 1024,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= initial <= maximum:
            raise ValueError("need 1 <= initial <= maximum")
        super().__init__(initial)
        self.maximum = maximum
        self.slow_start = True
        self.decreases = 0
        self._clock = clock
        self._kinds: dict[str, _Kind] = {}
        self._last_decrease = float("-inf")
        self._round_trip: float | None = None  # seconds, from the answers
        self._before_decrease = 0.0  # where the last decrease came down from

    @property
    def adaptive(self) -> bool:
        """Say that this limit moves with the server's answers."""
        return True

    def on_success(self, kind: str, latency: float, in_flight: int) -> None:
        """Grow while there is demand; back off when latency says the server is queueing."""
        if self._round_trip is None:
            self._round_trip = latency
        self._round_trip += RATIO_WEIGHT * (latency - self._round_trip)
        stats = self._kinds.get(kind)
        if stats is None:
            self._kinds[kind] = _Kind(mean=latency)
        else:
            ratio = latency / stats.mean if stats.mean > 0 else 1.0
            stats.ratio += RATIO_WEIGHT * (ratio - stats.ratio)
            stats.mean += LATENCY_WEIGHT * (latency - stats.mean)
            if stats.ratio > LATENCY_TOLERANCE:
                stats.ratio = 1.0  # judge the next round trip afresh
                self._decrease(self._limit, LATENCY_BACKOFF)
                return
        if in_flight + 1 < DEMAND_SHARE * self._limit:
            return
        # +1 per answer doubles the limit each round trip; +g/limit adds g per round trip:
        # half the way back to the last maximum, and at least one request.
        if self.slow_start:
            step = 1.0
        else:
            gap = self._before_decrease - self._limit
            step = max(1.0, RECOVERY * gap) / self._limit
        self._limit = min(float(self.maximum), self._limit + step)

    def on_overload(self, sent_at: float, in_flight: int) -> None:
        """Drop below what was in flight once per round trip; then one per further refusal.

        The first refusal of a burst scales the limit down; each other refusal of the same
        burst is one more request than the server takes, so it takes one off. A small
        overshoot near the capacity costs a few requests; a limit far above it (a slow
        start that overshot) comes down to it within one burst, before retries run out.
        """
        if sent_at < self._last_decrease or not self._decrease(
            min(self._limit, float(in_flight)), BACKOFF
        ):
            self._limit = max(1.0, self._limit - 1.0)
            # ... and the level to return to is one lower too: where refusals began.
            self._before_decrease = max(1.0, self._before_decrease - 1.0)

    def _decrease(self, base: float, factor: float) -> bool:
        now = self._clock()
        if now - self._last_decrease < (self._round_trip or 0.0):
            return False
        self._last_decrease = now
        self.slow_start = False
        self.decreases += 1
        self._before_decrease = base
        self._limit = max(1.0, base * factor)
        return True

    def describe(self) -> str:
        """Say that the limit is found by probing, and where it stands."""
        return f"adaptive, now {self.limit} (at most {self.maximum})"


class PriorityGate:
    """Let at most `capacity()` holders in at once, lowest key first, ties in arrival order.

    The capacity is read afresh at every grant, so it may follow an adaptive limit. In the
    engine the key is the round number: the oldest round's classify and instance requests
    overtake later rounds' instruction requests, so rounds commit steadily instead of all
    at the end.
    """

    def __init__(self, capacity: Callable[[], int]) -> None:
        self._capacity = capacity
        self._in_use = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()

    @property
    def in_use(self) -> int:
        """Return how many holders are in."""
        return self._in_use

    async def acquire(self, key: int = 0) -> None:
        """Wait for a slot; lower keys are served first."""
        if not self._waiters and self._in_use < self._capacity():
            self._in_use += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (key, next(self._counter), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # granted just as we were cancelled: pass it on
            raise

    def release(self) -> None:
        """Give a slot back and let in as many waiters as the capacity now allows."""
        self._in_use -= 1
        capacity = self._capacity()
        while self._waiters and self._in_use < capacity:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                self._in_use += 1
                future.set_result(None)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()
