"""Table tests for the Self-Instruct stage parsers: instruction list, yes/no, instances."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from selfinstruct.parse import (
    ParsedInstance,
    Unparsed,
    is_truncated,
    parse_alpaca,
    parse_instances,
    parse_instruction_list,
    parse_yes_no,
)
from selfinstruct.records import Candidate
from selfinstruct.text import invalid_char

# Unparsed items compare as ("unparsed", reason): their raw text is for humans, so only a
# few rows below pin it.


def U(reason: str) -> tuple[str, str]:
    return ("unparsed", reason)


def _view_list(items: list[str | Unparsed]) -> list[str | tuple[str, str]]:
    return [U(i.reason) if isinstance(i, Unparsed) else i for i in items]


# Parsed pairs compare as ("pair", input, output).
Seen = tuple[str, str] | tuple[str, str, str]


def _view_instances(items: list[ParsedInstance | Unparsed]) -> list[Seen]:
    return [U(i.reason) if isinstance(i, Unparsed) else ("pair", i.input, i.output) for i in items]


# -- parse_instruction_list -----------------------------------------------------------------

LIST_CASES: list[tuple[str, str, bool, bool, list[str | tuple[str, str]]]] = [
    # (id, teacher text, continued, truncated, expected items)
    ("empty", "", False, False, []),
    ("empty_continued", "", True, False, []),
    ("empty_truncated", "", True, True, []),
    ("whitespace_only", "  \n\t\n ", True, False, []),
    ("whitespace_only_truncated", " \n\n ", False, True, []),
    (
        "completions_continuation",
        " Write a haiku about autumn rain.\n10. Explain how a bill becomes law.\n"
        "11. Suggest a name for a cat.\n",
        True,
        False,
        [
            "Write a haiku about autumn rain.",
            "Explain how a bill becomes law.",
            "Suggest a name for a cat.",
        ],
    ),
    (
        "completions_continuation_without_newline_at_end",
        " Write a haiku about autumn rain.\n10. Explain how a bill becomes law.",
        True,
        False,
        ["Write a haiku about autumn rain.", "Explain how a bill becomes law."],
    ),
    (
        "completions_only_item_nine",
        " Write a haiku about autumn rain.",
        True,
        False,
        ["Write a haiku about autumn rain."],
    ),
    (
        "chat_prefix_is_chatter",
        "Sure! Here are more requests:\n\n10. Explain how a bill becomes law.\n"
        "11. Suggest a name for a cat.",
        False,
        False,
        ["Explain how a bill becomes law.", "Suggest a name for a cat."],
    ),
    (
        "chat_restates_nine",
        "9. Write a haiku about autumn rain.\n10. Explain how a bill becomes law.",
        False,
        False,
        ["Write a haiku about autumn rain.", "Explain how a bill becomes law."],
    ),
    (
        "chat_without_numbers_is_all_chatter",
        "Write a haiku about autumn rain.",
        False,
        False,
        [],
    ),
    (
        "completions_prefix_on_next_line",
        "\nWrite a haiku about autumn rain.\n10. Explain how a bill becomes law.",
        True,
        False,
        ["Write a haiku about autumn rain.", "Explain how a bill becomes law."],
    ),
    (
        "completions_empty_prefix_dropped",
        " \n10. Explain how a bill becomes law.",
        True,
        False,
        ["Explain how a bill becomes law."],
    ),
    (
        "paren_numbers",
        "10) Explain how a bill becomes law.\n11) Suggest a name for a cat.",
        False,
        False,
        ["Explain how a bill becomes law.", "Suggest a name for a cat."],
    ),
    (
        "markdown_bold_numbers",
        "**10.** Explain how a bill becomes law.\n**11)** Suggest a name for a cat.",
        False,
        False,
        ["Explain how a bill becomes law.", "Suggest a name for a cat."],
    ),
    (
        "indented_numbers",
        "  10. Explain how a bill becomes law.\n\t11. Suggest a name for a cat.",
        False,
        False,
        ["Explain how a bill becomes law.", "Suggest a name for a cat."],
    ),
    (
        "multi_line_item_joined",
        "10. Rewrite the paragraph below\n   so that a child\n\tcan follow it.\n"
        "11. Suggest a name for a cat.",
        False,
        False,
        ["Rewrite the paragraph below so that a child can follow it.", "Suggest a name for a cat."],
    ),
    (
        "blank_lines_between_items",
        "\n\n10. Explain how a bill becomes law.\n\n\n11. Suggest a name for a cat.\n\n",
        False,
        False,
        ["Explain how a bill becomes law.", "Suggest a name for a cat."],
    ),
    (
        "blank_line_inside_item_joined",
        "10. Summarize the text.\n\nKeep it under fifty words.\n11. Suggest a name for a cat.",
        False,
        False,
        ["Summarize the text. Keep it under fifty words.", "Suggest a name for a cat."],
    ),
    (
        "crlf_line_ends",
        "10. Explain how a bill becomes law.\r\n11. Suggest a name\r\nfor a cat.\r\n",
        False,
        False,
        ["Explain how a bill becomes law.", "Suggest a name for a cat."],
    ),
    (
        "numbering_restarts",
        "12. Explain how a bill becomes law.\n1. Suggest a name for a cat.\n"
        "2. List three red fruits.",
        False,
        False,
        [
            "Explain how a bill becomes law.",
            "Suggest a name for a cat.",
            "List three red fruits.",
        ],
    ),
    (
        "numbering_skips",
        "10. Explain how a bill becomes law.\n14. Suggest a name for a cat.",
        False,
        False,
        ["Explain how a bill becomes law.", "Suggest a name for a cat."],
    ),
    (
        # Documented limitation: nothing marks where the list ends, so chatter after the
        # last item becomes part of it (the instruction filters and novelty check see it).
        "trailing_chatter_joins_last_item",
        "10. Explain how a bill becomes law.\n11. Suggest a name for a cat.\n\nI hope these help!",
        False,
        False,
        ["Explain how a bill becomes law.", "Suggest a name for a cat. I hope these help!"],
    ),
    (
        "bare_number_dropped",
        "10.\n11. Suggest a name for a cat.",
        False,
        False,
        ["Suggest a name for a cat."],
    ),
    (
        "bare_number_with_spaces_dropped",
        "10.   \n11. Suggest a name for a cat.\n12.",
        False,
        False,
        ["Suggest a name for a cat."],
    ),
    ("only_bare_numbers", "10.\n11)\n**12.**", False, False, []),
    (
        "decimal_mid_line_does_not_split",
        "10. Work out the tip on a meal that costs 17.50 at 15 percent.",
        False,
        False,
        ["Work out the tip on a meal that costs 17.50 at 15 percent."],
    ),
    (
        "decimal_at_line_start_does_not_split",
        "10. Convert the amount to euros:\n17.50 dollars\n3.5 pounds",
        False,
        False,
        ["Convert the amount to euros: 17.50 dollars 3.5 pounds"],
    ),
    (
        "number_mid_line_does_not_split",
        "10. Explain what happened in 1969. Keep it short.",
        False,
        False,
        ["Explain what happened in 1969. Keep it short."],
    ),
    (
        "four_digit_number_at_line_start_does_not_split",
        "10. Describe the year\n1969. It was eventful.",
        False,
        False,
        ["Describe the year 1969. It was eventful."],
    ),
    (
        "truncated_drops_last",
        " Write a haiku about autumn rain.\n10. Explain how a bill becomes law.\n11. Suggest a na",
        True,
        True,
        ["Write a haiku about autumn rain.", "Explain how a bill becomes law.", U("truncated")],
    ),
    (
        "truncated_single_item",
        " Write a haiku about autu",
        True,
        True,
        [U("truncated")],
    ),
    (
        "truncated_chat",
        "Sure!\n10. Explain how a bill becomes law.\n11. Suggest a na",
        False,
        True,
        ["Explain how a bill becomes law.", U("truncated")],
    ),
]


@pytest.mark.parametrize(
    ("text", "continued", "truncated", "expected"),
    [c[1:] for c in LIST_CASES],
    ids=[c[0] for c in LIST_CASES],
)
def test_parse_instruction_list(
    text: str, continued: bool, truncated: bool, expected: list[str | tuple[str, str]]
) -> None:
    assert _view_list(parse_instruction_list(text, continued=continued, truncated=truncated)) == (
        expected
    )


def test_truncated_item_keeps_its_text() -> None:
    items = parse_instruction_list(
        "10. Explain how a bill becomes law.\n11. Suggest a na", continued=False, truncated=True
    )
    assert items[-1] == Unparsed("truncated", "Suggest a na")


def test_truncated_after_bare_number_keeps_the_finished_item() -> None:
    # The answer was cut just after the teacher wrote "11.": item 10 is complete, and the
    # truncated item (11) has no text at all, so nothing should be lost.
    items = parse_instruction_list(
        "10. Explain how a bill becomes law.\n11.", continued=False, truncated=True
    )
    assert items == ["Explain how a bill becomes law."]


# Fragments that exercise the list parser's paths far more often than uniform text does.
_LIST_FRAGMENTS = st.sampled_from(
    [
        "10.",
        "11)",
        "**12.**",
        "1.",
        "17.50",
        " Do a thing.",
        "\n",
        "\n\n",
        "\r\n",
        " ",
        "\t",
        "**",
        "\u2028",
        "\x85",
        "\x1c",
        "é",
    ]
)


def _check_list(items: list[str | Unparsed], truncated: bool) -> None:
    for item in items:
        if isinstance(item, str):
            assert item
            assert item == item.strip()
            assert "\n" not in item
            assert len(item.splitlines()) == 1
            assert invalid_char(item) is None
        else:
            assert isinstance(item, Unparsed)
            assert item.reason in ("truncated", "invalid_text")
            assert item.text
            item.text.encode()  # loggable: no lone surrogate
    # Only a truncated answer loses an item for being cut, and only its last one.
    unparsed = [i for i in items if isinstance(i, Unparsed) and i.reason != "invalid_text"]
    assert unparsed == [] or (truncated and unparsed == [items[-1]])


@given(text=st.text(), continued=st.booleans(), truncated=st.booleans())
def test_instruction_list_never_raises(text: str, continued: bool, truncated: bool) -> None:
    _check_list(parse_instruction_list(text, continued=continued, truncated=truncated), truncated)


@given(
    parts=st.lists(st.one_of(_LIST_FRAGMENTS, st.text(max_size=5)), max_size=30),
    continued=st.booleans(),
    truncated=st.booleans(),
)
def test_instruction_list_never_raises_on_list_like_text(
    parts: list[str], continued: bool, truncated: bool
) -> None:
    _check_list(
        parse_instruction_list("".join(parts), continued=continued, truncated=truncated),
        truncated,
    )


# -- parse_yes_no ---------------------------------------------------------------------------

YES_NO_CASES: list[tuple[str, str, bool | None]] = [
    # (id, answer, expected)
    ("yes", "Yes", True),
    ("no", "No", False),
    ("yes_lower", "yes", True),
    ("no_upper", "NO", False),
    ("yes_leading_space", " Yes", True),
    ("no_leading_newline", "\n  No", False),
    ("yes_trailing_newline", "Yes\n", True),
    ("yes_period", "Yes.", True),
    ("no_period", "No.", False),
    ("yes_exclamation", "Yes!", True),
    ("yes_because", "Yes, because the answer is one of two labels.", True),
    ("no_because", "No; the output is free text.", False),
    ("no_colon", "No: it asks for an essay.", False),
    ("yes_bold", "**Yes**", True),
    ("no_bold_period", "**No**.", False),
    ("yes_quoted", '"Yes"', True),
    ("no_single_quoted", "'no'", False),
    ("yes_parenthesized", "(Yes)", True),
    ("true", "true", True),
    ("false", "False", False),
    ("maybe", "Maybe", None),
    ("empty", "", None),
    ("whitespace", "  \n ", None),
    ("it_depends", "It depends", None),
    ("yes_or_no", "Yes/No", None),
    ("yeah", "Yeah", None),
    ("punctuation_only", "**", None),
    ("not_a_classification", "Not a classification task.", None),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in YES_NO_CASES], ids=[c[0] for c in YES_NO_CASES]
)
def test_parse_yes_no(text: str, expected: bool | None) -> None:
    assert parse_yes_no(text) is expected


SPLIT_WORD_CASES = [("Y es", None), ("N o", None)]


@pytest.mark.parametrize(
    ("text", "expected"), SPLIT_WORD_CASES, ids=[c[0] for c in SPLIT_WORD_CASES]
)
def test_parse_yes_no_split_word(text: str, expected: bool | None) -> None:
    assert parse_yes_no(text) is expected


@given(text=st.text())
def test_yes_no_never_raises(text: str) -> None:
    assert parse_yes_no(text) in (True, False, None)


# -- parse_instances ------------------------------------------------------------------------


def P(task_input: str, output: str) -> tuple[str, str, str]:
    return ("pair", task_input, output)


INSTANCE_CASES: list[tuple[str, str, bool, bool, list[Seen]]] = [
    # (id, teacher text, output_first, truncated, expected items)
    ("empty", "", False, False, []),
    ("empty_output_first", "", True, False, []),
    ("empty_truncated", "", False, True, []),
    ("whitespace_only", " \n\n\t", True, True, []),
    ("chatter_only", "Sure, here are some examples.", False, False, []),
    (
        "input_first_with_headers",
        "Example 1\nInput: 5 km\nOutput: About 3.11 miles.\n\n"
        "Example 2\nInput: 10 km\nOutput: About 6.21 miles.\n",
        False,
        False,
        [P("5 km", "About 3.11 miles."), P("10 km", "About 6.21 miles.")],
    ),
    (
        "input_first_without_headers",
        "Input: 5 km\nOutput: About 3.11 miles.\nInput: 10 km\nOutput: About 6.21 miles.",
        False,
        False,
        [P("5 km", "About 3.11 miles."), P("10 km", "About 6.21 miles.")],
    ),
    (
        "header_variants",
        "Example 1:\nInput: a\nOutput: b\n**Example 2**\nInput: c\nOutput: d\n"
        "example.\nInput: e\nOutput: f",
        False,
        False,
        [P("a", "b"), P("c", "d"), P("e", "f")],
    ),
    (
        "chatter_before_first_pair",
        "Sure! Here are two examples.\n\nExample 1\nInput: 5 km\nOutput: About 3.11 miles.",
        False,
        False,
        [P("5 km", "About 3.11 miles.")],
    ),
    (
        "bold_labels",
        "**Input:** 5 km\n**Output:** About 3.11 miles.\n**Input**: 10 km\n"
        "**Output**: About 6.21 miles.",
        False,
        False,
        [P("5 km", "About 3.11 miles."), P("10 km", "About 6.21 miles.")],
    ),
    (
        "no_input_marker",
        "Example 1\nInput: (no input)\nOutput: Why did the scarecrow win? He was outstanding.",
        False,
        False,
        [P("", "Why did the scarecrow win? He was outstanding.")],
    ),
    (
        "no_input_marker_variants",
        "Input: <noinput>\nOutput: a\nInput: None\nOutput: b\nInput: N/A\nOutput: c\n"
        "Input:\nOutput: d",
        False,
        False,
        [P("", "a"), P("", "b"), P("", "c"), P("", "d")],
    ),
    (
        "multi_line_output_kept",
        "Example 1\nInput: (no input)\nOutput: 1. Silence your phone.\n"
        "2. Work in 25-minute blocks.\n\n  3. Take breaks.\n\nExample 2\nInput: x\nOutput: y",
        False,
        False,
        [
            P("", "1. Silence your phone.\n2. Work in 25-minute blocks.\n\n  3. Take breaks."),
            P("x", "y"),
        ],
    ),
    (
        "multi_line_input_kept",
        "Input: pear\napple\nfig\nOutput: apple\nfig\npear",
        False,
        False,
        [P("pear\napple\nfig", "apple\nfig\npear")],
    ),
    (
        "label_mid_line_is_text",
        "Input: What does Output: mean in a log?\nOutput: It marks printed results.",
        False,
        False,
        [P("What does Output: mean in a log?", "It marks printed results.")],
    ),
    (
        "output_without_input",
        "Example 1\nOutput: Why did the scarecrow win? He was outstanding.\n\n"
        "Example 2\nInput: 5 km\nOutput: About 3.11 miles.",
        False,
        False,
        [P("", "Why did the scarecrow win? He was outstanding."), P("5 km", "About 3.11 miles.")],
    ),
    (
        "two_outputs_in_a_row",
        "Output: first joke\nOutput: second joke",
        False,
        False,
        [P("", "first joke"), P("", "second joke")],
    ),
    (
        "input_without_output",
        "Example 1\nInput: 5 km\n\nExample 2\nInput: 10 km\nOutput: About 6.21 miles.",
        False,
        False,
        [U("missing_output"), P("10 km", "About 6.21 miles.")],
    ),
    (
        # Documented limitation: nothing marks where an output ends, so chatter after the
        # last one becomes part of it.
        "trailing_chatter_joins_last_output",
        "Input: 5 km\nOutput: About 3.11 miles.\n\nI hope these help!",
        False,
        False,
        [P("5 km", "About 3.11 miles.\n\nI hope these help!")],
    ),
    (
        "truncated_drops_last",
        "Example 1\nInput: 5 km\nOutput: About 3.11 miles.\n\nExample 2\nInput: 10 km\n"
        "Output: About 6.2",
        False,
        True,
        [P("5 km", "About 3.11 miles."), U("truncated")],
    ),
    (
        "truncated_in_input",
        "Input: 5 km\nOutput: About 3.11 miles.\nInput: 10",
        False,
        True,
        [P("5 km", "About 3.11 miles."), U("truncated")],
    ),
    (
        "truncated_single_pair",
        "Input: 5 km\nOutput: About 3.11 miles.",
        False,
        True,
        [U("truncated")],
    ),
    (
        "output_first_pairs",
        "Label: Positive\nInput: The soup was wonderful.\n\n"
        "Label: Negative\nInput: The soup was cold.",
        True,
        False,
        [P("The soup was wonderful.", "Positive"), P("The soup was cold.", "Negative")],
    ),
    (
        "output_first_class_label",
        "Class label: Positive\nInput: The soup was wonderful.\n"
        "CLASS LABEL: Negative\nInput: The soup was cold.",
        True,
        False,
        [P("The soup was wonderful.", "Positive"), P("The soup was cold.", "Negative")],
    ),
    (
        "output_first_output_is_a_label",
        "Output: Positive\nInput: The soup was wonderful.\n"
        "Output: Negative\nInput: The soup was cold.",
        True,
        False,
        [P("The soup was wonderful.", "Positive"), P("The soup was cold.", "Negative")],
    ),
    (
        "output_first_bold_and_headers",
        "Example 1\n**Label:** Positive\n**Input:** The soup was wonderful.",
        True,
        False,
        [P("The soup was wonderful.", "Positive")],
    ),
    (
        "output_first_multi_line_label_joined_input_kept",
        "Label: Very\n  positive\nInput: The soup\nwas wonderful.",
        True,
        False,
        [P("The soup\nwas wonderful.", "Very positive")],
    ),
    (
        "output_first_label_without_input",
        "Label: Neutral\n\nLabel: Positive\nInput: The soup was wonderful.",
        True,
        False,
        [U("missing_input"), P("The soup was wonderful.", "Positive")],
    ),
    (
        "output_first_no_input_marker",
        "Label: Positive\nInput: (no input)\nLabel: Negative\nInput: The soup was cold.",
        True,
        False,
        [U("missing_input"), P("The soup was cold.", "Negative")],
    ),
    (
        "output_first_empty_input",
        "Label: Positive\nInput:\nLabel: Negative\nInput: The soup was cold.",
        True,
        False,
        [U("missing_input"), P("The soup was cold.", "Negative")],
    ),
    (
        "output_first_input_without_label",
        "Input: The soup was wonderful.",
        True,
        False,
        [U("missing_output")],
    ),
    (
        "output_first_empty_label",
        "Label:\nInput: The soup was wonderful.",
        True,
        False,
        [U("missing_output")],
    ),
    (
        "output_first_truncated_drops_last",
        "Label: Positive\nInput: The soup was wonderful.\nLabel: Negative\nInput: The so",
        True,
        True,
        [P("The soup was wonderful.", "Positive"), U("truncated")],
    ),
    (
        "output_first_truncated_at_label",
        "Label: Positive\nInput: The soup was wonderful.\nLabel:",
        True,
        True,
        [P("The soup was wonderful.", "Positive"), U("truncated")],
    ),
]


@pytest.mark.parametrize(
    ("text", "output_first", "truncated", "expected"),
    [c[1:] for c in INSTANCE_CASES],
    ids=[c[0] for c in INSTANCE_CASES],
)
def test_parse_instances(
    text: str,
    output_first: bool,
    truncated: bool,
    expected: list[Seen],
) -> None:
    items = parse_instances(text, output_first=output_first, truncated=truncated)
    assert _view_instances(items) == expected


def test_truncated_instance_keeps_its_text() -> None:
    items = parse_instances(
        "Input: 5 km\nOutput: About 3.11 miles.\nInput: 10 km\nOutput: About 6.2",
        output_first=False,
        truncated=True,
    )
    last = items[-1]
    assert isinstance(last, Unparsed)
    assert "10 km" in last.text
    assert "About 6.2" in last.text


def test_missing_output_keeps_its_text() -> None:
    (item,) = parse_instances("Input: 5 km\n", output_first=False, truncated=False)
    assert isinstance(item, Unparsed)
    assert item.reason == "missing_output"
    assert "5 km" in item.text


def test_input_first_output_line_starting_with_label_is_kept() -> None:
    text = (
        "Input: Jane Doe, 12 Elm St\nOutput: To: Jane Doe\nLabel: Priority Mail\n"
        "Class label: fragile"
    )
    assert parse_instances(text, output_first=False, truncated=False) == [
        ParsedInstance(
            "Jane Doe, 12 Elm St", "To: Jane Doe\nLabel: Priority Mail\nClass label: fragile"
        )
    ]


def test_truncated_after_bare_header_keeps_the_finished_pair() -> None:
    text = "Example 1\nInput: 5 km\nOutput: About 3.11 miles.\n\nExample 2\n"
    assert parse_instances(text, output_first=False, truncated=True) == [
        ParsedInstance("5 km", "About 3.11 miles.")
    ]


_INSTANCE_FRAGMENTS = st.sampled_from(
    [
        "Example 1\n",
        "**Example 2**\n",
        "Input:",
        "**Input:**",
        "Output:",
        "Label:",
        "Class label:",
        "(no input)",
        "None",
        " Do a thing.",
        "\n",
        "\n\n",
        "\r\n",
        "**",
        " ",
        "\u2028",
        "é",
    ]
)

_REASONS = {"missing_input", "missing_output", "truncated", "invalid_text"}


def _check_instances(items: list[ParsedInstance | Unparsed], truncated: bool) -> None:
    for item in items:
        if isinstance(item, ParsedInstance):
            assert isinstance(item.input, str)
            assert isinstance(item.output, str)
            assert invalid_char(item.input) is None and invalid_char(item.output) is None
        else:
            assert isinstance(item, Unparsed)
            assert item.reason in _REASONS
            item.text.encode()  # loggable: no lone surrogate
    # Only a truncated answer has a "truncated" item, and only as its last one.
    cut = [i for i in items if isinstance(i, Unparsed) and i.reason == "truncated"]
    assert cut == [] or (truncated and cut == [items[-1]])


@given(text=st.text(), output_first=st.booleans(), truncated=st.booleans())
def test_instances_never_raise(text: str, output_first: bool, truncated: bool) -> None:
    _check_instances(
        parse_instances(text, output_first=output_first, truncated=truncated), truncated
    )


@given(
    parts=st.lists(st.one_of(_INSTANCE_FRAGMENTS, st.text(max_size=5)), max_size=30),
    output_first=st.booleans(),
    truncated=st.booleans(),
)
def test_instances_never_raise_on_instance_like_text(
    parts: list[str], output_first: bool, truncated: bool
) -> None:
    items = parse_instances("".join(parts), output_first=output_first, truncated=truncated)
    _check_instances(items, truncated)
    for item in items:
        if output_first and isinstance(item, ParsedInstance):
            assert item.input  # a classification input is never empty
            assert item.output == " ".join(item.output.split())  # labels are one line


# -- the boundary: teacher text is normalised or rejected, per field ----------------------

NORMALISED: list[tuple[str, str, str]] = [
    ("bom", "\ufeffName three rivers.", "Name three rivers."),
    ("zero_width_space", "Name three\u200b rivers.", "Name three rivers."),
    ("bidi_override", "Name \u202ethree\u202c rivers.", "Name three rivers."),
    ("bidi_isolates", "Name \u2066three\u2069 rivers.", "Name three rivers."),
    ("line_separator", "Name three\u2028rivers.", "Name three rivers."),
    ("paragraph_separator", "Name three\u2029rivers.", "Name three rivers."),
    ("crlf", "Name three\r\nrivers.", "Name three rivers."),
    ("zwj_kept", "Explain the emoji \U0001f469\u200d\U0001f52c.", ""),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in NORMALISED], ids=[c[0] for c in NORMALISED]
)
def test_invisible_characters_are_dropped_and_breaks_unified(text: str, expected: str) -> None:
    (item,) = parse_instruction_list(text, continued=True, truncated=False)
    assert item == (expected or text)


INVALID: list[tuple[str, str, str]] = [
    ("lone_surrogate", "Name \ud800three rivers.", "U+D800 (a lone surrogate) at character 5"),
    ("nul", "Name\x00 three rivers.", "U+0000 (a control character) at character 4"),
    ("escape_sequence", "Name \x1b[2Jthree rivers.", "U+001B (a control character)"),
    ("del", "Name three rivers.\x7f", "U+007F (a control character)"),
    ("c1_control", "Name \x9bthree rivers.", "U+009B (a control character)"),
    ("replacement_char", "Name thr\ufffdee rivers.", "U+FFFD (a replacement character"),
]


@pytest.mark.parametrize(("text", "why"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_text_is_rejected_with_a_reason_and_escaped(text: str, why: str) -> None:
    items = parse_instruction_list(f"{text}\n2. Name four lakes.", continued=True, truncated=False)
    bad, good = items
    assert good == "Name four lakes."  # the rest of the answer is kept
    assert isinstance(bad, Unparsed) and bad.reason == "invalid_text"
    assert bad.text.startswith(f"instruction: {why}")
    bad.text.encode()  # the record can be logged: every bad character is an escape
    assert invalid_char(bad.text) is None


def test_alpaca_fields_are_checked_one_by_one() -> None:
    good = "Instruction: Add the numbers.\nInput: 2 and 3\nOutput: 5"
    for field in ("Instruction: Add the\x00 numbers.", "Input: 2 and\ud800 3", "Output: \x1b5"):
        text = "\n".join(field if line.startswith(field[:5]) else line for line in good.split("\n"))
        (item,) = parse_alpaca(text, truncated=False)
        assert isinstance(item, Unparsed) and item.reason == "invalid_text", field
        assert item.text.startswith(field.split(":")[0].lower() + ": U+"), item.text
    (item,) = parse_alpaca("\ufeff" + good.replace("\n", "\r\n"), truncated=False)
    assert item == Candidate("Add the numbers.", "2 and 3", "5")


def test_instance_fields_are_checked() -> None:
    items = parse_instances(
        "Input: 2 and 3\nOutput: 5\u0007\nInput: 4 and 4\u2028\nOutput: 8",
        output_first=False,
        truncated=False,
    )
    assert isinstance(items[0], Unparsed) and items[0].reason == "invalid_text"
    assert items[0].text.startswith("output: U+0007")
    assert items[1] == ParsedInstance("4 and 4", "8")


def test_yes_no_reads_through_invisible_characters() -> None:
    assert parse_yes_no("\ufeff\u202eYes") is True


@pytest.mark.parametrize(
    ("finish_reason", "truncated"),
    [
        ("stop", False),
        ("eos_token", False),  # Hugging Face TGI
        ("stop_sequence", False),  # Hugging Face TGI
        ("length", True),
        ("content_filter", True),
        ("abort", True),  # vLLM
        ("", True),  # missing: a backend keeps it empty, never "stop"
        (None, True),
        ("None", True),  # a null logged and read back as text
        ("STOP!", True),
    ],
)
def test_only_a_known_end_is_not_truncated(finish_reason: str | None, truncated: bool) -> None:
    assert is_truncated(finish_reason) is truncated
