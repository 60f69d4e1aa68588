"""Tests for choose_examples: seeded, mixes machine and seed tasks, never repeats a task."""

from __future__ import annotations

import random

import pytest

from selfinstruct.prompts import Example
from selfinstruct.records import Instance, Task
from selfinstruct.sampling import (
    LEGACY_SAMPLING,
    SAMPLING_VERSION,
    below,
    choice,
    choose_examples,
    rng_for,
    sample,
    shuffle,
)


def _tasks(prefix: str, n: int) -> list[Task]:
    return [
        Task(
            id=f"{prefix}{i}",
            instruction=f"{prefix} instruction {i}",
            instances=[
                Instance(input=f"{prefix}{i} input a", output="a"),
                Instance(input=f"{prefix}{i} input b", output="b"),
            ],
            is_classification=False,
            round=None if prefix == "seed" else 0,
        )
        for i in range(n)
    ]


SEEDS = _tasks("seed", 20)
MACHINE = _tasks("machine", 5)


def _choose(
    seeds: list[Task] = SEEDS,
    machine: list[Task] = MACHINE,
    *,
    seed: int = 42,
    round_number: int = 0,
    slot: int = 0,
    total: int = 8,
    from_machine: int = 2,
    version: int = SAMPLING_VERSION,
) -> list[Example]:
    return choose_examples(
        seeds,
        machine,
        total=total,
        from_machine=from_machine,
        rng=rng_for(seed, round_number, slot),
        version=version,
    )


def _sources(examples: list[Example]) -> tuple[int, int]:
    machine = sum(e.instruction.startswith("machine ") for e in examples)
    seed = sum(e.instruction.startswith("seed ") for e in examples)
    return machine, seed


def test_deterministic_for_the_same_seed_round_and_slot() -> None:
    assert _choose(round_number=3, slot=1) == _choose(round_number=3, slot=1)


def test_independent_of_the_global_rng() -> None:
    random.seed(1)
    first = _choose()
    random.seed(2)
    random.random()
    assert _choose() == first


def test_differs_across_rounds_slots_and_run_seeds() -> None:
    variants = [_choose(round_number=r) for r in range(10)]
    variants += [_choose(slot=s) for s in range(1, 5)]
    variants += [_choose(seed=s) for s in (0, 1, 7)]
    keys = {tuple((e.instruction, e.instance.input) for e in v) for v in variants}
    assert len(keys) == len(variants)


def test_rng_for_separates_its_arguments() -> None:
    # "1:23" and "12:3" must not collide.
    assert rng_for(1, 23, 0).random() != rng_for(12, 3, 0).random()
    assert rng_for(0, 1, 2).random() == rng_for(0, 1, 2).random()


# Pin the exact draws: a change here changes what every existing run would sample next, so
# resuming it would silently diverge from its first part.
GOLDEN_42_0_0 = [
    ("seed instruction 19", "seed19 input b"),
    ("seed instruction 5", "seed5 input b"),
    ("machine instruction 4", "machine4 input a"),
    ("seed instruction 14", "seed14 input a"),
    ("seed instruction 12", "seed12 input a"),
    ("seed instruction 11", "seed11 input a"),
    ("machine instruction 1", "machine1 input a"),
    ("seed instruction 15", "seed15 input b"),
]
# Version 1, the standard library's sample/shuffle/choice: what runs of selfinstruct 0.1.0
# drew, and still draw when resumed (their identity records no sampling version).
GOLDEN_42_0_0_V1 = [
    ("seed instruction 4", "seed4 input a"),
    ("seed instruction 16", "seed16 input b"),
    ("seed instruction 0", "seed0 input a"),
    ("seed instruction 14", "seed14 input b"),
    ("machine instruction 2", "machine2 input b"),
    ("seed instruction 18", "seed18 input a"),
    ("machine instruction 4", "machine4 input a"),
    ("seed instruction 17", "seed17 input a"),
]


def _pairs(examples: list[Example]) -> list[tuple[str, str]]:
    return [(e.instruction, e.instance.input) for e in examples]


def test_golden_draw() -> None:
    assert _pairs(_choose()) == GOLDEN_42_0_0


def test_golden_draw_of_version_1() -> None:
    assert _pairs(_choose(version=LEGACY_SAMPLING)) == GOLDEN_42_0_0_V1


