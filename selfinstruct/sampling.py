"""Choose in-context examples for a prompt: pure, seeded by (run seed, round, slot)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from selfinstruct.prompts import Example
from selfinstruct.records import Task


def rng_for(run_seed: int, round_number: int, slot: int) -> random.Random:
    """Return a generator that depends only on its arguments, never on the global RNG."""
    # str seeds are hashed with SHA-512 by random.seed, so this is stable across runs and
    # platforms, unlike hash() of a tuple.
    return random.Random(f"selfinstruct:{run_seed}:{round_number}:{slot}")


def choose_examples(
    seeds: Sequence[Task],
    machine: Sequence[Task],
    *,
    total: int,
    from_machine: int,
    rng: random.Random,
) -> list[Example]:
    """Pick `from_machine` machine tasks (when there are that many) and fill up with seeds.

    As in Self-Instruct, an early pool with too few machine tasks is topped up with seeds;
    the order is shuffled so the teacher sees no fixed seed/machine layout.
    """
    chosen: list[Task] = []
    if machine and from_machine:
        chosen.extend(rng.sample(machine, min(from_machine, len(machine))))
    chosen.extend(rng.sample(seeds, min(total - len(chosen), len(seeds))))
    rng.shuffle(chosen)
    return [Example(task.instruction, rng.choice(task.instances)) for task in chosen]
