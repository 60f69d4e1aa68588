"""Table tests for Self-Instruct's instance filters: one row per reason."""

from __future__ import annotations

import pytest

from selfinstruct.filters import InstanceCheck, Verdict, check_instances, check_output

Pair = tuple[str, str]

KM = ("5 km", "About 3.11 miles.")
KM10 = ("10 km", "About 6.21 miles.")
KM20 = ("20 km", "About 12.43 miles.")


def _reasons(check: InstanceCheck) -> list[tuple[str, str, str]]:
    """The dropped instances as (reason, input, output); details are checked separately."""
    return [(verdict.reason, task_input, output) for verdict, task_input, output in check.dropped]


CASES: list[tuple[str, list[Pair], int, list[Pair], list[tuple[str, str, str]], str | None]] = [
    # (id, pairs, max_instances, expected kept, expected dropped, expected task verdict)
    ("all_kept", [KM, KM10], 5, [KM, KM10], [], None),
    ("order_preserved", [KM20, KM, KM10], 5, [KM20, KM, KM10], [], None),
    (
        "whitespace_stripped",
        [("  5 km\n", "\nAbout 3.11 miles.  ")],
        5,
        [KM],
        [],
        None,
    ),
    (
        "empty_output",
        [("5 km", ""), KM10],
        5,
        [KM10],
        [("empty_output", "5 km", "")],
        None,
    ),
    (
        "whitespace_output_is_empty",
        [("5 km", " \n\t "), KM10],
        5,
        [KM10],
        [("empty_output", "5 km", "")],
        None,
    ),
    (
        "output_equals_input",
        [("hello", "hello"), KM],
        5,
        [KM],
        [("output_equals_input", "hello", "hello")],
        None,
    ),
    (
        "output_equals_input_after_stripping",
        [(" hello ", "hello\n"), KM],
        5,
        [KM],
        [("output_equals_input", "hello", "hello")],
        None,
    ),
    (
        "output_differs_from_input_by_case",
        [("hello", "HELLO")],
        5,
        [("hello", "HELLO")],
        [],
        None,
    ),
    (
        "output_ends_with_colon",
        [("", "Here are the steps:"), KM],
        5,
        [KM],
        [("output_ends_with_colon", "", "Here are the steps:")],
        None,
    ),
    (
        "output_ends_with_colon_before_whitespace",
        [("", "Here are the steps:\n\n"), KM],
        5,
        [KM],
        [("output_ends_with_colon", "", "Here are the steps:")],
        None,
    ),
    (
        "colon_inside_output_is_fine",
        [("", "Ratio 3:2, done.")],
        5,
        [("", "Ratio 3:2, done.")],
        [],
        None,
    ),
    (
        "duplicate_instance_first_kept",
        [KM, KM10, KM],
        5,
        [KM, KM10],
        [("duplicate_instance", *KM)],
        None,
    ),
    (
        "duplicate_after_stripping",
        [KM, (" 5 km", "About 3.11 miles.\n")],
        5,
        [KM],
        [("duplicate_instance", *KM)],
        None,
    ),
    (
        "duplicate_with_empty_input",
        [("", "A joke."), ("", "A joke.")],
        5,
        [("", "A joke.")],
        [("duplicate_instance", "", "A joke.")],
        None,
    ),
    (
        "conflicting_outputs",
        [KM, KM10, ("5 km", "About 3.1 miles.")],
        5,
        [],
        [],
        "conflicting_outputs",
    ),
    (
        "conflicting_outputs_keeps_earlier_drops",
        [("x", ""), KM, ("5 km", "Five kilometres.")],
        5,
        [],
        [("empty_output", "x", "")],
        "conflicting_outputs",
    ),
    (
        "conflict_found_beyond_max_instances",
        [KM, KM10, KM20, ("5 km", "Five kilometres.")],
        2,
        [],
        [],
        "conflicting_outputs",
    ),
    (
        "rejected_output_does_not_conflict",
        [("5 km", ""), KM],
        5,
        [KM],
        [("empty_output", "5 km", "")],
        None,
    ),
    (
        "empty_input_many_outputs_allowed",
        [("", "Joke one."), ("", "Joke two."), ("  ", "Joke three.")],
        5,
        [("", "Joke one."), ("", "Joke two."), ("", "Joke three.")],
        [],
        None,
    ),
    (
        "too_many_instances",
        [("1", "a"), ("2", "b"), ("3", "c"), ("4", "d")],
        2,
        [("1", "a"), ("2", "b")],
        [("too_many_instances", "3", "c"), ("too_many_instances", "4", "d")],
        None,
    ),
    (
        "exactly_max_instances",
        [("1", "a"), ("2", "b")],
        2,
        [("1", "a"), ("2", "b")],
        [],
        None,
    ),
    (
        "too_many_counted_after_other_drops",
        [("1", "a"), ("2", ""), ("1", "a"), ("3", "c"), ("4", "d")],
        2,
        [("1", "a"), ("3", "c")],
        [
            ("empty_output", "2", ""),
            ("duplicate_instance", "1", "a"),
            ("too_many_instances", "4", "d"),
        ],
        None,
    ),
    ("no_pairs", [], 5, [], [], "no_instances"),
    (
        "no_instances_left",
        [("5 km", ""), ("hi", "hi"), ("", "Steps:")],
        5,
        [],
        [
            ("empty_output", "5 km", ""),
            ("output_equals_input", "hi", "hi"),
            ("output_ends_with_colon", "", "Steps:"),
        ],
        "no_instances",
    ),
    (
        "max_instances_zero",
        [KM],
        0,
        [],
        [("too_many_instances", *KM)],
        "no_instances",
    ),
]


