"""Choose in-context examples for a prompt: pure, seeded by (run seed, round, slot).

Which examples a round draws is part of what a run produces, so the draws must not change
when Python does. Python guarantees one thing about `random.Random` across versions: that
`random()` gives the same sequence for the same seed. Its `sample`, `shuffle` and `choice`
carry no such promise. Sampling version 2 therefore draws with functions of our own on top
of `random()` alone. Runs started before it (no `sampling` in their identity) keep
version 1, the standard library's functions, so that they resume exactly as they began.
"""

from __future__ import annotations

import random
from collections.abc import MutableSequence, Sequence
from typing import TypeVar

from selfinstruct.prompts import Example
from selfinstruct.records import Task

T = TypeVar("T")

# The algorithm new runs use to draw examples; recorded as `sampling` in a run's identity.
SAMPLING_VERSION = 2
# What a run directory without a recorded version was drawn with (selfinstruct 0.1.0).
LEGACY_SAMPLING = 1
SAMPLING_VERSIONS = (LEGACY_SAMPLING, SAMPLING_VERSION)
_BITS = 53  # random() returns k / 2**53 for a random 53-bit integer k (CPython's docs)


def rng_for(run_seed: int, round_number: int, slot: int) -> random.Random:
    """Return a generator that depends only on its arguments, never on the global RNG."""
    # str seeds are hashed with SHA-512 by random.seed, so this is stable across runs and
    # platforms, unlike hash() of a tuple.
    return random.Random(f"selfinstruct:{run_seed}:{round_number}:{slot}")


def below(rng: random.Random, n: int) -> int:
    """Return a uniform integer in [0, n) from whole 53-bit outputs of `rng.random()`.

    Rejection sampling: outputs at or above the largest multiple of n under 2**53 are
    drawn again, so every result is exactly equally likely (no modulo bias).
    """
    if not 0 < n <= 1 << _BITS:
        raise ValueError(f"below() needs 0 < n <= 2**{_BITS}, got {n}")
    limit = (1 << _BITS) // n * n
    while True:
        k = int(rng.random() * (1 << _BITS))  # exact: random() is k / 2**53
        if k < limit:
            return k % n


def shuffle(rng: random.Random, items: MutableSequence[T]) -> None:
    """Shuffle `items` in place: Fisher-Yates, from the last position down."""
    for i in range(len(items) - 1, 0, -1):
        j = below(rng, i + 1)
        items[i], items[j] = items[j], items[i]


def sample(rng: random.Random, population: Sequence[T], k: int) -> list[T]:
    """Return `k` distinct items of `population` in random order, reading only those.

    A partial Fisher-Yates over positions: the swaps are kept in a dict, so drawing k of a
    large pool costs O(k), not a copy of the pool.
    """
    n = len(population)
    if not 0 <= k <= n:
        raise ValueError(f"sample() needs 0 <= k <= {n}, got {k}")
    moved: dict[int, int] = {}
    picks = []
    for i in range(k):
        j = i + below(rng, n - i)
        picks.append(moved.get(j, j))
        moved[j] = moved.get(i, i)
    return [population[p] for p in picks]


def choice(rng: random.Random, items: Sequence[T]) -> T:
    """Return one item of a non-empty sequence, uniformly."""
    return items[below(rng, len(items))]


class Draws:
    """The random draws of one sampling version, from one generator."""

    def __init__(self, rng: random.Random, version: int = SAMPLING_VERSION) -> None:
        if version not in SAMPLING_VERSIONS:
            raise ValueError(f"unknown sampling version {version}")
        self.rng, self.version = rng, version

    def sample(self, population: Sequence[T], k: int) -> list[T]:
        """Return `k` distinct items of `population` in random order."""
        if self.version == LEGACY_SAMPLING:
            return self.rng.sample(population, k)
        return sample(self.rng, population, k)

    def shuffle(self, items: list[T]) -> None:
        """Shuffle `items` in place."""
        if self.version == LEGACY_SAMPLING:
            self.rng.shuffle(items)
        else:
            shuffle(self.rng, items)

    def choice(self, items: Sequence[T]) -> T:
        """Return one item of a non-empty sequence."""
        if self.version == LEGACY_SAMPLING:
            return self.rng.choice(items)
        return choice(self.rng, items)


def choose_examples(
    seeds: Sequence[Task],
    machine: Sequence[Task],
    *,
    total: int,
    from_machine: int,
    rng: random.Random,
    version: int = SAMPLING_VERSION,
) -> list[Example]:
    """Pick `from_machine` machine tasks (when there are that many) and fill up with seeds.

    As in Self-Instruct, an early pool with too few machine tasks is topped up with seeds;
    the order is shuffled so the teacher sees no fixed seed/machine layout. `version`
    selects the drawing algorithm: the one recorded in the run's identity.
    """
    draws = Draws(rng, version)
    chosen: list[Task] = []
    if machine and from_machine:
        chosen.extend(draws.sample(machine, min(from_machine, len(machine))))
    chosen.extend(draws.sample(seeds, min(total - len(chosen), len(seeds))))
    draws.shuffle(chosen)
    return [Example(task.instruction, draws.choice(task.instances)) for task in chosen]
