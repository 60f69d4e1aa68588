"""The concurrency limits and the priority gate, driven by tables of events."""

from __future__ import annotations

import asyncio
import email.utils
import heapq
import json
import math
import random
import statistics
import time

import pytest

from selfinstruct.concurrency import (
    ACCEPT_AFTER,
    ACCEPT_BURST,
    ACCEPT_FLOOR,
    ACCEPT_MARGIN,
    BACKOFF,
    ROOM_GAIN,
    STARTUP_GAIN,
    AdaptiveLimit,
    ConcurrencyLimit,
    PriorityGate,
    RatePacer,
    parse_duration,
    retry_after,
)
from selfinstruct.engine import LEAD_MARGIN, head_lead


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_fixed_limit_never_moves() -> None:
    limit = ConcurrencyLimit(16)
    limit.on_success("instances", 0.1, 15)
    limit.on_overload(0.0, 16)
    assert limit.limit == 16 and not limit.adaptive
    with pytest.raises(ValueError):
        ConcurrencyLimit(0)


def test_start_up_multiplies_by_the_gain_each_round_trip_while_in_use() -> None:
    limit = AdaptiveLimit(initial=16, maximum=1024, clock=Clock())
    for expected in (64, 256, 1024):  # two round trips of the first answer reach 256
        for _ in range(limit.limit):  # one round trip: every request in flight answers
            limit.on_success("instances", 0.5, limit.limit - 1)
        assert limit.limit == expected
    assert limit.slow_start and STARTUP_GAIN == 4


def test_no_growth_without_demand() -> None:
    limit = AdaptiveLimit(initial=8, maximum=1024, clock=Clock())
    for _ in range(100):
        limit.on_success("instances", 0.5, 1)  # only 2 of 8 in use
    assert limit.limit == 8


def test_growth_stops_at_the_maximum() -> None:
    limit = AdaptiveLimit(initial=8, maximum=20, clock=Clock())
    for _ in range(100):
        limit.on_accepted(limit.limit)
    assert limit.limit == 20
    for _ in range(100):
        limit.on_success("instances", 0.5, limit.limit)
    assert limit.limit == 20


def test_429_drops_below_what_was_in_flight_then_climbs_back() -> None:
    clock = Clock()
    limit = AdaptiveLimit(initial=100, maximum=1024, clock=clock)
    limit.on_overload(sent_at=0.0, in_flight=80)
    assert limit.limit == int(80 * BACKOFF) and not limit.slow_start
    before = limit.limit
    clock.now = 1.0  # answers to requests sent after the decrease
    for _ in range(before + 2):  # about one round trip at the new limit
        limit.on_success("instances", 0.5, limit.limit - 1)
    assert limit.limit == before + 1


def test_a_burst_of_429s_scales_down_once_then_one_per_refusal_within_the_limit() -> None:
    clock = Clock()
    limit = AdaptiveLimit(initial=64, maximum=1024, clock=clock)
    clock.now = 10.0
    limit.on_overload(sent_at=9.9, in_flight=64)
    first = limit.limit
    assert first == int(64 * BACKOFF) and limit.decreases == 1
    # Requests sent before that decrease within the new limit are refused too: each one is
    # a request more than the server takes.
    clock.now = 10.05
    for _ in range(30):
        limit.on_overload(sent_at=9.95, in_flight=first - 31)
    assert limit.decreases == 1 and limit.limit == first - 30
    # One sent after the decrease, a round trip later, is new information.
    clock.now = 12.0
    limit.on_overload(sent_at=11.0, in_flight=first - 30)
    assert limit.decreases == 2 and limit.limit == int((first - 30) * BACKOFF)


def test_an_overshoot_refused_in_one_burst_lands_at_the_capacity_not_the_floor() -> None:
    # Start-up sent 4K requests to a server that takes K = 200; the 201st to the 800th come
    # back refused at once, in the order they were sent.
    clock = Clock()
    limit = AdaptiveLimit(initial=800, maximum=1024, clock=clock)
    for n in range(201, 801):
        limit.on_overload(sent_at=0.0, in_flight=n)
    assert limit.limit == int(201 * BACKOFF) and limit.decreases == 1
    assert limit.ceiling == 201


def test_a_probe_that_waited_for_a_slot_caps_what_start_up_answers_prove() -> None:
    clock = Clock()
    limit = AdaptiveLimit(initial=16, maximum=1024, clock=clock)
    assert limit.on_room(16) and limit.limit == 34
    limit.on_probe(34)  # the next probe goes out with 34 in flight ...
    limit.on_success("instructions", 2.0, 20)  # ... and while it is out, answers prove
    assert limit.limit == 34  # no more than its load: it may be waiting for a slot
    limit.on_probe(None)
    limit.on_full(34)  # it was: it came back slow, after that answer
    # Answers to requests sent before that are start-up's overshoot: no evidence at all.
    limit.on_success("instructions", 9.0, 20)
    assert limit.limit == 34 and limit.decreases == 0
    clock.now = 10.0
    for _ in range(60):
        limit.on_success("instructions", 2.0, 30)  # unqueued, but sent within 34
    assert limit.limit == 34
    # An unqueued answer sent above that load shows the server took more after all.
    limit.on_success("instructions", 2.0, 50)
    assert limit.limit > 34


def _two_rooms() -> tuple[Clock, AdaptiveLimit]:
    """Return a limit whose probes found room at 64 and at 130 in flight (now 262)."""
    clock = Clock()
    limit = AdaptiveLimit(initial=16, maximum=1024, clock=clock)
    assert limit.on_room(64) and limit.on_room(130) and limit.limit == 262
    return clock, limit


def _probe_behind_a_queue(
    limit: AdaptiveLimit, clock: Clock, in_flight: int, ahead: int, answers: int
) -> None:
    """Send a probe with `in_flight` out to an in-order server that frees a slot every 10 ms.

    The probe gets a slot with the `ahead`th answer and is back 0.3 s later (its service,
    as long as a probe served at once took), after `answers` answers in all.
    """
    limit.on_probe(in_flight)
    for i in range(answers):
        clock.now = 6.0 + 0.01 * i
        limit.on_success("instructions", 7.0, 100, tokens=250)
    clock.now = 6.0 + 0.01 * (ahead - 1) + 0.3
    limit.on_probe(None)
    limit.on_full(in_flight, 0.3)