@pytest.mark.parametrize(
    ("pairs", "max_instances", "kept", "dropped", "task_reason"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_check_instances(
    pairs: list[Pair],
    max_instances: int,
    kept: list[Pair],
    dropped: list[tuple[str, str, str]],
    task_reason: str | None,
) -> None:
    check = check_instances(pairs, max_instances)
    assert check.kept == kept
    assert _reasons(check) == dropped
    if task_reason is None:
        assert check.task_verdict is None
    else:
        assert check.task_verdict is not None
        assert check.task_verdict.reason == task_reason


def test_conflict_detail_names_input_and_both_outputs() -> None:
    check = check_instances([KM, ("5 km", "Five kilometres.")], 5)
    assert check.task_verdict is not None
    detail = check.task_verdict.detail
    assert "'5 km'" in detail
    assert "'About 3.11 miles.'" in detail
    assert "'Five kilometres.'" in detail


def test_too_many_detail_names_the_limit() -> None:
    check = check_instances([("1", "a"), ("2", "b")], 1)
    assert check.dropped == [(Verdict("too_many_instances", "kept 1"), "2", "b")]


def test_input_is_not_mutated() -> None:
    pairs = [(" 5 km ", " About 3.11 miles. "), KM]
    copy = list(pairs)
    check_instances(pairs, 5)
    assert pairs == copy


OUTPUT_CASES: list[tuple[str, str, str | None, Verdict | None]] = [
    # (id, input, output, expected verdict)
    ("kept", "5 km", "About 3.11 miles.", None),
    ("none_output", "5 km", None, Verdict("empty_output")),
    ("empty", "", "", Verdict("empty_output")),
    ("equals_input_stripped", " 5 km", "5 km ", Verdict("output_equals_input")),
    ("ends_with_colon", "", "The answer is:", Verdict("output_ends_with_colon")),
    ("empty_input_equals_empty_output", "", "  ", Verdict("empty_output")),
]


@pytest.mark.parametrize(
    ("task_input", "output", "expected"),
    [c[1:] for c in OUTPUT_CASES],
    ids=[c[0] for c in OUTPUT_CASES],
)
def test_check_output_for_instances(
    task_input: str, output: str | None, expected: Verdict | None
) -> None:
    assert check_output(task_input, output) == expected
