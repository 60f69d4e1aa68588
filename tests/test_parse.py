"""Table tests for parse_alpaca: one row per shape of teacher answer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from selfinstruct.parse import Unparsed, parse_alpaca
from selfinstruct.records import Candidate
from selfinstruct.text import invalid_char

# Items compare as Candidate records, or as ("unparsed", reason) for Unparsed: the raw text
# kept on an Unparsed is for humans, so only a few rows below pin it.
Item = Candidate | tuple[str, str]


def _view(items: list[Candidate | Unparsed]) -> list[Item]:
    return [("unparsed", i.reason) if isinstance(i, Unparsed) else i for i in items]


def C(instruction: str, task_input: str, output: str) -> Candidate:
    return Candidate(instruction=instruction, input=task_input, output=output)


def U(reason: str) -> tuple[str, str]:
    return ("unparsed", reason)


TIPS = C(
    "Give three tips for staying focused while studying.",
    "",
    "1. Silence your phone.\n2. Work in 25-minute blocks.\n3. Take short breaks.",
)
MILES = C("Convert the distance to miles.", "5 km", "About 3.11 miles.")

TIPS_BLOCK = (
    "Instruction: Give three tips for staying focused while studying.\n"
    "Input: (no input)\n"
    "Output: 1. Silence your phone.\n2. Work in 25-minute blocks.\n3. Take short breaks.\n"
)
MILES_BLOCK = (
    "Instruction: Convert the distance to miles.\nInput: 5 km\nOutput: About 3.11 miles.\n"
)

CASES: list[tuple[str, str, bool, list[Item]]] = [
    # (id, teacher text, truncated, expected items)
    ("empty", "", False, []),
    ("empty_truncated", "", True, []),
    ("whitespace_only", "  \n\t\n  ", False, []),
    ("whitespace_only_truncated", " \n\n ", True, []),
    ("chatter_only", "Sure, I can help with that!", False, []),
    (
        "completions_continuation",
        " Give three tips for staying focused while studying.\nInput: (no input)\n"
        "Output: 1. Silence your phone.\n2. Work in 25-minute blocks.\n3. Take short breaks.\n\n"
        "### Task 10\n" + MILES_BLOCK,
        False,
        [TIPS, MILES],
    ),
    (
        "completions_continuation_on_next_line",
        "\nConvert the distance to miles.\nInput: 5 km\nOutput: About 3.11 miles.",
        False,
        [MILES],
    ),
    (
        "chat_restates_header",
        "### Task 9\n" + TIPS_BLOCK + "\n### Task 10\n" + MILES_BLOCK,
        False,
        [TIPS, MILES],
    ),
    (
        "chat_starts_with_instruction_label",
        TIPS_BLOCK + "\n### Task 10\n" + MILES_BLOCK,
        False,
        [TIPS, MILES],
    ),
    (
        "chatter_before_first_header",
        "Sure! Here are some more tasks for your collection.\n\n### Task 9\n" + MILES_BLOCK,
        False,
        [MILES],
    ),
    (
        "extra_blank_lines",
        "\n\n### Task 9\n\nInstruction:\n\nConvert the distance to miles.\n\n\nInput:\n\n5 km\n\n"
        "Output:\n\nAbout 3.11 miles.\n\n\n\n",
        False,
        [MILES],
    ),
    (
        "markdown_bold_labels",
        "**Task 9**\n**Instruction:** Convert the distance to miles.\n**Input:** 5 km\n"
        "**Output:** About 3.11 miles.",
        False,
        [MILES],
    ),
    (
        "markdown_bold_before_colon",
        "**Instruction**: Convert the distance to miles.\n**Input**: 5 km\n"
        "**Output**: About 3.11 miles.",
        False,
        [MILES],
    ),
    (
        "labels_any_case",
        "INSTRUCTION: Convert the distance to miles.\ninput: 5 km\nOutPut: About 3.11 miles.",
        False,
        [MILES],
    ),
    (
        "header_variants",
        "Task 9:\n" + MILES_BLOCK + "\nTask 10.\n" + MILES_BLOCK + "\n## task 11\n" + MILES_BLOCK,
        False,
        [MILES, MILES, MILES],
    ),
    (
        "missing_input",
        "Instruction: Name a prime number greater than 10.\nOutput: 11",
        False,
        [C("Name a prime number greater than 10.", "", "11")],
    ),
    (
        "empty_input",
        "Instruction: Name a prime number greater than 10.\nInput:\nOutput: 11",
        False,
        [C("Name a prime number greater than 10.", "", "11")],
    ),
    (
        "missing_output",
        "Instruction: Name a prime number greater than 10.\nInput: (no input)\n\n"
        "### Task 10\n" + MILES_BLOCK,
        False,
        [U("missing_output"), MILES],
    ),
    (
        "block_without_instruction",
        MILES_BLOCK + "\n### Task 10\nInput: 5 km\nOutput: About 3.11 miles.\n",
        False,
        [MILES, U("unparseable")],
    ),
    (
        "empty_instruction_in_later_block",
        MILES_BLOCK + "\n### Task 10\nInstruction:\nInput: 5 km\nOutput: About 3.11 miles.\n",
        False,
        [MILES, U("unparseable")],
    ),
    (
        "trailing_empty_header",
        MILES_BLOCK + "\n### Task 10\nInstruction:",
        False,
        [MILES, U("unparseable")],
    ),
    (
        "two_tasks_run_together",
        MILES_BLOCK + TIPS_BLOCK,
        False,
        [MILES, TIPS],
    ),
    (
        "numbering_restarts",
        "### Task 1\n"
        + MILES_BLOCK
        + "\n### Task 1\n"
        + TIPS_BLOCK
        + "\n### Task 2\n"
        + MILES_BLOCK,
        False,
        [MILES, TIPS, MILES],
    ),
    (
        "numbering_skips",
        "### Task 9\n" + MILES_BLOCK + "\n### Task 14\n" + TIPS_BLOCK,
        False,
        [MILES, TIPS],
    ),
    (
        "multi_line_output_kept",
        "Instruction: Write a two-line poem about tea.\nOutput: Steam curls from the cup,\n"
        "\n  the kettle hums along.\n",
        False,
        [
            C(
                "Write a two-line poem about tea.",
                "",
                "Steam curls from the cup,\n\n  the kettle hums along.",
            )
        ],
    ),
    (
        "multi_line_input_kept",
        "Instruction: Sort these words.\nInput: pear\napple\nfig\nOutput: apple\nfig\npear",
        False,
        [C("Sort these words.", "pear\napple\nfig", "apple\nfig\npear")],
    ),
    (
        "multi_line_instruction_flattened",
        "Instruction: Rewrite the sentence\n  in the passive voice.\n"
        "Input: The cat chased the dog.\n"
        "Output: The dog was chased by the cat.",
        False,
        [
            C(
                "Rewrite the sentence in the passive voice.",
                "The cat chased the dog.",
                "The dog was chased by the cat.",
            )
        ],
    ),
    (
        "label_mid_line_is_text",
        "Instruction: Explain what Output: means in a log.\nOutput: It marks printed results.",
        False,
        [C("Explain what Output: means in a log.", "", "It marks printed results.")],
    ),
    (
        "truncated_drops_last",
        TIPS_BLOCK + "\n### Task 10\n" + MILES_BLOCK,
        True,
        [TIPS, U("truncated")],
    ),
    (
        "truncated_mid_output",
        "### Task 9\n"
        + MILES_BLOCK
        + "\n### Task 10\nInstruction: List three fruits.\nOutput: 1. Ap",
        True,
        [MILES, U("truncated")],
    ),
    (
        "truncated_last_already_unparsed",
        MILES_BLOCK + "\n### Task 10\nInstruction: List three fruits that are red.\nInp",
        True,
        [MILES, U("truncated")],
    ),
    ("truncated_single_item", MILES_BLOCK, True, [U("truncated")]),
    (
        "truncated_only_unparsed",
        "### Task 9\nInstruction:",
        True,
        [U("truncated")],
    ),
]


@pytest.mark.parametrize(
    ("text", "truncated", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_parse_alpaca(text: str, truncated: bool, expected: list[Item]) -> None:
    assert _view(parse_alpaca(text, truncated=truncated)) == expected


NO_INPUT_MARKERS = [
    "(no input)",
    "<noinput>",
    "<No Input>",
    "noinput",
    "no input",
    "None",
    "none",
    "(none)",
    "N/A",
    "-",
    "  (No Input)  ",
]


@pytest.mark.parametrize("marker", NO_INPUT_MARKERS, ids=NO_INPUT_MARKERS)
def test_no_input_markers_become_empty(marker: str) -> None:
    text = f"Instruction: Name a prime number greater than 10.\nInput: {marker}\nOutput: 11"
    assert parse_alpaca(text, truncated=False) == [
        C("Name a prime number greater than 10.", "", "11")
    ]


@pytest.mark.parametrize(
    "task_input", ["None of the above", "-5", "no input was given, but guess"], ids=str
)
def test_real_inputs_resembling_markers_are_kept(task_input: str) -> None:
    text = f"Instruction: Answer the question.\nInput: {task_input}\nOutput: 42"
    assert parse_alpaca(text, truncated=False) == [C("Answer the question.", task_input, "42")]


def test_truncated_keeps_the_dropped_text() -> None:
    items = parse_alpaca(
        MILES_BLOCK + "Instruction: List three fruits.\nOutput: 1. Ap", truncated=True
    )
    last = items[-1]
    assert isinstance(last, Unparsed)
    assert "List three fruits." in last.text
    assert "1. Ap" in last.text


def test_unparsed_keeps_its_text() -> None:
    (item,) = parse_alpaca("### Task 9\nInstruction: Name a color.\nInput: x\n", truncated=False)
    assert isinstance(item, Unparsed)
    assert item.reason == "missing_output"
    assert "Name a color." in item.text


def test_completions_answer_with_empty_instruction_is_unparseable() -> None:
    text = "\nInput: 5 km\nOutput: About 3.11 miles.\n\n### Task 10\n" + MILES_BLOCK
    assert _view(parse_alpaca(text, truncated=False)) == [U("unparseable"), MILES]


# Fragments that exercise the parser's paths far more often than uniform text does.
_FRAGMENTS = st.sampled_from(
    [
        "### Task 9\n",
        "Task 10:\n",
        "**Task 3**\n",
        "Instruction:",
        "**Instruction:**",
        "Input:",
        "Output:",
        "(no input)",
        "None",
        " Do a thing.",
        "\n",
        "\n\n",
        "**",
        "#",
        " ",
        "\u2028",
        "\r\n",
        "é",
    ]
)


def _check_invariants(items: list[Candidate | Unparsed]) -> None:
    for item in items:
        if isinstance(item, Candidate):
            assert item.instruction.strip() == item.instruction
            assert item.instruction
            assert len(item.instruction.splitlines()) == 1
            assert isinstance(item.output, str)
            # Past the boundary a field holds nothing a dataset must not hold.
            for value in (item.instruction, item.input, item.output):
                assert invalid_char(value) is None and "\r" not in value and "\ufeff" not in value
        else:
            assert isinstance(item, Unparsed)
            assert item.reason in {"unparseable", "missing_output", "truncated", "invalid_text"}
            item.text.encode()  # loggable: no lone surrogate


@given(text=st.text(), truncated=st.booleans())
def test_never_raises_on_arbitrary_text(text: str, truncated: bool) -> None:
    _check_invariants(parse_alpaca(text, truncated=truncated))


@given(
    parts=st.lists(st.one_of(_FRAGMENTS, st.text(max_size=5)), max_size=30),
    truncated=st.booleans(),
)
def test_never_raises_on_task_like_text(parts: list[str], truncated: bool) -> None:
    items = parse_alpaca("".join(parts), truncated=truncated)
    _check_invariants(items)
    if truncated and items:
        last = items[-1]
        assert isinstance(last, Unparsed)
        assert last.reason == "truncated"