class _OnlyRandom(random.Random):
    """A generator whose one method with a cross-version guarantee, random(), is all it has."""

    def _refuse(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("drew with a standard-library algorithm")

    sample = shuffle = choice = choices = randrange = randint = getrandbits = _refuse
    _randbelow = _refuse


def test_draws_use_nothing_but_random() -> None:
    """Python promises the sequence of random() for a seed, and nothing else, across versions."""
    rng = _OnlyRandom("selfinstruct:42:0:0")
    examples = choose_examples(SEEDS, MACHINE, total=8, from_machine=2, rng=rng)
    assert _pairs(examples) == GOLDEN_42_0_0


def test_golden_primitives() -> None:
    rng = rng_for(42, 0, 0)
    assert [below(rng, n) for n in (1, 2, 3, 7, 10, 100, 1000, 2**40)] == [
        0, 0, 2, 1, 0, 75, 425, 542475714121,
    ]  # fmt: skip
    items = list(range(10))
    shuffle(rng_for(7, 3, 1), items)
    assert items == [2, 4, 7, 9, 1, 3, 0, 5, 8, 6]
    assert sample(rng_for(7, 3, 2), range(1000), 6) == [181, 970, 742, 781, 647, 508]
    assert choice(rng_for(7, 3, 3), "abcdef") == choice(rng_for(7, 3, 3), "abcdef")


def test_below_and_sample_are_uniform() -> None:
    rng = rng_for(1, 2, 3)
    counts = [0] * 6
    for _ in range(60_000):
        counts[below(rng, 6)] += 1
    assert all(9_600 < c < 10_400 for c in counts), counts  # 4 sigma: ~97 each
    perms: dict[tuple[int, ...], int] = {}
    for _ in range(6_000):
        drawn = tuple(sample(rng, [0, 1, 2], 3))
        perms[drawn] = perms.get(drawn, 0) + 1
    assert len(perms) == 6 and all(850 < c < 1_150 for c in perms.values()), perms


def test_sample_and_below_check_their_arguments() -> None:
    rng = rng_for(0, 0, 0)
    for bad in (-1, 4):
        with pytest.raises(ValueError):
            sample(rng, [1, 2, 3], bad)
    with pytest.raises(ValueError):
        below(rng, 0)
    assert sample(rng, [1, 2, 3], 0) == []
    assert sorted(sample(rng, [1, 2, 3], 3)) == [1, 2, 3]


MIX_CASES: list[tuple[str, int, int, int, int, tuple[int, int]]] = [
    # (id, seeds, machine tasks, total, from_machine, expected (machine, seed) counts)
    ("no_machine_tasks", 20, 0, 8, 2, (0, 8)),
    ("one_machine_task", 20, 1, 8, 2, (1, 7)),
    ("two_machine_tasks", 20, 2, 8, 2, (2, 6)),
    ("many_machine_tasks", 20, 5, 8, 2, (2, 6)),
    ("from_machine_zero", 20, 5, 8, 0, (0, 8)),
    ("all_from_machine", 20, 5, 4, 4, (4, 0)),
    ("fewer_seeds_than_slots", 3, 0, 8, 2, (0, 3)),
    ("few_seeds_and_machine", 3, 1, 8, 2, (1, 3)),
    ("exactly_enough_seeds", 6, 5, 8, 2, (2, 6)),
]


@pytest.mark.parametrize(
    ("n_seeds", "n_machine", "total", "from_machine", "expected"),
    [c[1:] for c in MIX_CASES],
    ids=[c[0] for c in MIX_CASES],
)
def test_mix_of_seed_and_machine_tasks(
    n_seeds: int, n_machine: int, total: int, from_machine: int, expected: tuple[int, int]
) -> None:
    seeds, machine = SEEDS[:n_seeds], MACHINE[:n_machine]
    for round_number in range(20):
        examples = _choose(
            seeds, machine, round_number=round_number, total=total, from_machine=from_machine
        )
        assert _sources(examples) == expected


@pytest.mark.parametrize("n_machine", [0, 1, 5], ids=lambda n: f"machine{n}")
def test_never_repeats_and_uses_only_the_given_tasks(n_machine: int) -> None:
    machine = MACHINE[:n_machine]
    by_instruction = {t.instruction: t for t in [*SEEDS, *machine]}
    for round_number in range(50):
        for slot in range(4):
            examples = _choose(machine=machine, round_number=round_number, slot=slot)
            instructions = [e.instruction for e in examples]
            assert len(set(instructions)) == len(instructions) == 8
            for example in examples:
                assert example.instance in by_instruction[example.instruction].instances


def test_does_not_modify_its_inputs() -> None:
    seeds, machine = list(SEEDS), list(MACHINE)
    _choose(seeds, machine)
    assert seeds == SEEDS
    assert machine == MACHINE


def test_order_mixes_machine_and_seed_positions() -> None:
    positions = set()
    for round_number in range(30):
        examples = _choose(round_number=round_number)
        positions |= {i for i, e in enumerate(examples) if e.instruction.startswith("machine ")}
    assert positions == set(range(8))