def test_a_waited_probe_counts_the_queue_ahead_and_start_up_ends_at_the_slots() -> None:
    # A server of 200 slots serving its queue in order. Probes found room at 64 and 130;
    # the next, sent with 262 out, was the 263rd in line: it got a slot when the 63rd
    # answer freed one. The answers before then say the server serves 263 - 63 at once.
    clock, limit = _two_rooms()
    _probe_behind_a_queue(limit, clock, 262, ahead=63, answers=93)
    assert limit.limit == 200 and limit.ceiling == 200
    assert not limit.slow_start and limit.decreases == 1
    # Answers to requests sent before then waited behind start-up's queue: no evidence.
    limit.on_success("instructions", 11.0, 200, tokens=250)
    assert limit.limit == 200 and limit.decreases == 1
    # The unloaded latency is read again at the slots' load: the first answers, which set
    # it, paid for a cold start (7 s for 250 tokens); 5 s, not a queue, is the server's.
    clock.now = 20.0
    for _ in range(30):
        limit.on_success("instructions", 5.0, 199, tokens=250)
    assert limit.decreases == 1 and limit.limit >= 200
    # Against that, 7.5 s is a queue (1.5 times it); against the first answers' 7 s, even
    # as the mean of later answers draws it down, it was not, and the queue would stand.
    clock.now = 30.0
    for _ in range(30):
        limit.on_success("instructions", 7.5, 199, tokens=250)
    assert limit.decreases == 2 and limit.limit < 200


def test_a_queue_left_by_a_count_read_high_is_not_taken_for_the_unloaded_latency() -> None:
    # The probe had fewer ahead of it than the client counted (sends it overtook): start-up
    # ends at 220 on a server of 200, and the answers at that load carry a short queue.
    clock, limit = _two_rooms()
    _probe_behind_a_queue(limit, clock, 262, ahead=43, answers=73)
    assert limit.limit == 220 and not limit.slow_start
    base = limit._kinds["instructions"].base
    clock.now = 20.0
    for _ in range(40):
        limit.on_success("instructions", 7.7, 219, tokens=250)  # 1.1 times start-up's
    assert limit._kinds["instructions"].base == pytest.approx(base, rel=0.01)


def test_a_waited_probe_s_count_never_goes_below_the_room_a_probe_found() -> None:
    # Answers read in a burst just before the probe would count more slots freed than its
    # place in line needs: the estimate stops at the load a probe was served at once.
    clock, limit = _two_rooms()
    _probe_behind_a_queue(limit, clock, 262, ahead=200, answers=200)
    assert limit.limit == 131 and not limit.slow_start


def test_a_waited_probe_without_a_probe_served_at_once_only_caps_start_up() -> None:
    # The first probe waited: no probe has shown how long one takes with a slot, so the
    # answers while it was out are not counted; its load caps what start-up proves.
    clock = Clock()
    limit = AdaptiveLimit(initial=64, maximum=1024, clock=clock)
    limit.on_probe(64)
    for _ in range(20):
        limit.on_success("instructions", 2.0, 60)
    limit.on_probe(None)
    limit.on_full(64)
    assert limit.limit == 64 and limit.slow_start and limit.decreases == 0


def test_a_burst_refused_out_of_order_lands_at_what_the_server_took() -> None:
    # Start-up sent 364 requests to a server that takes K = 256; its sends reached the
    # server out of order, so some refused ones were sent with few in flight. Read one by
    # one, each refusal says the server held no more than the others still out.
    clock = Clock()
    limit = AdaptiveLimit(initial=364, maximum=1024, clock=clock)
    sent_with = [123, 341, 225, 329, 126, 259, *range(300, 364)] + list(range(150, 188))
    assert len(sent_with) == 364 - 256
    out = 364
    for n in sent_with:
        out -= 1
        limit.on_overload(sent_at=0.0, in_flight=n, remaining=out)
    assert limit.limit == 256 and limit.ceiling == 256 and limit.decreases == 1
    # A refusal after a round trip more, with the server full again, holds it there.
    clock.now = 5.0
    limit.on_overload(sent_at=4.0, in_flight=250, remaining=256)
    assert limit.limit == 256 and limit.decreases == 2


def test_the_acceptance_clock_fills_a_refusing_server_before_any_answer() -> None:
    # A request neither refused nor answered ACCEPT_AFTER after it was sent was taken:
    # each one adds a request, so the limit doubles per acceptance delay, not per answer.
    limit = AdaptiveLimit(initial=16, maximum=1024, clock=Clock())
    assert limit.accept_after is not None
    while limit.accept_after is not None:
        limit.on_accepted(limit.limit)
    assert limit.limit == ACCEPT_BURST
    limit.on_accepted(limit.limit)  # a queueing server takes everything: no further
    assert limit.limit == ACCEPT_BURST
    # The first answers take over (and the clock stops).
    limit2 = AdaptiveLimit(initial=16, maximum=1024, clock=Clock())
    limit2.on_success("instructions", 17.0, 15)
    assert limit2.accept_after is None


def test_a_room_probe_answered_first_lets_the_limit_grow_and_nothing_else_does() -> None:
    limit = AdaptiveLimit(initial=16, maximum=1024, clock=Clock())
    assert limit.probe_after(16) is None  # below the burst the acceptance clock grows it
    while limit.accept_after is not None:
        limit.on_accepted(limit.limit)
    assert limit.limit == ACCEPT_BURST
    assert limit.probe_after(ACCEPT_BURST - 1) is None  # the limit does not bind
    assert limit.probe_after(ACCEPT_BURST) is not None
    assert limit.on_room(ACCEPT_BURST)  # a free slot at 65: the limit doubles
    assert limit.limit == ROOM_GAIN * (ACCEPT_BURST + 1)
    assert limit.accept_after is None  # the probe proved the room: no clock to run
    assert limit.probe_after(limit.limit - 1) is None
    assert limit.probe_after(limit.limit) is not None  # and the next probe asks again
    # A probe that comes back after a refusal says nothing: the refusal marked the capacity.
    limit.on_overload(sent_at=1.0, in_flight=200)
    grown = limit.limit
    assert not limit.on_room(grown)
    assert limit.limit == grown and limit.probe_after(grown) is None
    # ... nor after an answer: answers take over.
    answered = AdaptiveLimit(initial=16, maximum=1024, clock=Clock())
    answered.on_success("instructions", 5.0, 15)
    before = answered.limit
    assert answered.probe_after(before) is None
    assert not answered.on_room(before)
    assert answered.limit == before
    # The maximum holds.
    small = AdaptiveLimit(initial=16, maximum=100, clock=Clock())
    while small.accept_after is not None:
        small.on_accepted(small.limit)
    assert small.on_room(ACCEPT_BURST) and small.limit == 100
    assert small.probe_after(100) is None


