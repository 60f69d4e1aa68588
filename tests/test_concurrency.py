"""The concurrency limits and the priority gate, driven by tables of events."""

from __future__ import annotations

import asyncio

import pytest

from selfinstruct.concurrency import BACKOFF, AdaptiveLimit, ConcurrencyLimit, PriorityGate


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


def test_slow_start_doubles_each_round_trip_while_in_use() -> None:
    limit = AdaptiveLimit(initial=8, maximum=1024, clock=Clock())
    for expected in (16, 32, 64):
        for _ in range(limit.limit):  # one round trip: every request in flight answers
            limit.on_success("instances", 0.5, limit.limit - 1)
        assert limit.limit == expected
    assert limit.slow_start


def test_no_growth_without_demand() -> None:
    limit = AdaptiveLimit(initial=8, maximum=1024, clock=Clock())
    for _ in range(100):
        limit.on_success("instances", 0.5, 1)  # only 2 of 8 in use
    assert limit.limit == 8


def test_growth_stops_at_the_maximum() -> None:
    limit = AdaptiveLimit(initial=8, maximum=20, clock=Clock())
    for _ in range(100):
        limit.on_success("instances", 0.5, limit.limit)
    assert limit.limit == 20


def test_429_drops_below_what_was_in_flight_then_climbs_back() -> None:
    clock = Clock()
    limit = AdaptiveLimit(initial=100, maximum=1024, clock=clock)
    limit.on_overload(sent_at=0.0, in_flight=80)
    assert limit.limit == int(80 * BACKOFF) and not limit.slow_start
    before = limit.limit
    for _ in range(before + 2):  # about one round trip at the new limit
        limit.on_success("instances", 0.5, limit.limit - 1)
    assert limit.limit == before + 1


def test_a_burst_of_429s_scales_down_once_then_one_per_refusal() -> None:
    clock = Clock()
    limit = AdaptiveLimit(initial=64, maximum=1024, clock=clock)
    clock.now = 10.0
    limit.on_overload(sent_at=9.9, in_flight=64)
    first = limit.limit
    assert first == int(64 * BACKOFF) and limit.decreases == 1
    # Requests sent before that decrease are refused too: the same signal, but each one is
    # a request more than the server takes.
    clock.now = 10.05
    for _ in range(30):
        limit.on_overload(sent_at=9.95, in_flight=64)
    assert limit.decreases == 1 and limit.limit == first - 30
    # One sent after the decrease, a round trip later, is new information.
    clock.now = 12.0
    limit.on_overload(sent_at=11.0, in_flight=first - 30)
    assert limit.decreases == 2 and limit.limit == int((first - 30) * BACKOFF)


def test_after_a_429_it_returns_quickly_to_where_refusals_began() -> None:
    clock = Clock()
    limit = AdaptiveLimit(initial=300, maximum=1024, clock=clock)
    limit.on_overload(sent_at=0.0, in_flight=260)  # refused at 260 in flight
    assert limit.limit == int(260 * BACKOFF)  # 247
    for _ in range(3):  # three round trips at the new limit
        for _ in range(limit.limit):
            limit.on_success("instances", 0.5, limit.limit - 1)
    # Halving the gap each round trip: 13 -> ~6 -> ~3 -> ~1 below, not 3 of 13 back.
    assert 256 <= limit.limit <= 260
    for _ in range(3):  # then one per round trip, probing above it
        for _ in range(limit.limit):
            limit.on_success("instances", 0.5, limit.limit - 1)
    assert 260 <= limit.limit <= 263


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
    limit = AdaptiveLimit(initial=8, maximum=1024, clock=Clock())
    for _ in range(200):  # short classify answers and long instruction lists, interleaved
        limit.on_success("classify", 0.3, limit.limit)
        limit.on_success("instructions", 3.0, limit.limit)
    assert limit.decreases == 0 and limit.limit == 8 + 400  # slow start throughout


def test_gate_follows_a_changing_capacity_and_serves_lowest_key_first() -> None:
    capacity = [2]
    order: list[int] = []

    async def go() -> None:
        gate = PriorityGate(lambda: capacity[0])
        await gate.acquire(0)
        await gate.acquire(0)
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
        await asyncio.gather(*waiters)

    async def _hold(gate: PriorityGate, key: int, seen: list[int]) -> None:
        await gate.acquire(key)
        seen.append(key)
        await asyncio.sleep(0.01)
        gate.release()

    asyncio.run(go())
    assert order == [1, 3, 5, 9]


def test_a_cancelled_waiter_passes_its_grant_on() -> None:
    async def go() -> int:
        gate = PriorityGate(lambda: 1)
        await gate.acquire()
        waiter = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        gate.release()
        await asyncio.gather(waiter, return_exceptions=True)
        await asyncio.wait_for(gate.acquire(), 1)  # the slot was not lost
        return gate.in_use

    assert asyncio.run(go()) == 1
