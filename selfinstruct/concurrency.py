"""How many teacher requests to keep in flight, and when a rate-limited API takes the next.

:class:`AdaptiveLimit` finds a server's capacity from what the server says, not by waiting
for answers to double the limit:

- A server that refuses at once beyond its capacity (HTTP 429 within milliseconds) is
  probed by an *acceptance clock*: a request still unanswered and unrefused a few times
  the preflight's round trip after it was sent (ACCEPT_MARGIN, within ACCEPT_FLOOR and
  ACCEPT_AFTER) was taken, and the limit goes to ROOM_GAIN times the requests taken, up
  to ACCEPT_BURST before the first answer. A refusal then marks the capacity: the server
  held no more than the other requests still out when it is read, so the limit goes no
  higher, and a burst of refusals read one by one brings it down to what the server took.
- Past ACCEPT_BURST, whenever the limit binds, a *room probe* (a one-token request, sent once
  the last request was taken) asks whether the server has a free slot: a server whose
  slots are all busy serves it only after one of them frees, that is after some answer
  to a real request. A probe answered first proves room at that load, and the limit (and
  the burst) go to ROOM_GAIN times it: a queueing server of K slots holds at most that
  many times K before its first answer. A probe that comes back after an
  answer, and many times slower than a probe served at once, waited for a slot: start-up's
  answers sent within that load prove no more than it. On a server that serves its queue
  in order, the answers that came before it got its slot count the queue ahead of it,
  and so the slots: start-up ends there. A refusal of a probe marks the capacity as any
  refusal does.
- After the first answers, start-up multiplies the limit by STARTUP_GAIN per round trip
  (16, 64, 256, 1024: two round trips of the first answer reach a thousand) while answers
  come back as fast as unloaded ones.
- A queueing server (``vllm serve``, llama.cpp's server) never refuses; its latency grows
  with its queue. Each kind of request keeps its unloaded latency; when recent answers take
  QUEUE_TOLERANCE times that, the limit goes to how many the server serves at once: the
  knee where more requests stop adding throughput, as TCP Vegas and Netflix's Gradient2
  limiter do. Little's law gives it: every request waits the same time W in the queue,
  so of N in flight the server serves N x S / (S + W), S being the unloaded latency
  averaged over the mix of requests answered. With one kind of request that is N / ratio;
  with a mix, the shortest kind's ratio would read a short queue as a long one.
- After a decrease the limit closes half the gap to where trouble began each round trip
  (TCP CUBIC's fast return to the last maximum); after the cut that ends start-up, which
  goes below the knee on purpose, the whole gap (as BBR leaves ProbeRTT at once). Above
  it, the step per round trip doubles while answers stay unqueued, up to MAX_PROBE_SHARE
  of the limit (BIC-TCP's max probing): a knee read low, or a server that gained
  capacity, is found again within a few round trips, not one request per round trip.

:class:`RatePacer` honours an API's requests- and tokens-per-minute limits as OpenAI
states them in ``x-ratelimit-*`` headers and ``Retry-After``: it holds each send until
what the server says remains covers it, so the remaining count never goes below zero.

The limits are plain objects fed with events, so their behaviour is a table of cases in
the tests; the clock is passed in for the same reason.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import heapq
import itertools
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

# Multiplicative decrease on a 429 when only the in-flight count at sending is known. TCP
# Reno halves; a server that says where its capacity is (429 beyond K requests) needs far
# less, and a small step keeps the average close to the capacity (the sawtooth averages
# ~ (1 + BACKOFF) / 2 of it). When the backend says how many others are out as the refusal
# is read, the limit goes to that instead.
BACKOFF = 0.95
# Growth per round trip in start-up, while answers are as fast as unloaded ones. TCP's
# slow start doubles; four reaches 1,024 from 16 in three round trips, and a queueing
# server's latency shows the overshoot (at most this factor) within one more.
STARTUP_GAIN = 4
# A queueing server's latency this many times the unloaded one means a queue: the issue
# asks for p50 latency within 1.5x of unloaded; the limit settles below it.
QUEUE_TOLERANCE = 1.4
# A decrease for queueing keeps at least this share of the limit: one noisy burst of slow
# answers must not empty the pipeline.
MIN_QUEUE_FACTOR = 0.5
# The unloaded latency of a request kind is the lowest its mean over ~50 answers has been
# (TCP Vegas's BaseRTT, over enough answers that lucky ones do not set it), drifting
# up by this weight per round trip (a limit's worth of answers): against the minimum's
# pull to the luckiest answers. A queue grows 1/K per round trip when the limit probes one
# request above a server of K slots; at 1,024 slots that is 0.1%, so the drift must stay
# below it or it would follow the queue. A server slower for other reasons than load is
# caught by NO_RELIEF instead.
DRIFT_WEIGHT = 0.0005
# When a round trip after a cut for queueing is still this close to as slow, the latency
# was not the load's doing (longer answers, a slower model): take it as the new unloaded
# latency instead of cutting again and again.
NO_RELIEF = 0.9
RELIEF_AFTER = 2.0  # judged after this many times the recent mean's span of answers
# Weight of a new sample in the recent mean latency (~10 samples): reacts within a burst.
RATIO_WEIGHT = 0.1
# Answer tokens worth the fixed part of a request's latency (prefill, network): a server
# decoding 50 tokens/s with 0.3 s of overhead has 15; per-token latency then varies ~10%
# between a 5-token and a 300-token answer instead of 20-fold.
TOKEN_OVERHEAD = 20
# Weight of a new sample in the mean that sets the unloaded latency (~50 samples).
BASE_WEIGHT = 0.02
# Grow only while this share of the limit is in use: an idle limit proves nothing.
DEMAND_SHARE = 0.5
# After a decrease, the share of the gap to the limit before it closed per round trip.
RECOVERY = 0.5
# Seconds after which an unrefused request counts as taken (a loopback 429 comes within
# milliseconds, OpenAI's within ~0.1 s): ACCEPT_MARGIN times the preflight's round trip
# (listing the models on a new connection: the handshakes and one round trip, as a
# refusal of a request on a new connection costs), within [ACCEPT_FLOOR, ACCEPT_AFTER];
# ACCEPT_AFTER when that is unknown. Once refusals are seen, ACCEPT_MARGIN times the
# slowest of them, up to MAX_ACCEPT_AFTER.
ACCEPT_AFTER = 0.25
ACCEPT_MARGIN = 3.0
# A loopback round trip takes a millisecond, but a busy two-core machine may answer a
# 429 tens of milliseconds late; a request counted as taken too early costs one refusal.
ACCEPT_FLOOR = 0.05
MAX_ACCEPT_AFTER = 2.0
# The acceptance clock grows the limit up to this before any answer has come back: a
# queueing server accepts everything, and only its answers show how fast it serves.
ACCEPT_BURST = 64
# A room probe answered before any request proves a free slot at the load it was sent
# under; the limit goes to this many times that load. Slow start's doubling, not start-up's
# fourfold: a queueing server of K slots then holds at most 2K before its first answer,
# and its queue (at most K) costs the first requests one round trip more, not three.
ROOM_GAIN = 2
# Above the level of the last decrease, the growth step per round trip doubles while
# answers stay unqueued, up to this share of the limit (BIC-TCP's max probing: Xu,
# Harfoush and Rhee, INFOCOM 2004, cap the step at a fixed Smax). A share instead of a
# fixed step: at 1,024 slots, +1 per round trip would take hundreds of round trips to find
# capacity a cut for noise gave away; an eighth adds at most that much queue before the
# latency shows it (QUEUE_EARLY) and the step starts again at one.
MAX_PROBE_SHARE = 0.125
# Answers this many times slower than unloaded end max probing (the step back to one)
# before QUEUE_TOLERANCE would cut: the queue has begun to grow.
QUEUE_EARLY = 1.15


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

    @property
    def accept_after(self) -> float | None:
        """Return seconds after which an unrefused request counts as taken; None: not asked."""
        return None

    @property
    def accept_delay(self) -> float:
        """Return how long after its send an unrefused request counts as taken."""
        return ACCEPT_AFTER

    @property
    def round_trip(self) -> float | None:
        """Return the recent mean latency of answers in seconds; None: not tracked."""
        return None

    def on_success(
        self,
        kind: str,
        latency: float,
        in_flight: int,
        outstanding: int | None = None,
        tokens: int | None = None,
    ) -> None:
        """Learn from a request answered after `latency` s, sent with `in_flight` others out."""

    def on_overload(
        self, sent_at: float, in_flight: int, latency: float = 0.0, remaining: int | None = None
    ) -> None:
        """Learn from a refusal (HTTP 429) of a request sent at `sent_at` as the `in_flight`th."""

    def on_accepted(self, in_flight: int) -> None:
        """Learn that a request was taken: unrefused `accept_delay` after it was sent."""

    def on_reach(self, seconds: float) -> None:
        """Learn the preflight's round trip: the time a refusal takes to come back."""

    def probe_after(self, in_flight: int) -> float | None:
        """Return when to ask the server for room with `in_flight` out; None: not asked."""
        return None

    def on_room(self, in_flight: int) -> bool:
        """Learn that the server had room with `in_flight` out; return whether the limit grew."""
        return False

    def on_probe(self, in_flight: int | None) -> None:
        """Learn that a room probe went out with `in_flight` out (None: it is back)."""

    def on_full(self, in_flight: int, service: float | None = None) -> None:
        """Learn that a request sent with `in_flight` out waited for a slot to free."""

    def snapshot(self) -> dict[str, Any]:
        """Return the learned state worth keeping for the next session (none)."""
        return {}

    def restore(self, data: Mapping[str, Any]) -> None:
        """Start from a state a previous session learned (nothing to restore)."""

    def describe(self) -> str:
        """Say in a few words how the limit is chosen."""
        return f"{self.limit} requests in flight"


