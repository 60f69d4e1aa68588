"""Golden and round-trip tests for the Self-Instruct prompts: instructions, classify, instances."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from selfinstruct.parse import ParsedInstance, Unparsed, parse_instances, parse_instruction_list
from selfinstruct.prompts import (
    PromptSet,
    format_instances,
    load_prompts,
    render_classify,
    render_instances,
    render_instruction_list,
)
from selfinstruct.records import Instance

GOLDEN = Path(__file__).parent / "golden"

INSTRUCTIONS = [
    "Give three tips for staying focused while studying.",
    "Rewrite the sentence\n  in the passive voice.",
    "Classify the sentiment of the review as positive or negative.",
]

CLASSIFY_EXAMPLES = [
    ("Classify the sentiment of the review\nas positive or negative.", True),
    ("Write a short poem about the sea.", False),
]

INPUT_FIRST_EXAMPLES: list[tuple[str, list[Instance]]] = [
    (
        "Tell me a joke about computers.",
        [Instance(input="", output="Why did the computer go to the doctor?\nIt had a virus.")],
    ),
    (
        "Convert the distance\n to miles.",
        [
            Instance(input="  5 km ", output="About 3.11 miles."),
            Instance(input="10 km", output="About 6.21 miles.\n"),
        ],
    ),
]

OUTPUT_FIRST_EXAMPLES: list[tuple[str, list[Instance]]] = [
    (
        "Classify the sentiment of the review.",
        [
            Instance(input="The soup was wonderful.", output="Positive"),
            Instance(input=" The soup was cold. ", output=" Negative"),
        ],
    ),
    (
        "Say whether the statement is a fact or an opinion.",
        [
            Instance(input="", output="Opinion"),
            Instance(input="Water boils at 100 C at sea level.", output="Fact"),
        ],
    ),
]


@pytest.fixture
def bundled() -> PromptSet:
    return load_prompts()


def _golden(name: str) -> str:
    # Byte-exact: read without newline translation.
    return (GOLDEN / name).read_bytes().decode("utf-8")


# -- golden prompts -------------------------------------------------------------------------


def test_render_instruction_list_golden(bundled: PromptSet) -> None:
    assert render_instruction_list(bundled, INSTRUCTIONS) == _golden("si_instructions_prompt.txt")


def test_render_classify_golden(bundled: PromptSet) -> None:
    prompt = render_classify(bundled, CLASSIFY_EXAMPLES, "Decide whether the email\nis spam.")
    assert prompt == _golden("si_classify_prompt.txt")


def test_render_instances_input_first_golden(bundled: PromptSet) -> None:
    prompt = render_instances(
        bundled,
        INPUT_FIRST_EXAMPLES,
        "Summarize the\nparagraph in one sentence.",
        output_first=False,
    )
    assert prompt == _golden("si_instances_prompt.txt")


def test_render_instances_output_first_golden(bundled: PromptSet) -> None:
    prompt = render_instances(
        bundled,
        OUTPUT_FIRST_EXAMPLES,
        "Label the animal\nas a mammal or a bird.",
        output_first=True,
    )
    assert prompt == _golden("si_instances_cls_prompt.txt")


# -- how each prompt ends -------------------------------------------------------------------


def test_instruction_list_ends_with_next_number(bundled: PromptSet) -> None:
    prompt = render_instruction_list(bundled, INSTRUCTIONS)
    assert prompt.endswith("\n3. Classify the sentiment of the review as positive or negative.\n4.")


def test_instruction_list_without_examples(bundled: PromptSet) -> None:
    prompt = render_instruction_list(bundled, [])
    assert prompt.endswith("\n\n1.")
    assert parse_instruction_list(prompt, continued=False, truncated=False) == []


@pytest.mark.parametrize(
    "instruction",
    ["Say hi\nto Ann.", "Say hi\r\nto Ann.", "Say hi \n\n  to Ann.", "\n Say hi\tto Ann.\n"],
    ids=["lf", "crlf", "blank_line", "surrounding"],
)
def test_instruction_list_item_flattened(bundled: PromptSet, instruction: str) -> None:
    prompt = render_instruction_list(bundled, [instruction])
    listing = prompt.split("\n\n1. ", 1)[1]
    first, rest = listing.split("\n", 1)
    assert first.startswith("Say hi")
    assert first.endswith("to Ann.")
    assert rest == "2."


def test_classify_ends_with_label(bundled: PromptSet) -> None:
    prompt = render_classify(bundled, CLASSIFY_EXAMPLES, "Decide whether the email\nis spam.")
    assert prompt.endswith("\n\nTask: Decide whether the email is spam.\nClassification:")
    assert prompt.count("Classification: Yes\n") == 1
    assert prompt.count("Classification: No\n") == 1


@pytest.mark.parametrize("output_first", [False, True], ids=["input_first", "output_first"])
def test_instances_end_with_task_line(bundled: PromptSet, output_first: bool) -> None:
    examples = OUTPUT_FIRST_EXAMPLES if output_first else INPUT_FIRST_EXAMPLES
    prompt = render_instances(bundled, examples, "Name a color.", output_first=output_first)
    assert prompt.endswith("\n\nTask: Name a color.\n")
    assert not prompt.endswith("\n\n")


def test_dollar_signs_in_values_are_literal(bundled: PromptSet) -> None:
    examples = [("Add $a and ${b}.", [Instance(input="$5 + $$6", output="$11")])]
    prompt = render_instances(bundled, examples, "Pay $x.", output_first=False)
    assert "Task: Add $a and ${b}.\nExample 1\nInput: $5 + $$6\nOutput: $11\n" in prompt
    assert prompt.endswith("Task: Pay $x.\n")
    listing = render_instruction_list(bundled, ["Add $a and ${b}."])
    assert listing.endswith("\n1. Add $a and ${b}.\n2.")
    classify = render_classify(bundled, [("Cost $5?", True)], "Pay $x.")
    assert "Task: Cost $5?\nClassification: Yes\n" in classify


# -- round trips ----------------------------------------------------------------------------


def test_rendered_instruction_list_reads_back(bundled: PromptSet) -> None:
    prompt = render_instruction_list(bundled, INSTRUCTIONS)
    listing = prompt.split("\n\n", 1)[1]
    expected = [
        "Give three tips for staying focused while studying.",
        "Rewrite the sentence in the passive voice.",
        "Classify the sentiment of the review as positive or negative.",
    ]
    assert parse_instruction_list(listing, continued=False, truncated=False) == expected
    # The intro has no numbered line, so a chat-style parse of the whole prompt agrees.
    assert parse_instruction_list(prompt, continued=False, truncated=False) == expected


def test_format_instances_input_first_layout() -> None:
    text = format_instances(INPUT_FIRST_EXAMPLES[1][1], output_first=False)
    assert text == (
        "Example 1\nInput: 5 km\nOutput: About 3.11 miles.\n"
        "Example 2\nInput: 10 km\nOutput: About 6.21 miles."
    )


def test_format_instances_output_first_layout() -> None:
    text = format_instances(OUTPUT_FIRST_EXAMPLES[0][1], output_first=True)
    assert text == (
        "Label: Positive\nInput: The soup was wonderful.\n"
        "Label: Negative\nInput: The soup was cold."
    )


ROUND_TRIP_CASES: list[tuple[str, list[Instance], bool]] = [
    # (id, instances, output_first)
    (
        "input_first",
        [instance for _, instances in INPUT_FIRST_EXAMPLES for instance in instances],
        False,
    ),
    (
        "input_first_multi_line",
        [
            Instance(input="pear\napple\nfig", output="apple\nfig\npear"),
            Instance(input="", output="1. Rest.\n\n2. Drink water.\n"),
            Instance(input="n/a", output="Not applicable."),  # a no-input marker reads as ""
        ],
        False,
    ),
    ("output_first", list(OUTPUT_FIRST_EXAMPLES[0][1]), True),
    (
        "output_first_multi_line_input",
        [
            Instance(input="Line one.\nLine two.", output="Poem"),
            Instance(input="Just one line.", output=" Prose "),
        ],
        True,
    ),
]


def _expected_pairs(instances: list[Instance], output_first: bool) -> list[ParsedInstance]:
    pairs = []
    for inst in instances:
        task_input = inst.input.strip()
        if task_input.lower() in {"n/a"}:
            task_input = ""
        output = " ".join(inst.output.split()) if output_first else inst.output.strip()
        pairs.append(ParsedInstance(task_input, output))
    return pairs


@pytest.mark.parametrize(
    ("instances", "output_first"),
    [c[1:] for c in ROUND_TRIP_CASES],
    ids=[c[0] for c in ROUND_TRIP_CASES],
)
def test_formatted_instances_read_back(instances: list[Instance], output_first: bool) -> None:
    text = format_instances(instances, output_first=output_first)
    parsed = parse_instances(text, output_first=output_first, truncated=False)
    assert parsed == _expected_pairs(instances, output_first)


def test_output_first_empty_input_reads_back_as_missing_input() -> None:
    # Documented: a classification example without input renders as "(no input)", which
    # the output-first parser refuses (a label needs an input that has it).
    text = format_instances(OUTPUT_FIRST_EXAMPLES[1][1], output_first=True)
    assert text.startswith("Label: Opinion\nInput: (no input)\n")
    parsed = parse_instances(text, output_first=True, truncated=False)
    assert [p.reason if isinstance(p, Unparsed) else p for p in parsed] == [
        "missing_input",
        ParsedInstance("Water boils at 100 C at sea level.", "Fact"),
    ]


def test_teacher_answer_to_rendered_prompt_reads_back(bundled: PromptSet) -> None:
    # A completions-API teacher continues the prompt; what it adds parses on its own.
    prompt = render_instances(bundled, INPUT_FIRST_EXAMPLES, "Name a color.", output_first=False)
    answer = "Example 1\nInput: (no input)\nOutput: Blue\nExample 2\nInput: (no input)\nOutput: Red"
    assert (prompt + answer).endswith("Task: Name a color.\n" + answer)
    assert parse_instances(answer, output_first=False, truncated=False) == [
        ParsedInstance("", "Blue"),
        ParsedInstance("", "Red"),
    ]


# Text that can never spell a field label, an "Example" header, a list number or a
# no-input marker, so a round trip must be exact.
_SAFE_TEXT = st.text(alphabet="abc .\n", max_size=30)


@given(instructions=st.lists(_SAFE_TEXT, max_size=8))
def test_instruction_list_round_trip(instructions: list[str]) -> None:
    prompts = load_prompts()
    listing = render_instruction_list(prompts, instructions).split("\n\n", 1)[1]
    expected = [" ".join(text.split()) for text in instructions if text.strip()]
    assert parse_instruction_list(listing, continued=False, truncated=False) == expected


@given(pairs=st.lists(st.tuples(_SAFE_TEXT, _SAFE_TEXT), max_size=6))
def test_input_first_round_trip(pairs: list[tuple[str, str]]) -> None:
    instances = [Instance(input=i, output=o) for i, o in pairs]
    text = format_instances(instances, output_first=False)
    assert parse_instances(text, output_first=False, truncated=False) == [
        ParsedInstance(i.strip(), o.strip()) for i, o in pairs
    ]


@given(
    pairs=st.lists(
        st.tuples(_SAFE_TEXT.filter(str.strip), _SAFE_TEXT.filter(str.strip)), max_size=6
    )
)
def test_output_first_round_trip(pairs: list[tuple[str, str]]) -> None:
    instances = [Instance(input=i, output=o) for i, o in pairs]
    text = format_instances(instances, output_first=True)
    assert parse_instances(text, output_first=True, truncated=False) == [
        ParsedInstance(i.strip(), " ".join(o.split())) for i, o in pairs
    ]