def test_the_acceptance_clock_doubles_the_limit_per_delay_to_the_burst() -> None:
    # Wave by wave against a server that takes everything: each delay, the requests sent
    # in the wave before are taken, all still held (no answer yet).
    limit = AdaptiveLimit(initial=16, maximum=1024, clock=Clock())
    sent, taken, waves = 16, 0, 0
    while limit.accept_after is not None:
        waves += 1
        for _ in range(sent - taken):
            limit.on_accepted(sent)
        taken = sent
        sent = limit.limit
    assert limit.limit == ACCEPT_BURST
    assert waves == 2  # 16 -> 32 -> 64; one more request per request taken took three


def test_the_acceptance_delay_follows_the_preflights_round_trip() -> None:
    limit = AdaptiveLimit(initial=16, maximum=1024, clock=Clock())
    assert limit.accept_after == ACCEPT_AFTER  # unknown: a remote API's refusal fits in it
    limit.on_reach(0.001)  # loopback
    assert limit.accept_after == ACCEPT_FLOOR
    limit.on_reach(0.04)  # a second endpoint, farther: its refusals come back last
    assert limit.accept_after == pytest.approx(ACCEPT_MARGIN * 0.04)
    limit.on_reach(0.002)  # a nearer one changes nothing
    assert limit.accept_after == pytest.approx(ACCEPT_MARGIN * 0.04)
    limit.on_reach(1.5)  # a slow listing is no reason to wait longer than before
    assert limit.accept_after == ACCEPT_AFTER
    # Refusals seen say more: ACCEPT_MARGIN times the slowest, above the reach's delay.
    near = AdaptiveLimit(initial=16, maximum=1024, clock=Clock())
    near.on_reach(0.001)
    near._refusal_latency = 0.01
    assert near.accept_delay == ACCEPT_FLOOR
    near._refusal_latency = 0.3
    assert near.accept_delay == pytest.approx(0.9)


def test_the_acceptance_delay_follows_how_slowly_refusals_come() -> None:
    limit = AdaptiveLimit(initial=16, maximum=1024, clock=Clock())
    fast = limit.accept_after
    limit.on_overload(sent_at=0.0, in_flight=17, latency=0.3)  # a remote API's 429
    assert limit.accept_after is None  # out of start-up: the refusal said where it is
    limit3 = AdaptiveLimit(initial=16, maximum=1024, clock=Clock())
    limit3._refusal_latency = 0.3
    assert fast is not None and limit3.accept_after == pytest.approx(0.9)


def _queueing_rounds(
    limit: AdaptiveLimit, clock: Clock, slots: int, rounds: int, noise: float = 0.0
) -> list[tuple[int, float]]:
    """Drive `limit` against a FIFO server of `slots` (unloaded latency 1 s), round by round.

    Each round sends the whole limit; with n in flight the server answers each after
    max(1, n / slots) seconds (waves of `slots`), times a seeded noise of +-`noise`. Returns
    (limit at the round's start, its latency) per round.
    """
    rng = random.Random(7)
    history = []
    for _ in range(rounds):
        n = limit.limit
        latency = max(1.0, n / slots)
        history.append((n, latency))
        for _ in range(n):
            clock.now += latency / n
            noisy = latency * (1 + rng.uniform(-noise, noise))
            limit.on_success("instructions", noisy, n - 1, limit.limit - 1)
    return history


@pytest.mark.parametrize(("slots", "noise"), [(64, 0.0), (64, 0.3), (256, 0.0), (256, 0.3)])
def test_a_queueing_server_is_held_at_its_knee(slots: int, noise: float) -> None:
    # A FIFO server never refuses. Start-up overshoots (16, 64, 256, ...); latency then says
    # how far (n / slots times unloaded), and Little's law takes the limit to the knee.
    clock = Clock()
    limit = AdaptiveLimit(initial=16, maximum=1024, clock=clock)
    history = _queueing_rounds(limit, clock, slots, 120, noise)
    assert not limit.slow_start and limit.decreases >= 1
    late = history[10:]
    # Settled where more requests stop adding throughput: on average at the knee, never
    # far below it (noisy latencies make the knee look lower), and the median latency
    # within 1.5x of unloaded.
    assert statistics.mean(n for n, _ in late) >= slots * 0.85, late
    assert min(n for n, _ in late) >= slots * 0.6, late
    assert statistics.median(latency for _, latency in late) < 1.5
    assert max(latency for _, latency in late) < 1.5


def _fifo_server(
    limit: AdaptiveLimit,
    clock: Clock,
    slots: int,
    answers: int,
    noise: float,
    start_up: tuple[int, float] = (0, 0.0),
) -> list[tuple[float, float]]:
    """Keep `limit` in flight on a FIFO server of `slots` (service 1 s +- `noise`).

    Unlike _queueing_rounds, requests are sent as answers free room, and each waits for
    the slot the requests before it leave: the first burst's answers come in waves a
    service time apart. The first `start_up[0]` answers reach the limit `start_up[1]` s
    late (a busy client in its first burst). Returns (in flight when sent, latency).
    """
    rng = random.Random(11)
    free = [0.0] * slots  # when each slot is next free
    out: list[tuple[float, float, int]] = []  # (answered at, sent at, in flight at send)
    history = []
    while len(history) < answers:
        while len(out) < limit.limit:
            start = max(clock.now, heapq.heappop(free))
            done = start + 1.0 + rng.uniform(-noise, noise)
            heapq.heappush(free, done)
            heapq.heappush(out, (done, clock.now, len(out)))
        done, sent, in_flight = heapq.heappop(out)
        clock.now = done
        late = start_up[1] if len(history) < start_up[0] else 0.0
        limit.on_success("instructions", done - sent + late, in_flight, len(out))
        history.append((float(in_flight), done - sent))
    return history