@dataclass
class _Kind:
    base: float  # unloaded latency of this kind of request
    recent: float  # recent mean latency
    slow: float  # mean latency over more answers, which sets the unloaded one
    flight: float  # recent mean of how many were in flight when these requests were sent
    cut_at: float = 0.0  # the ratio that made the last cut for queueing (0: none pending)
    # ... inf: judge only whether the unloaded latency was set high
    seen: int = 1  # answers so far
    first: list[float] = field(default_factory=list)  # the first answers' latencies
    since_cut: int = 0  # answers sent after the last cut for queueing took hold
    corrected: bool = False  # the base set by start-up answers was lowered
    scale: float = 1.0  # mean of latency / per-token latency: seconds per normalised second
    inverse: float = 1.0  # mean of per-token latency / latency (of 1 / scale, answer by answer)
    share: float = 0.0  # recent share of all answers that are of this kind
    unqueued_load: float = 0.0  # most in flight (its own included) an unqueued answer had

    @property
    def ratio(self) -> float:
        return self.recent / self.base if self.base > 0 else 1.0


class AdaptiveLimit(ConcurrencyLimit):
    """Find the server's capacity from refusals, acceptances and latency; then hold it."""

    def __init__(
        self,
        initial: int = 16,
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
        self.answered = 0
        self._clock = clock
        self._kinds: dict[str, _Kind] = {}
        self._last_decrease = float("-inf")
        self._settle_until = float("-inf")  # answers to requests sent before this are old news
        # ... and those sent before this with more than this in flight (see on_success)
        self._drain_until = float("-inf")
        self._drain_load = float("inf")
        self._round_trip: float | None = None  # seconds, from the answers
        self._before_decrease = 0.0  # where the last decrease came down from
        self._refusal_latency = 0.0  # the slowest 429 seen
        self._reach: float | None = None  # seconds: the preflight's round trip
        self._taken = 0  # requests taken (unrefused) before the first answer
        self.burst = float(ACCEPT_BURST)  # the most sent before the first answer; probes raise it
        self._served_at_most = float("inf")  # the load above which a probe waited for a slot
        self._probe_load = float("inf")  # the load a probe still out was sent above
        self._probe_answers: list[float] = []  # when answers came while that probe was out
        self._room_load = 0.0  # the most in flight (the probe included) a probe found room at
        self._step = 1.0  # requests added per round trip above the last decrease
        self._step_answers = 0.0  # answers since the step last doubled
        self._return_pending = False  # the cut that ended start-up is not yet made good

    @property
    def adaptive(self) -> bool:
        """Say that this limit moves with the server's answers."""
        return True

    @property
    def round_trip(self) -> float | None:
        """Return the recent mean latency of answers in seconds; None before the first."""
        return self._round_trip

    @property
    def ceiling(self) -> int:
        """Return where trouble began last (0 before any): the level a decrease returns to."""
        return int(self._before_decrease)

    @property
    def accept_delay(self) -> float:
        """Return how long after its send an unrefused request counts as taken."""
        base = ACCEPT_AFTER
        if self._reach is not None:
            base = min(ACCEPT_AFTER, max(ACCEPT_FLOOR, ACCEPT_MARGIN * self._reach))
        if self._refusal_latency:
            return min(MAX_ACCEPT_AFTER, max(base, ACCEPT_MARGIN * self._refusal_latency))
        return base

    @property
    def accept_after(self) -> float | None:
        """Return the acceptance clock's delay while it may still grow the limit, else None."""
        if not self.slow_start or self.answered or self._limit >= self.burst:
            return None
        return self.accept_delay

    def on_accepted(self, in_flight: int) -> None:
        """Grow to ROOM_GAIN times the requests taken, before the first answer, up to the burst.

        Before any answer, every request taken is still held: the server held that many at
        once, as a room probe answered at that load shows. Slow start's doubling, once per
        acceptance delay (adding one per request taken grew by a constant step instead).
        """
        if self.accept_after is None:
            return
        self._taken += 1
        if in_flight < DEMAND_SHARE * self._limit:
            return
        held = float(min(self._taken, in_flight))
        grown = max(self._limit + 1.0, ROOM_GAIN * held)
        self._limit = min(float(self.maximum), self.burst, grown)

    def on_reach(self, seconds: float) -> None:
        """Count a request as taken ACCEPT_MARGIN times `seconds` after its send (see there)."""
        self._reach = max(seconds, self._reach or 0.0)

    def probe_after(self, in_flight: int) -> float | None:
        """Return when to ask for room (a room probe) with `in_flight` out, else None.

        Only while nothing has been answered or refused and the limit binds at the burst
        (ACCEPT_BURST, or what the last probe raised it to): then, once
        the acceptance clock's delay says the last request sent was taken, a one-token
        request tells whether the server serves one more at once.
        """
        if not self.slow_start or self.answered or self._limit >= self.maximum:
            return None
        if in_flight < self._limit or self._limit < self.burst:
            # Below the burst the acceptance clock grows the limit without a request the
            # run's log does not hold: small and short runs never send a probe.
            return None
        return self.accept_delay

    def on_room(self, in_flight: int) -> bool:
        """Learn that a room probe sent with `in_flight` out came back before any answer.

        The server served it without waiting for a slot to free, so it had room at that
        load: the limit (and the burst the acceptance clock may reach) go to ROOM_GAIN
        times it. Return whether the limit grew.
        """
        if not self.slow_start or self.answered:
            return False  # an answer or a refusal came first: the probe is old news
        self._room_load = max(self._room_load, in_flight + 1.0)
        grown = min(float(self.maximum), ROOM_GAIN * (in_flight + 1.0))
        self.burst = max(self.burst, grown)
        if grown <= self._limit:
            return False
        self._limit = grown
        return True

    def on_success(
        self,
        kind: str,
        latency: float,
        in_flight: int,
        outstanding: int | None = None,
        tokens: int | None = None,
    ) -> None:
        """Grow while there is demand; settle at the knee when latency says it is queueing.

        `in_flight` is how many others were out when the request was sent; `outstanding`
        how many are out now (the demand; default `in_flight`); `tokens` how many the
        answer has, when known: a server takes longer for a longer answer, which is not a
        queue, so latency is judged per token (plus TOKEN_OVERHEAD for the fixed part).
        """
        self.answered += 1
        if self._probe_load != float("inf"):
            self._probe_answers.append(self._clock())
        if self._round_trip is None:
            self._round_trip = latency
        self._round_trip += RATIO_WEIGHT * (latency - self._round_trip)
        sent = self._clock() - latency
        if tokens is not None:
            latency = latency * TOKEN_OVERHEAD / (tokens + TOKEN_OVERHEAD)
        scale = (tokens + TOKEN_OVERHEAD) / TOKEN_OVERHEAD if tokens is not None else 1.0
        stats = self._kinds.get(kind)
        for other in self._kinds.values():  # the mix, answers of the settling time included
            other.share += BASE_WEIGHT * (float(other is stats) - other.share)
        if stats is None:
            self._kinds[kind] = _Kind(
                latency,
                latency,
                latency,
                in_flight + 1.0,
                first=[latency],
                scale=scale,
                inverse=1.0 / scale,
                share=BASE_WEIGHT if self._kinds else 1.0,
                unqueued_load=in_flight + 1.0,
            )
        elif sent <= self._settle_until or (
            sent <= self._drain_until and in_flight + 1.0 > self._drain_load
        ):
            # Sent before the last decrease took hold: it queued behind the old limit. (An
            # answer's send time is read back from its latency, a little late on a busy
            # client, so the old limit's last requests may seem sent after the cut; their
            # load says they were not.)
            return
        else:
            stats.recent += RATIO_WEIGHT * (latency - stats.recent)
            stats.slow += BASE_WEIGHT * (latency - stats.slow)
            stats.seen += 1
            stats.scale += BASE_WEIGHT * (scale - stats.scale)
            stats.inverse += BASE_WEIGHT * (1.0 / scale - stats.inverse)
            if stats.seen * BASE_WEIGHT < 1.0:
                # Too few answers for a mean: the median of the unqueued ones so far, those
                # within QUEUE_TOLERANCE of the fastest. A server with fewer slots than the
                # first burst answers them first and the rest a service time or more later
                # (a quartile of all was a queued one below four slots per quarter of the
                # answers); the median, unlike the minimum, is not one lucky answer.
                stats.first.append(latency)
                fastest = min(stats.first)
                near = sorted(x for x in stats.first if x <= QUEUE_TOLERANCE * fastest)
                stats.base = near[len(near) // 2]
            else:
                stats.base += DRIFT_WEIGHT / max(self._limit, 1.0) * (latency - stats.base)
                stats.base = min(stats.base, stats.slow)
            stats.flight += RATIO_WEIGHT * (in_flight + 1.0 - stats.flight)
            if stats.cut_at:
                stats.since_cut += 1
                if stats.since_cut * RATIO_WEIGHT >= RELIEF_AFTER:  # the recent mean is new
                    if stats.ratio >= NO_RELIEF * stats.cut_at:
                        # The cut did not help: not a queue. Unless the answers judged were
                        # sent above the knee again (a few slots regrow within the answers
                        # it takes to judge): then it says nothing.
                        if stats.flight <= self._before_decrease:
                            stats.base = stats.recent
                    elif stats.ratio < (BACKOFF if stats.corrected else 1.0):
                        # Below the knee answers come faster than the unloaded latency
                        # said: the first answers, which set it, paid for start-up (new
                        # connections, a cold server, a busy client). Left high, it would
                        # hold a queue. After the first correction only a clear drop (below
                        # BACKOFF of it) corrects again: at the knee answers come at about
                        # the unloaded latency, so a mark of 1 would lower the base on half
                        # the judgements, ratcheting it down on noise.
                        stats.base, stats.corrected = stats.recent, True
                    stats.cut_at, stats.since_cut = 0.0, 0
            if latency <= QUEUE_TOLERANCE * stats.base:
                stats.unqueued_load = max(stats.unqueued_load, in_flight + 1.0)
            if (
                stats.ratio > QUEUE_TOLERANCE
                and not self.slow_start
                and stats.seen * BASE_WEIGHT < 1.0
                and in_flight + 1.0 <= self._proven_load(stats)
            ):
                # This kind's unloaded latency is still the median of its first answers,
                # which it lowers as unqueued ones come, while its recent mean still holds
                # start-up's queued ones. Sent at a load the server has answered another
                # kind unqueued at, this answer shows no queue: a cut here took a server of
                # 256 slots to 153, back by one request per round trip for tens of them.
                return
            if stats.ratio > QUEUE_TOLERANCE:
                # Little's law: sent with `flight` in flight, each waiting W in the queue,
                # the server serves flight x S / (S + W) at once and queues the rest. That
                # knee is the level to return to, not the overshoot above it.
                ratio = stats.ratio
                served = stats.flight / self._queue_factor(stats)
                floor = MIN_QUEUE_FACTOR * self._limit
                if self.slow_start:
                    # Start-up's growth before the first answers can put many times a small
                    # server's slots in flight, and `flight` (of the answers so far) lags
                    # it: halving once per queued round trip took tens of service times to
                    # drain. An unqueued answer sent with n in flight proves the server
                    # serves n at once; the cut may go down to that, no further.
                    floor = min(floor, stats.unqueued_load)
                knee = min(self._limit, max(served, floor))
                # The cut that ends start-up goes to half the knee (and back by the whole
                # gap per round trip, not RECOVERY of it: the cut is not a knee read low):
                # below the server's capacity the answers show its unloaded latency, which
                # start-up's own answers (a cold server, a busy client) may overstate; left
                # high, it puts every later knee too high. BBR's ProbeRTT does this for
                # the same reason (Cardwell et al., "BBR", ACM Queue 14(5), 2016).
                # A later cut goes to the knee itself, not BACKOFF below it: at the knee no
                # request waits, and TCP Vegas, too, aims at a few queued, never an idle
                # link (Brakmo and Peterson, IEEE JSAC 13(8), 1995). The knee read on a busy
                # client errs low (its own delays read as queue: 244-248 for 256 slots), and
                # BACKOFF below that idled 5% more slots until max probing found them.
                start_up = self.slow_start
                factor = MIN_QUEUE_FACTOR if start_up else 1.0
                if self._decrease(knee, factor):
                    # Nothing is sent until fewer than the new limit are out: requests sent
                    # within it after the cut find the queue drained, and their answers count
                    # at once. Waiting a round trip for them too held start-up's cut to half
                    # the knee a round trip longer (BBR leaves ProbeRTT as soon as it can).
                    self._drain_until = self._clock() + (self._round_trip or 0.0)
                    self._drain_load = self._limit
                    self._return_pending = start_up
                    # A cut held back by MIN_QUEUE_FACTOR cannot be judged by its relief,
                    # unless it went below what the server was seen to serve unqueued.
                    below = start_up and knee * factor <= stats.unqueued_load
                    stats.cut_at = ratio if knee == served or below else 0.0
                    stats.recent = stats.base  # judge afresh
                return
            if stats.ratio > QUEUE_EARLY:
                self._step, self._step_answers = 1.0, 0.0  # a queue begins: probe gently
            if latency > QUEUE_TOLERANCE * stats.base:
                return  # a queued answer is no evidence that the server takes more
        if (in_flight if outstanding is None else outstanding) + 1 < DEMAND_SHARE * self._limit:
            return
        # +g per answer multiplies the limit by 1 + g each round trip; +g/limit adds g per
        # round trip: half the way back to the last maximum, and at least one request.
        if self.slow_start:
            # An unqueued answer proves the load it was sent under, not more: STARTUP_GAIN
            # times that at most. Short answers (self-instruct's classifications) come back
            # many times per round trip of the long ones and would otherwise multiply the
            # limit far past what any answer has shown the server to take.
            proven = STARTUP_GAIN * (in_flight + 1.0)
            cap = min(self._served_at_most, self._probe_load)
            if in_flight + 1.0 <= cap:
                # A probe sent above this load waited for a slot (or may be waiting): the
                # server serves no more at once. An unqueued answer sent above it would
                # prove that wrong.
                proven = min(proven, cap)
            if self._limit < proven:
                self._limit = min(float(self.maximum), proven, self._limit + STARTUP_GAIN - 1.0)
            return
        gap = self._before_decrease - self._limit
        if gap > 0:
            step = max(1.0, (1.0 if self._return_pending else RECOVERY) * gap)
        else:
            # Max probing: the step doubles each round trip (a limit's worth of answers).
            self._step_answers += 1.0
            if self._step_answers >= self._limit:
                cap = max(1.0, MAX_PROBE_SHARE * self._limit)
                self._step, self._step_answers = min(2.0 * self._step, cap), 0.0
            step = self._step
        self._limit = min(float(self.maximum), self._limit + step / self._limit)

    def _proven_load(self, stats: _Kind) -> float:
        """Return the most in flight another kind was answered unqueued at (0: none).

        The server serves that many at once. Only kinds with a mean of their own count: a
        kind's first answers are read against the median of themselves, and an early one
        sent late in a burst that reached the server first (new connections open at their
        own pace) would claim a load far past a small server's slots.
        """
        return max(
            (
                k.unqueued_load
                for k in self._kinds.values()
                if k is not stats and k.seen * BASE_WEIGHT >= 1.0
            ),
            default=0.0,
        )

    def _queue_factor(self, stats: _Kind) -> float:
        """Return (S + W) / S: how many in flight per request served, from `stats`'s queue.

        W, the wait in the queue, is the same for every request, so it is read from the
        kind whose latency rose: each of its answers carries W / scale of per-token excess,
        so W is the mean excess over the mean of 1 / scale (over the mean scale would
        overstate it when answer lengths vary). S is the unloaded latency of the mix the
        server answers, each kind weighted by its share of the answers.
        """
        wait = max(0.0, stats.recent - stats.base) / stats.inverse
        weight = sum(k.share for k in self._kinds.values())
        unloaded = sum(k.share * k.base * k.scale for k in self._kinds.values())
        if weight <= 0.0 or unloaded <= 0.0:
            return stats.ratio
        unloaded /= weight
        return (unloaded + wait) / unloaded

    def on_overload(
        self, sent_at: float, in_flight: int, latency: float = 0.0, remaining: int | None = None
    ) -> None:
        """Drop to what the server held when it refused; once per round trip below that.

        `remaining`, when known, is how many other requests are still out as the refusal
        is read. The server held no more than those (some may be refusals on their way
        back), so neither the limit nor the level to return to stays above them: a burst's
        refusals, read one by one, bring both down to what the server took. That holds
        when a burst reached the server out of order (new connections open at their own
        pace), where the in-flight count a refused request was sent at says too little.

        Without it, the first refusal of a burst scales the limit down to just below the
        in-flight count its request was sent at. A further refusal of the same burst says
        more only when its request was sent within the new limit: then it takes one off.
        Requests sent above it are the same overshoot (a start-up that went past the
        capacity), so a burst of them does not drive the limit to the floor.
        """
        self._refusal_latency = max(self._refusal_latency, latency)
        self._step, self._step_answers = 1.0, 0.0
        if remaining is not None:
            held = max(1.0, float(remaining))
            if sent_at > self._last_decrease and self._decrease(min(self._limit, held), 1.0):
                return
            self._limit = min(self._limit, held)
            self._before_decrease = min(self._before_decrease, held)
            return
        if sent_at <= self._last_decrease or not self._decrease(
            min(self._limit, float(in_flight)), BACKOFF
        ):
            if in_flight > self._limit:
                return
            self._limit = max(1.0, self._limit - 1.0)
            # ... and the level to return to is one lower too: where refusals began.
            self._before_decrease = max(1.0, self._before_decrease - 1.0)

    def _decrease(self, base: float, factor: float) -> bool:
        now = self._clock()
        if now - self._last_decrease < (self._round_trip or 0.0):
            return False
        self._last_decrease = self._settle_until = now
        self._step, self._step_answers = 1.0, 0.0
        self._return_pending = False
        self.slow_start = False
        self.decreases += 1
        self._before_decrease = base
        self._limit = max(1.0, base * factor)
        return True

    def on_probe(self, in_flight: int | None) -> None:
        """Learn that a room probe went out with `in_flight` out (None: it is back).

        Until it is back it may be waiting for a slot, so start-up's answers sent within
        that load prove no more than it: the first answers of a full server come back
        just before the probe that waited behind them.
        """
        if in_flight is None:
            self._probe_load = float("inf")
            return
        self._probe_load = float(max(1, in_flight))
        self._probe_answers = []

    def on_full(self, in_flight: int, service: float | None = None) -> None:
        """Learn that a room probe sent with `in_flight` out waited for a slot to free.

        The server serves at most `in_flight` at once: start-up's answers sent within
        that load prove no more (a queueing server would otherwise get STARTUP_GAIN times
        its slots, all in its queue, from the first unqueued answers).

        `service`, when known, is how long the probe takes once it has a slot (a probe
        served at once took that long). A server that serves its queue in order (``vllm
        serve``, llama.cpp's server) gave the probe a slot when the (in_flight + 1 - K)th
        request ahead of it was answered, K being its slots: the answers that came before
        then count the queue ahead of it, and so K. Start-up ends there, K in flight.
        """
        now = self._clock()
        self._served_at_most = min(self._served_at_most, float(max(1, in_flight)))
        # Requests sent until now may wait behind the queue start-up left (the probe did):
        # their answers are start-up's overshoot, not the load the limit now keeps.
        self._settle_until = max(self._settle_until, now)
        answers, self._probe_answers = self._probe_answers, []
        if service is None or not self.slow_start:
            return
        freed = sum(1 for t in answers if t <= now - service)
        if not freed:
            return
        # A probe's answer read late by a busy client counts some answers during its own
        # service as before its slot: the count errs low, where no request waits, but no
        # lower than the load a probe found room at.
        slots = min(float(in_flight), max(self._room_load, in_flight + 1.0 - freed))
        if slots >= self._limit or not self._decrease(slots, 1.0):
            return
        for stats in self._kinds.values():
            # The unloaded latency is judged again at this load: start-up's first answers,
            # which set it, may have paid for a cold server or a busy client (the reason
            # the cut that ends start-up goes below the knee). Only lowered, though (no
            # ratio reads as no relief): a count that erred high leaves a short queue,
            # which must not be taken for the unloaded latency.
            stats.cut_at, stats.since_cut = float("inf"), 0
            stats.recent = stats.base

    def snapshot(self) -> dict[str, Any]:
        """Return the limit and the ceiling learned so far (for limits.json)."""
        return {
            "limit": self.limit,
            "ceiling": self.ceiling,
            "slow_start": self.slow_start,
            # Start-up's cut below the knee is on purpose: a session stopped before the
            # limit made it good makes it good at the same pace, not as if the knee were
            # read low (RECOVERY).
            "return_pending": self._return_pending and self._limit < self._before_decrease,
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Start where a previous session left off: its limit, its ceiling, its phase."""
        limit, ceiling = data.get("limit"), data.get("ceiling", 0)
        if not isinstance(limit, int) or not isinstance(ceiling, int) or limit < 1:
            return  # an unreadable record costs a start-up, nothing more
        self._limit = float(min(limit, self.maximum))
        self._before_decrease = float(min(max(ceiling, 0), self.maximum))
        self.slow_start = bool(data.get("slow_start", False))
        self._return_pending = data.get("return_pending") is True

    def describe(self) -> str:
        """Say that the limit is found by probing, and where it stands."""
        return f"adaptive, now {self.limit} (at most {self.maximum})"


# OpenAI's rate-limit headers (platform.openai.com/docs/guides/rate-limits, "Rate limits in
# headers"): limit-*, remaining-* (permitted before the limit is exhausted) and reset-* (time
# until the limit is back to its initial state, e.g. "1s", "6m0s", "20ms").
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_RATE_WAIT = 600.0  # seconds; a reset further out is a misreading, not a plan
RATE_WINDOW = 60.0  # seconds: the limits are per minute (RPM, TPM)


def parse_duration(text: str) -> float | None:
    """Return the seconds in an OpenAI reset value ("6m0s", "20ms", "1.5s", "2"); None if not."""
    text = text.strip()
    try:
        return max(0.0, float(text))  # bare seconds, as Retry-After has them
    except ValueError:
        pass
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT[match.group(2)]
        pos = match.end()
    return total if pos == len(text) and pos else None


def retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Return the seconds a refusal's headers ask to wait before the next try; None if none.

    ``retry-after-ms`` (milliseconds: Azure OpenAI sends it, and OpenAI's SDK reads it
    first), else ``Retry-After`` as seconds or, as RFC 9110 sec. 10.2.3 also allows, an
    HTTP date (read against `now`, wall-clock seconds; default the current time).
    """
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis)
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return max(0.0, value / 1000.0)
    text = headers.get("retry-after")
    if text is None:
        return None
    if (seconds := parse_duration(text)) is not None:
        return seconds if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)  # RFC 9110: HTTP dates are GMT
        at = when.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None  # not a date, or one no clock reaches (a year of 11 digits overflows)
    return max(0.0, at - (time.time() if now is None else now))


@dataclass
class _Allowance:
    limit: int
    level: float  # what the server said remained at `since`, less what was sent after
    since: float
    rate: float  # per second: OpenAI's limits refill continuously, whole again at the reset

    def available(self, now: float) -> float:
        return min(float(self.limit), self.level + (now - self.since) * self.rate)


class SendMark(NamedTuple):
    """How many sends (and their tokens) the pacer had counted when a request went."""

    requests: int
    tokens: int


# Seconds between a rate pacer's checks of whether it was closed while a send waits.
CLOSE_CHECK = 0.25


class PacerClosed(Exception):  # noqa: N818 - the run closed it on purpose
    """A send waited in a closed rate pacer: it was not made."""


class RatePacer:
    """Hold sends so that what an API says remains of its rate limits never goes below zero.

    Each answer (or refusal) carrying ``x-ratelimit-*`` headers resets the picture: what
    remains, less the requests still out (the server may not have counted them yet), and
    how fast it refills (the rest of the limit by the stated reset). A send that the
    picture does not cover waits until it is; a ``Retry-After`` holds every send until it
    has passed. Without headers it never holds anything.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._allowances: dict[str, _Allowance] = {}  # "requests", "tokens"
        self._hold_until = 0.0
        self._tokens_per_send = 0.0  # recent mean of what a send counts against the tokens
        self._line = asyncio.Lock()  # sends that must wait, first come first served
        self._sent_requests = 0  # sends counted so far, for marks
        self._sent_tokens = 0
        self.waits = 0  # sends held, for the tests and the benchmark
        self.closed = False  # see close()

    @property
    def active(self) -> bool:
        """Say whether the server has stated any limit (or asked to wait) so far."""
        return bool(self._allowances) or self._hold_until > 0

    def observe(
        self,
        headers: Mapping[str, str],
        *,
        out_requests: int = 0,
        out_tokens: int = 0,
        mark: SendMark | None = None,
    ) -> bool:
        """Read the headers of an answer; True if any.

        With the `mark` of the answered request: the server counted it, and those sent
        before it, when it admitted it, so what it says remained then, less what went
        after, is what remains now (OpenAI, like our simulated API, states the remaining
        at admission). Without one: `out_*` is what is still out besides it, all of which
        the server may not have counted yet. Either way the picture never rises above
        the known one.
        """
        now = self._clock()
        seen = False
        if mark is not None:
            out_requests = self._sent_requests - mark.requests
            out_tokens = self._sent_tokens - mark.tokens
        for resource, out in (("requests", out_requests), ("tokens", out_tokens)):
            limit = _int(headers.get(f"x-ratelimit-limit-{resource}"))
            remaining = _int(headers.get(f"x-ratelimit-remaining-{resource}"))
            reset = parse_duration(headers.get(f"x-ratelimit-reset-{resource}") or "")
            if limit is None or remaining is None or limit <= 0:
                continue  # a server without this limit (or Azure's -1 for none)
            seen = True
            missing = max(0, limit - remaining)
            if reset is not None and reset > 0 and missing:
                rate = missing / min(reset, MAX_RATE_WAIT)
            else:
                rate = limit / RATE_WINDOW
            # No refill is credited for the answer's round trip: when within it the server
            # admitted the request is not known.
            level = float(remaining - out)
            if (known := self._allowances.get(resource)) is not None:
                # Answers overtake each other, and so do requests on their way: one sent
                # just before the answered one may have been admitted after it. Never
                # believe more than what the known picture has refilled to since.
                level = min(level, known.available(now))
            self._allowances[resource] = _Allowance(limit, level, now, rate)
        after = retry_after(headers)
        if after is not None:
            self._hold_until = max(self._hold_until, now + min(after, MAX_RATE_WAIT))
            seen = True
        return seen

    def delay(self, tokens: int) -> float:
        """Return the seconds to wait before a send costing `tokens` (0: send now)."""
        now = self._clock()
        wait = self._hold_until - now
        for resource, cost in (("requests", 1), ("tokens", tokens)):
            allowance = self._allowances.get(resource)
            if allowance is None:
                continue
            # A request larger than the whole limit can only go once it is whole.
            short = min(cost, allowance.limit) - allowance.available(now)
            if short > 0:
                wait = max(wait, min(short / allowance.rate, MAX_RATE_WAIT))
        return max(0.0, wait)

    def in_flight_cap(self, round_trip: float) -> int | None:
        """Return how many requests in flight the stated limits keep busy; None: no limit.

        What remains now, plus what refills over two round trips (Little's law: in flight =
        rate x latency, with room for the answers' spread). More would only wait here, in
        the order they reached the pacer, retries behind new requests; held back before
        they are sent, they wait in the run's order instead (retries and the earliest round
        first), so no later round's request takes the allowance an earlier round needs.
        """
        if not self._allowances:
            return None
        now = self._clock()
        per_send = max(1.0, self._tokens_per_send)
        available, rate = float("inf"), float("inf")
        for resource, allowance in self._allowances.items():
            cost = 1.0 if resource == "requests" else per_send
            available = min(available, max(0.0, allowance.available(now)) / cost)
            rate = min(rate, allowance.rate / cost)
        return max(1, int(available + 2.0 * rate * round_trip) + 1)

    def sent(self, tokens: int) -> SendMark:
        """Count a send against what remains; return its mark, to read its answer against."""
        now = self._clock()
        if self._tokens_per_send:
            self._tokens_per_send += 0.05 * (tokens - self._tokens_per_send)
        else:
            self._tokens_per_send = float(tokens)
        self._sent_requests += 1
        self._sent_tokens += tokens
        for resource, cost in (("requests", 1), ("tokens", tokens)):
            if (allowance := self._allowances.get(resource)) is not None:
                # Refill up to now first, so a full allowance does not bank past its limit.
                allowance.level = allowance.available(now) - cost
                allowance.since = now
        return SendMark(self._sent_requests, self._sent_tokens)

    async def wait(self, tokens: int) -> SendMark:
        """Wait in line until a send costing `tokens` is covered; count it, return its mark.

        First come, first served (asyncio.Lock wakes its waiters in order): a send that
        took whatever had refilled when it woke let cheaper sends overtake a dearer one
        again and again, and an early round's request starved while the engine, its
        rounds uncommitted, paid for later ones.
        """
        if not self._line.locked() and self.delay(tokens) <= 0:
            return self.sent(tokens)  # covered, and nobody waits before it
        async with self._line:
            waited = False
            while (seconds := self.delay(tokens)) > 0:
                if self.closed:
                    raise PacerClosed
                self.waits += not waited
                waited = True
                # In slices, so that a close (the run has what it needs) is seen within
                # one: a refill may be a minute away, and what waits here is not yet paid.
                await asyncio.sleep(min(seconds, CLOSE_CHECK))
            return self.sent(tokens)

    def close(self) -> None:
        """Let no waiting send through any more: each raises PacerClosed within CLOSE_CHECK."""
        self.closed = True

    def reopen(self) -> None:
        """Let sends through again (a later run on the same backend)."""
        self.closed = False


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


# A gate's waiter: (key less its group's lead, arrival, future, group, key).
_Waiter = tuple[float, int, asyncio.Future[None], int, int]


class PriorityGate:
    """Let at most `capacity()` holders in at once, lowest key first, ties in arrival order.

    The capacity is read afresh at every grant, so it may follow an adaptive limit. In the
    engine the key is the round number: the oldest round's classify and instance requests
    overtake later rounds' instruction requests, so rounds commit steadily instead of all
    at the end. A group of waiters may be given a lead (see :meth:`lead`): the engine's
    instruction requests, which start chains of requests, go that many rounds early.
    """

    def __init__(
        self, capacity: Callable[[], int], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._capacity = capacity
        self._clock = clock
        self._in_use = 0
        self._ceiling = math.inf  # waiters with a higher key wait (hold_above)
        # Waiters with a key above `_needed` (and not above the ceiling) are spares: they go
        # only within `_spare_for` seconds of the last waiter at or below it (hold_spares).
        self._needed = math.inf
        self._spare_for = math.inf
        self._needed_at = -math.inf  # when a waiter at or below `_needed` last went in
        self._leads: dict[int, float] = {}  # group -> rounds its waiters go early (lead)
        # A heap, and those held above the ceiling, set aside until it is raised.
        self._waiters: list[_Waiter] = []
        self._held: list[_Waiter] = []
        self._counter = itertools.count()

    @property
    def in_use(self) -> int:
        """Return how many holders are in."""
        return self._in_use

    @property
    def waiting(self) -> int:
        """Return how many are waiting for a slot."""
        return len(self._waiters) + len(self._held)

    async def acquire(self, key: int = 0, group: int = 0) -> None:
        """Wait for a slot; lower keys (less the group's lead) are served first."""
        if not self._waiters and self._in_use < self._capacity() and self._admits(key, False):
            self._in_use += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        rank = key - self._leads.get(group, 0.0)
        heapq.heappush(self._waiters, (rank, next(self._counter), future, group, key))
        self.poke()  # slots may be free while only keys above the ceiling wait
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # granted just as we were cancelled: pass it on
            raise

    def release(self) -> None:
        """Give a slot back and let in as many waiters as the capacity now allows."""
        self._in_use -= 1
        self.poke()

    def poke(self) -> None:
        """Let in as many waiters as the capacity allows now (call it when it grew)."""
        capacity = self._capacity()
        while self._waiters and self._in_use < capacity:
            waiter = heapq.heappop(self._waiters)
            future = waiter[2]
            if future.done():
                continue  # cancelled while it waited
            if not self._admits(waiter[4], True):
                self._held.append(waiter)  # a lead ranks it early, but it is not wanted yet
                continue
            self._in_use += 1
            future.set_result(None)

    def _admits(self, key: int, waited: bool) -> bool:
        """Say whether a waiter with `key` may go in now (a slot free); note a needed one.

        A spare that finds a slot free goes at once, as the rounds before it did: only one
        that `waited` for a slot can come a round trip after them (see hold_spares).
        """
        if key > self._ceiling:
            return False
        if key <= self._needed:
            self._needed_at = self._clock()
            return True
        return not waited or self._clock() - self._needed_at <= self._spare_for

    def hold_above(self, key: float) -> None:
        """Let in no waiter whose key is above `key` until it is raised (math.inf: none).

        Slots stay free rather than go to them: in the engine, rounds that a newer estimate
        of the target says are not needed send nothing, and are let go if it changes. The
        key compared is the waiter's own, whatever lead its group has.
        """
        raised = key > self._ceiling
        self._ceiling = key
        if raised:
            self._unhold()

    def hold_spares(self, needed: float, seconds: float) -> None:
        """Let waiters with keys above `needed` that wait for a slot go only with needed ones.

        Below the ceiling (hold_above) such a waiter is a spare: in the engine, a round that
        the estimate wants only as a margin against a short yield. Sent with the rounds it
        backs, it costs a paid round if they reach the target. Given a slot only as their
        answers free them, once they are all out, it costs the run a wait too: the run lets
        what is on the wire land, about a round trip after the rounds it backs committed.
        So a spare that waited goes only within `seconds` of the last needed waiter; one
        that finds a slot free goes at once (a rate limit, not the slots, may be what holds
        the sends back). math.inf for `needed`: no spares.
        """
        raised = needed > self._needed or seconds > self._spare_for
        self._needed, self._spare_for = needed, seconds
        if raised:
            self._unhold()

    def _unhold(self) -> None:
        """Queue again the held waiters that may now go in, and let in what fits."""
        back = [waiter for waiter in self._held if waiter[4] <= self._ceiling]
        if back:
            self._held = [waiter for waiter in self._held if waiter[4] > self._ceiling]
            for waiter in back:
                heapq.heappush(self._waiters, waiter)
        self.poke()

    def lead(self, group: int, rounds: float) -> None:
        """Rank the waiters of `group`, now and later, as if their keys were `rounds` lower.

        math.inf puts them before every other waiter, in the order they came in. The
        engine's instruction requests start chains (classify, then instances): ranked with
        the later stages of rounds that many rounds older, they are answered by the time
        their round's turn comes instead of after it (see engine.head_lead).
        """
        if self._leads.get(group, 0.0) == rounds:
            return
        self._leads[group] = rounds
        for waiters in (self._waiters, self._held):
            for i, (_, count, future, tag, key) in enumerate(waiters):
                if tag == group:
                    waiters[i] = (key - rounds, count, future, tag, key)
        heapq.heapify(self._waiters)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()