@pytest.mark.parametrize("slots", [4, 8])
def test_a_small_server_behind_the_first_burst_is_read_from_its_unqueued_answers(
    slots: int,
) -> None:
    # 64 sent before the first answer to a server of a few slots: of its first 50
    # answers most waited a service time or more. The unloaded latency is the first
    # wave's, or the limit would hold a queue of several times the server's slots. (Below
    # four slots one request more is a third or more of the latency: probing for room
    # alone holds the median near 1.5.)
    clock = Clock()
    limit = AdaptiveLimit(initial=64, maximum=1024, clock=clock)
    history = _fifo_server(limit, clock, slots, 200 * slots, noise=0.1)
    late = history[len(history) // 2 :]
    assert statistics.median(latency for _, latency in late) < 1.5, late[-20:]
    assert statistics.mean(n for n, _ in late) + 1 >= slots  # and the server kept full


def test_start_up_s_queue_on_a_small_server_ends_in_one_cut() -> None:
    # 64 in flight on a server of 4 slots: the first 64 answers drain in 16 service times
    # whatever the limit does. The first cut goes to the most that came back unqueued
    # (4), not to half of 64 and then half again once per queued round trip (each as
    # long as that queue), which held 3.5 service times of latency until 40.
    clock = Clock()
    limit = AdaptiveLimit(initial=64, maximum=1024, clock=clock)
    history = _fifo_server(limit, clock, 4, 200, noise=0.1)
    assert limit.decreases >= 1
    after = history[100:]  # from about 25 service times on
    assert statistics.median(latency for _, latency in after) < 1.5, after[:20]


def test_the_cut_ending_start_up_goes_below_the_knee_to_read_the_unloaded_latency() -> None:
    # 64 on a server of 8 slots: the cut that ends start-up goes to half of what came back
    # unqueued (8), where answers show the unloaded latency, and then back to the knee.
    clock = Clock()
    limit = AdaptiveLimit(initial=64, maximum=1024, clock=clock)
    _fifo_server(limit, clock, 8, 24, noise=0.1)
    assert limit.decreases == 1 and limit.limit == 4 and limit.ceiling == 8
    later = _fifo_server(limit, clock, 8, 400, noise=0.1)[200:]
    assert statistics.mean(n for n, _ in later) + 1 >= 8  # back at the knee


def _start_up_cut_after_unqueued_at_250() -> tuple[Clock, AdaptiveLimit]:
    """Answer 60 unqueued at 250 in flight, then 20 queued at 500: start-up's cut."""
    clock = Clock()
    limit = AdaptiveLimit(initial=512, maximum=1024, clock=clock)
    for _ in range(60):
        limit.on_success("short", 0.3, 249, outstanding=400)
    clock.now = 1.0
    for _ in range(20):
        limit.on_success("short", 0.6, 499, outstanding=400)
    return clock, limit


def test_the_cut_ending_start_up_is_made_good_within_two_round_trips() -> None:
    # A server of ~250 slots: start-up's queue ends in a cut to half the knee, where the
    # answers show the unloaded latency. That cut is on purpose, not a knee read low: the
    # limit closes the whole gap per round trip (a limit's worth of unqueued answers), not
    # half of it, which held a server of 256 slots at ~180 for seconds.
    clock, limit = _start_up_cut_after_unqueued_at_250()
    assert limit.decreases == 1 and limit.limit <= limit.ceiling // 2 + 1
    knee = limit.ceiling
    clock.now = 5.0  # the queue has drained
    for _ in range(2):
        for _ in range(limit.limit):
            limit.on_success("short", 0.3, limit.limit - 1, outstanding=limit.limit)
    assert limit.decreases == 1
    assert 0.85 * knee <= limit.limit <= knee, (limit.limit, knee)


def test_a_session_stopped_before_start_up_s_cut_was_made_good_makes_it_good_as_fast() -> None:
    clock, limit = _start_up_cut_after_unqueued_at_250()
    data = limit.snapshot()
    assert data["return_pending"] is True
    again = AdaptiveLimit(initial=16, maximum=1024, clock=clock)
    again.restore(json.loads(json.dumps(data)))  # as limits.json keeps it
    knee = again.ceiling
    assert again.limit <= knee // 2 + 1
    for _ in range(2):
        for _ in range(again.limit):
            again.on_success("short", 0.3, again.limit - 1, outstanding=again.limit)
    assert 0.85 * knee <= again.limit <= knee, (again.limit, knee)


def test_answers_sent_within_the_cut_count_at_once_and_the_old_limit_s_do_not() -> None:
    # After a cut nothing is sent until fewer than the new limit are out, so a request sent
    # within it finds the queue drained: its answer is evidence as soon as it comes. Those
    # answers were ignored for a round trip after the cut, which held start-up's cut to
    # half the knee that much longer. A straggler of the old limit is still old news, even
    # when its send time, read back from its latency, seems to fall after the cut.
    clock, limit = _start_up_cut_after_unqueued_at_250()
    cut_at, cut = clock.now, limit.limit
    round_trip = limit.round_trip
    assert round_trip is not None and limit.decreases == 1
    clock.now = cut_at + 0.25  # within a round trip of the cut
    limit.on_success("short", 0.2, 499, outstanding=cut)  # sent at the old load
    assert limit.limit == cut
    for _ in range(2):  # two rounds sent after the cut, within the limit, unqueued
        for _ in range(limit.limit):
            limit.on_success("short", 0.2, cut - 1, outstanding=limit.limit)
    assert clock.now - 0.2 < cut_at + round_trip
    assert limit.limit >= 0.85 * limit.ceiling, (limit.limit, limit.ceiling)
    assert limit.decreases == 1


def test_a_cut_for_queueing_after_start_up_goes_to_the_knee_not_below_it() -> None:
    # At the knee no request waits; below it slots idle. The knee read on a busy client
    # errs low (its own delays read as queue), so the cut goes to the knee itself: one
    # BACKOFF below it idled 5% more of a 256-slot server until max probing found them.
    clock, limit = _start_up_cut_after_unqueued_at_250()
    clock.now = 5.0
    for _ in range(3):  # back at the knee, then max probing above it
        for _ in range(limit.limit):
            limit.on_success("short", 0.3, limit.limit - 1, outstanding=limit.limit)
    clock.now = 10.0
    decreases = limit.decreases
    for _ in range(30):  # answers sent with 299 others out wait 0.3 s in a queue
        limit.on_success("short", 0.6, 299, outstanding=300)
    assert limit.decreases == decreases + 1
    # Little's law: 300 in flight, each 0.3 s served and ~0.3 s queued: ~150 served at once
    # (the recent mean still holds some unqueued answers, so a little more).
    assert 150 <= limit.ceiling <= 200, limit.ceiling
    assert limit.limit == limit.ceiling


def test_an_unloaded_latency_set_high_by_start_up_comes_down_cut_by_cut() -> None:
    # The first 60 answers of a server of 8 slots are read 0.4 s late: the unloaded latency
    # is taken as 1.4 s, and each cut to the knee that implies leaves answers faster than
    # it. The judgements after the cuts bring it down until the queue is gone.
    clock = Clock()
    limit = AdaptiveLimit(initial=64, maximum=1024, clock=clock)
    history = _fifo_server(limit, clock, 8, 1600, noise=0.1, start_up=(60, 0.4))
    late = history[len(history) // 2 :]
    assert statistics.median(latency for _, latency in late) < 1.5, late[-20:]
    assert statistics.mean(n for n, _ in late) + 1 >= 8


def test_a_new_kind_s_first_answers_do_not_cut_below_a_load_answered_unqueued() -> None:
    # Start-up ends with a cut; then a new kind of request comes back. Its first answers
    # waited behind start-up's queue (1.5 s), later ones did not (0.4 s): they lower the
    # median its unloaded latency is read from while its recent mean still holds the queued
    # ones. Sent with 150 in flight, where the server answered the first kind unqueued
    # with 250, they show no queue: the limit is not cut again.
    clock, limit = _start_up_cut_after_unqueued_at_250()
    assert limit.decreases == 1 and not limit.slow_start
    cut = limit.limit
    clock.now = 5.0
    for latency in [1.5] * 8 + [0.4] * 30:
        limit.on_success("long", latency, 149, outstanding=150)
    assert limit.decreases == 1, limit.limit
    assert limit.limit >= cut


def test_a_queue_behind_a_mix_of_short_and_long_requests_is_read_as_the_wait() -> None:
    # Three short answers (0.3 s) per long one (2.7 s), 300 in flight on a server of about
    # 257 slots: each request waits 0.15 s in the queue. That is half the short kind's
    # latency, but only a sixth of the mix's (0.9 s): the server serves 300 x 0.9 / 1.05
    # at once, not 300 / 1.5 = 200 as the short kind's ratio alone would say.
    clock = Clock()
    limit = AdaptiveLimit(initial=300, maximum=1024, clock=clock)

    def answer(wait: float) -> None:
        for _ in range(3):
            limit.on_success("short", 0.3 + wait, 299, outstanding=0, tokens=1)
        limit.on_success("long", 2.7 + wait, 299, outstanding=0, tokens=100)

    for _ in range(100):  # unloaded (no demand: the limit stays where it is)
        answer(0.0)
    assert limit.decreases == 0 and limit.limit == 300
    clock.now = 10.0
    for _ in range(40):
        answer(0.15)
    assert limit.decreases == 1
    assert 245 <= limit.ceiling <= 270, limit.ceiling


def test_a_queue_is_read_as_the_same_wait_whatever_the_answers_lengths() -> None:
    # One kind of request, answers of 10 or 190 tokens (0.5 s or 4.1 s at 50 tokens/s after
    # 0.3 s): 2.3 s on average. A 0.5 s wait in the queue with 300 in flight means the
    # server serves 300 x 2.3 / 2.8 = 246 at once; per-token latency hides the wait more in
    # long answers than in short ones, so it is read over the mean of 1 / scale.
    clock = Clock()
    limit = AdaptiveLimit(initial=300, maximum=1024, clock=clock)

    def answer(wait: float) -> None:
        for tokens in (10, 190):
            limit.on_success("instances", 0.3 + tokens / 50 + wait, 299, 0, tokens)

    for _ in range(100):
        answer(0.0)
    clock.now = 10.0
    for _ in range(60):
        answer(0.5)
        if limit.decreases:
            break
    assert limit.decreases == 1
    assert 236 <= limit.ceiling <= 256, limit.ceiling


@pytest.mark.parametrize("slots", [64, 256, 1024])
def test_a_queueing_server_is_reached_within_two_round_trips_of_the_first_answer(
    slots: int,
) -> None:
    clock = Clock()
    limit = AdaptiveLimit(initial=16, maximum=1024, clock=clock)
    history = _queueing_rounds(limit, clock, slots, 4)
    # history[0] is the round whose answers are the first; two round trips later:
    assert history[3][0] >= slots or max(n for n, _ in history[:3]) >= slots


def test_learned_state_survives_a_snapshot() -> None:
    clock = Clock()
    limit = AdaptiveLimit(initial=300, maximum=1024, clock=clock)
    limit.on_overload(sent_at=0.0, in_flight=260)
    data = limit.snapshot()
    assert data["return_pending"] is False  # a refusal's cut reads the capacity itself
    again = AdaptiveLimit(initial=16, maximum=1024, clock=clock)
    again.restore(data)
    assert (again.limit, again.ceiling, again.slow_start) == (247, 260, False)
    again.restore({"limit": "lots"})  # unreadable: kept as it was
    assert again.limit == 247
    small = AdaptiveLimit(initial=16, maximum=100, clock=clock)
    small.restore(data)  # a lower --max-concurrency wins
    assert small.limit == 100


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("6m0s", 360.0), ("20ms", 0.02), ("1s", 1.0), ("1.5s", 1.5), ("2", 2.0), ("1h2m3s", 3723.0),
     ("0s", 0.0), ("", None), ("soon", None), ("5x", None), ("1s2", None)],
)  # fmt: skip
def test_openai_reset_durations_are_read(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == (None if seconds is None else pytest.approx(seconds))


def _headers(remaining_requests: int, reset_requests: str, remaining_tokens: int = 10**6,
             reset_tokens: str = "1ms") -> dict[str, str]:  # fmt: skip
    return {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": str(remaining_requests),
        "x-ratelimit-reset-requests": reset_requests,
        "x-ratelimit-limit-tokens": "1000000",
        "x-ratelimit-remaining-tokens": str(remaining_tokens),
        "x-ratelimit-reset-tokens": reset_tokens,
    }


def test_pacer_sends_what_remains_then_as_the_limit_refills() -> None:
    clock = Clock()
    pacer = RatePacer(clock)
    assert not pacer.active and pacer.delay(100) == 0.0  # no headers: never holds
    pacer.observe(_headers(3, "2.5s"), out_requests=1)  # one more is out, maybe uncounted
    sent = 0
    while pacer.delay(10) == 0.0:
        pacer.sent(10)
        sent += 1
    assert sent == 2  # 3 remain, less the one still out: never below zero
    # The 57 missing come back within the 2.5 s reset: one every 2.5 / 57 s.
    assert pacer.delay(10) == pytest.approx(2.5 / 57)
    clock.now = 2.5  # the 57 are back; the one still out may yet count
    for _ in range(57):
        assert pacer.delay(10) == 0.0
        pacer.sent(10)
    assert pacer.delay(10) > 0


def test_pacer_counts_tokens_and_honours_retry_after() -> None:
    clock = Clock()
    pacer = RatePacer(clock)
    pacer.observe(_headers(50, "1s", remaining_tokens=900, reset_tokens="6m0s"), out_tokens=200)
    assert pacer.delay(700) == 0.0
    pacer.sent(700)
    # 900 - 200 out - 700 sent = 0 left; the 999,100 missing refill over six minutes.
    assert pacer.delay(999_100) == pytest.approx(360.0)
    pacer2 = RatePacer(clock)
    pacer2.observe({"retry-after": "20"})
    assert pacer2.active and pacer2.delay(1) == pytest.approx(20.0)
    pacer3 = RatePacer(clock)
    pacer3.observe({"x-ratelimit-limit-tokens": "-1", "x-ratelimit-remaining-tokens": "-1"})
    assert not pacer3.active  # Azure's "no limit"


def test_retry_after_reads_seconds_milliseconds_and_http_dates() -> None:
    now = 1_800_000_000.0
    date = email.utils.formatdate(now + 30.0, usegmt=True)
    assert retry_after({"retry-after": "2.5"}) == 2.5
    assert retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after({"retry-after-ms": "soon", "retry-after": "9"}) == 9.0
    assert retry_after({"retry-after": date}, now=now) == 30.0
    assert retry_after({"retry-after": date}, now=now + 60.0) == 0.0  # already past
    assert retry_after({"retry-after": "-3"}) == 0.0
    hostile = ("\x00\ud800", "9" * 100_000, "Wed, 21 Oct 99999999999 07:28:00 GMT")
    for unreadable in ("soon", "", "inf", "Wed, 99 Foo 2026 07:28:00 GMT", *hostile):
        assert retry_after({"retry-after": unreadable}) is None, unreadable
    assert retry_after({}) is None
    # The pacer holds every send until then, read against the wall clock.
    pacer = RatePacer(Clock())
    pacer.observe({"retry-after": email.utils.formatdate(time.time() + 20.0, usegmt=True)})
    assert 18.0 <= pacer.delay(1) <= 20.0


def test_pacer_keeps_in_flight_to_what_two_round_trips_refill() -> None:
    # More in flight than the limits refill over the answers' round trip would only queue
    # in the pacer; the backend holds the rest at the engine's round-ordered gate instead.
    clock = Clock()
    pacer = RatePacer(clock)
    assert pacer.in_flight_cap(0.1) is None  # no limits stated: no cap
    pacer.observe(_headers(10, "1s"))  # 10 remain; the 50 missing refill at 50 a second
    assert pacer.in_flight_cap(0.1) == 10 + 2 * 5 + 1
    for _ in range(10):
        pacer.sent(100_000)  # what is left of the requests and the tokens is spent
    # Tokens are now the tighter limit: 10**6 a minute is 1/6 of a 100,000-token send a
    # second, so two round trips of 0.1 s refill nothing whole.
    assert pacer.in_flight_cap(0.1) == 1
    clock.now = 6.0  # a tenth of the minute back: one send's worth of tokens
    assert pacer.in_flight_cap(0.1) == 1 + 1


def test_pacer_wait_sleeps_until_covered() -> None:
    async def go() -> int:
        pacer = RatePacer()
        pacer.observe(_headers(1, "50ms"))
        await asyncio.wait_for(pacer.wait(1), 2)
        await asyncio.wait_for(pacer.wait(1), 2)  # held until the 50 ms reset
        return pacer.waits

    assert asyncio.run(go()) >= 1


def test_pacer_reads_an_answer_against_the_sends_after_its_request() -> None:
    # OpenAI states what remains when it admits a request: the answer's headers already
    # count every send before it, so only the sends after it are still to come off.
    clock = Clock()
    pacer = RatePacer(clock)
    marks = [pacer.sent(1) for _ in range(10)]  # ten out before any limit is known
    pacer.observe(_headers(50, "1s"), mark=marks[4])  # the fifth admitted with 50 left
    assert pacer.in_flight_cap(0.0) == 45 + 1  # not 50 less all ten still out
    pacer.observe(_headers(48, "1s"), mark=marks[9])  # an answer never raises the picture
    assert pacer.in_flight_cap(0.0) == 45 + 1


def test_pacer_sends_in_the_order_sends_began_waiting() -> None:
    # A dear send first in line is not overtaken by cheaper ones that came after it. When
    # each waiter took whatever had refilled as it woke, cheap sends passed a dear one again
    # and again: an early round's request starved while later rounds were paid for.
    async def go() -> list[str]:
        pacer = RatePacer()
        pacer.observe(_headers(60, "1ms", remaining_tokens=0, reset_tokens="1s"))
        order: list[str] = []

        async def send(name: str, tokens: int) -> None:
            await pacer.wait(tokens)
            order.append(name)

        dear = asyncio.create_task(send("dear", 300_000))  # 0.3 s of refill
        await asyncio.sleep(0)  # it begins waiting first
        cheap = [asyncio.create_task(send(f"cheap {i}", 20_000)) for i in range(3)]
        await asyncio.wait_for(asyncio.gather(dear, *cheap), 5)
        return order

    assert asyncio.run(go()) == ["dear", "cheap 0", "cheap 1", "cheap 2"]


def test_after_a_429_it_returns_quickly_to_where_refusals_began() -> None:
    clock = Clock()
    limit = AdaptiveLimit(initial=300, maximum=1024, clock=clock)
    limit.on_overload(sent_at=0.0, in_flight=260)  # refused at 260 in flight
    assert limit.limit == int(260 * BACKOFF)  # 247
    clock.now = 1.0  # answers to requests sent after the decrease
    for _ in range(3):  # three round trips at the new limit
        for _ in range(limit.limit):
            limit.on_success("instances", 0.5, limit.limit - 1)
    # Halving the gap each round trip: 13 -> ~6 -> ~3 -> ~1 below, not 3 of 13 back.
    assert 256 <= limit.limit <= 260
    for _ in range(3):  # then one per round trip, probing above it
        for _ in range(limit.limit):
            limit.on_success("instances", 0.5, limit.limit - 1)
    assert 260 <= limit.limit <= 268


def _round_trips(limit: AdaptiveLimit, latency: float, count: int) -> list[int]:
    """Answer `count` round trips of the whole limit after `latency` s; return each's limit."""
    seen = []
    for _ in range(count):
        for _ in range(limit.limit):
            limit.on_success("instances", latency, limit.limit - 1)
        seen.append(limit.limit)
    return seen


def test_above_where_refusals_began_the_step_doubles_until_latency_rises() -> None:
    # A burst of refusals read while 190 others were out put the capacity at 190; the
    # server has 256 slots (the burst reached it out of order). Unqueued answers double
    # the step each round trip (max probing), so 256 is found again within a few round
    # trips, not after 66 of them.
    clock = Clock()
    limit = AdaptiveLimit(initial=200, maximum=1024, clock=clock)
    limit.on_overload(sent_at=0.0, in_flight=200, remaining=190)
    assert limit.limit == 190
    clock.now = 1.0
    assert _round_trips(limit, 0.5, 8)[-1] >= 256
    # Queued answers (1.2 times the unloaded latency: below a cut, above QUEUE_EARLY) put
    # the step back to one request per round trip.
    queued = _round_trips(limit, 0.6, 4)
    assert queued[-1] - queued[0] <= 3  # the first one's answers still show the mean rising


def test_rising_latency_backs_off_but_one_slow_answer_does_not() -> None:
    clock = Clock()
    limit = AdaptiveLimit(initial=32, maximum=1024, clock=clock)
    for _ in range(50):
        limit.on_success("instructions", 1.0, 31)
    grown = limit.limit
    limit.on_success("instructions", 3.0, 31)  # one outlier
    assert limit.decreases == 0
    clock.now = 100.0
    for _ in range(30):  # the server is queueing: latency triples and stays there
        limit.on_success("instructions", 4.0, limit.limit)
    assert limit.decreases >= 1 and not limit.slow_start
    assert limit.limit < grown


def test_latency_is_judged_per_kind_of_request() -> None:
    limit = AdaptiveLimit(initial=8, maximum=4096, clock=Clock())
    for _ in range(200):  # short classify answers and long instruction lists, interleaved
        limit.on_success("classify", 0.3, limit.limit)
        limit.on_success("instructions", 3.0, limit.limit)
    assert limit.decreases == 0 and limit.limit == 8 + 400 * (STARTUP_GAIN - 1)


def test_gate_follows_a_changing_capacity_and_serves_lowest_key_first() -> None:
    capacity = [2]
    order: list[int] = []

    async def go() -> None:
        gate = PriorityGate(lambda: capacity[0])
        await asyncio.wait_for(gate.acquire(0), 1)
        await asyncio.wait_for(gate.acquire(0), 1)
        waiters = [asyncio.create_task(_hold(gate, key, order)) for key in (5, 3, 9, 1)]
        await asyncio.sleep(0)
        assert order == [] and gate.in_use == 2
        capacity[0] = 3  # grows: the next release lets two more in
        gate.release()
        await asyncio.sleep(0)
        assert order == [1, 3]
        capacity[0] = 1  # shrinks below what is in use: nobody new until it drains
        gate.release()
        await asyncio.sleep(0)
        assert order == [1, 3]
        await asyncio.wait_for(asyncio.gather(*waiters), 5)

    async def _hold(gate: PriorityGate, key: int, seen: list[int]) -> None:
        await gate.acquire(key)
        seen.append(key)
        await asyncio.sleep(0.01)
        gate.release()

    asyncio.run(go())
    assert order == [1, 3, 5, 9]


def test_gate_with_an_unbounded_lead_serves_a_group_before_lower_keys() -> None:
    # The end of a run: the last rounds' instruction requests (group 1, keys 7 and 8) go
    # before earlier rounds' later stages (group 0, keys 2 and 3), in their own order.
    order: list[int] = []

    async def go() -> None:
        gate = PriorityGate(lambda: 1)
        await asyncio.wait_for(gate.acquire(), 1)
        waiters = _waiters(gate, ((2, 0), (8, 1), (3, 0), (7, 1)), order)
        await asyncio.sleep(0)
        gate.lead(1, math.inf)
        gate.release()
        await asyncio.wait_for(asyncio.gather(*waiters), 5)

    asyncio.run(go())
    assert order == [8, 7, 2, 3]  # led ones keep the order they came in


def test_gate_lead_ranks_a_group_that_many_keys_early_now_and_later() -> None:
    # Instruction requests (group 1) of round 9, led by 5, rank as round 4: after the later
    # stages of rounds 2 and 3, before round 5's. The lead applies to those already waiting
    # (key 9) and to those that come after it was set (key 7, ranked 2: after the 2 that
    # waited first). Lowering it to 0 ranks them by their own keys again.
    order: list[int] = []

    async def go() -> None:
        gate = PriorityGate(lambda: 1)
        await asyncio.wait_for(gate.acquire(), 1)
        waiters = _waiters(gate, ((5, 0), (9, 1), (2, 0), (3, 0)), order)
        await asyncio.sleep(0)
        gate.lead(1, 5)
        waiters += _waiters(gate, ((7, 1),), order)
        await asyncio.sleep(0)
        gate.release()
        await asyncio.wait_for(asyncio.gather(*waiters), 5)
        order.append(-1)
        await asyncio.wait_for(gate.acquire(), 1)
        later = _waiters(gate, ((6, 1), (4, 0)), order)
        await asyncio.sleep(0)
        gate.lead(1, 0)
        gate.release()
        await asyncio.wait_for(asyncio.gather(*later), 5)

    asyncio.run(go())
    assert order == [2, 7, 3, 9, 5, -1, 4, 6]


def test_gate_holds_a_led_waiter_by_its_own_key() -> None:
    # A lead ranks round 9's instruction request first, but the ceiling (the last round the
    # target needs) is 6: it waits, with a slot free, while round 5's request goes; raising
    # the ceiling lets it go.
    order: list[int] = []

    async def go() -> None:
        gate = PriorityGate(lambda: 2)
        gate.hold_above(6)
        gate.lead(1, 8)
        waiters = _waiters(gate, ((9, 1), (5, 0)), order)
        await asyncio.sleep(0.05)
        assert order == [5] and gate.waiting == 1 and gate.in_use == 0
        gate.hold_above(9)
        await asyncio.wait_for(asyncio.gather(*waiters), 5)

    asyncio.run(go())
    assert order == [5, 9]


def test_the_lead_is_the_rounds_committed_while_a_chain_reaches_its_last_stage() -> None:
    # Self-instruct: 5 commits in 2 s (2 rounds a second); instructions take 2.5 s and
    # classify 0.5 s before the last stage (instances): 3 s, so 6 rounds, with the margin.
    times = [10.0, 10.5, 11.0, 11.5, 12.0]
    stages = {"instructions": 2.5, "classify": 0.5, "instances": 3.0}
    assert head_lead(times, stages) == math.ceil(LEAD_MARGIN * 2.0 * 3.0)
    # With a judge, the chain ends with it: the instances come before it too.
    judged = {**stages, "judge": 1.0}
    assert head_lead(times, judged) == math.ceil(LEAD_MARGIN * 2.0 * 6.0)
    # Alpaca without a judge: one stage, nothing before it.
    assert head_lead(times, {"instructions": 4.0}) == 0
    # Twice the commit rate, twice the lead.
    assert head_lead([t / 2 for t in times], stages) == math.ceil(LEAD_MARGIN * 4.0 * 3.0)
    # Not measured yet: no commits, one commit, or no answers.
    assert head_lead([], stages) == head_lead([10.0], stages) == head_lead(times, {}) == 0


def _waiters(
    gate: PriorityGate, pairs: tuple[tuple[int, int], ...], seen: list[int]
) -> list[asyncio.Task[None]]:
    """Start one waiter per (key, group); each notes its key in `seen` once let in."""
    return [asyncio.create_task(_hold(gate, key, group, seen)) for key, group in pairs]


async def _hold(gate: PriorityGate, key: int, group: int, seen: list[int]) -> None:
    await gate.acquire(key, group)
    seen.append(key)
    await asyncio.sleep(0)
    gate.release()


def test_gate_holds_keys_above_its_ceiling_with_slots_free_until_it_is_raised() -> None:
    # The engine's rounds past the last one the target needs (keys 6 and 9) send nothing,
    # even with slots free; rounds within it (key 2) go at once, and raising the ceiling
    # (a newer estimate, or the finish) lets the held ones go in key order.
    order: list[int] = []

    async def go() -> None:
        gate = PriorityGate(lambda: 4)
        gate.hold_above(5)
        waiters = _waiters(gate, ((9, 0), (2, 0), (6, 0)), order)
        await asyncio.sleep(0.05)
        assert order == [2] and gate.waiting == 2 and gate.in_use == 0
        gate.hold_above(6)
        await asyncio.sleep(0.05)
        assert order == [2, 6]
        gate.hold_above(math.inf)
        await asyncio.wait_for(asyncio.gather(*waiters), 5)

    asyncio.run(go())
    assert order == [2, 6, 9]


def test_gate_lets_a_spare_that_waited_for_a_slot_go_only_with_the_rounds_it_backs() -> None:
    # Rounds up to 4 are needed, 5 is a spare (a margin), 6 is past the ceiling. Two slots.
    # A spare that waits for a slot goes when one frees within a second of a needed round
    # going in; freed at 3 s, the slot stays free. A spare that finds a slot free goes at
    # once. A held one goes when the estimate needs it, or when the finish lifts the rules.
    order: list[int] = []
    clock = Clock()

    async def go() -> None:
        gate = PriorityGate(lambda: 2, clock=clock)
        gate.hold_above(5)
        gate.hold_spares(4, 1.0)
        await asyncio.wait_for(gate.acquire(3), 1)  # needed rounds fill both slots at 0 s
        await asyncio.wait_for(gate.acquire(4), 1)
        first = _waiters(gate, ((5, 0),), order)
        await asyncio.sleep(0.05)
        assert order == []
        clock.now = 0.5
        gate.release()  # half a second after the needed ones went in: the spare goes
        await asyncio.wait_for(asyncio.gather(*first), 5)
        assert order == [5]
        await asyncio.wait_for(gate.acquire(3), 1)  # needed, at 0.5 s: slots full again
        clock.now = 3.0
        later = _waiters(gate, ((5, 0), (6, 0)), order)
        await asyncio.sleep(0.05)
        gate.release()  # at 3 s: the spare that waited is held, the slot stays free
        await asyncio.sleep(0.05)
        assert order == [5] and gate.waiting == 2 and gate.in_use == 1
        await asyncio.wait_for(gate.acquire(5), 1)  # a spare that finds a slot free
        gate.release()
        gate.hold_spares(5, 1.0)  # a newer estimate needs round 5
        await asyncio.sleep(0.05)
        assert order == [5, 5]
        gate.hold_above(math.inf)
        gate.hold_spares(math.inf, math.inf)  # the run's finish lets everything meet it
        await asyncio.wait_for(asyncio.gather(*later), 5)
        gate.release()

    asyncio.run(go())
    assert order == [5, 5, 6]


def test_a_cancelled_waiter_passes_its_grant_on() -> None:
    async def go() -> int:
        gate = PriorityGate(lambda: 1)
        await asyncio.wait_for(gate.acquire(), 1)
        waiter = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        gate.release()
        await asyncio.wait_for(asyncio.gather(waiter, return_exceptions=True), 5)
        await asyncio.wait_for(gate.acquire(), 1)  # the slot was not lost
        return gate.in_use

    assert asyncio.run(go()) == 1
