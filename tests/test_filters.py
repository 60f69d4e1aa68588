"""Table tests for the instruction heuristics and the output checks: one row per reason."""

from __future__ import annotations

import pytest

from selfinstruct.config import DEFAULT_BLACKLIST, FilterConfig
from selfinstruct.filters import InstructionFilters, Verdict, check_instances, check_output, clip

DEFAULT = InstructionFilters(FilterConfig(), english=True)


def _words(n: int) -> str:
    return " ".join(["Explain"] + ["thing"] * (n - 1))


CHECK_CASES: list[tuple[str, str, Verdict | None]] = [
    # (id, instruction, expected verdict)
    ("accepted", "Give three tips for staying healthy.", None),
    ("accepted_leading_whitespace", "   Give three tips for staying healthy.  ", None),
    ("accepted_exactly_4_words", "Name three primary colors.", None),
    ("accepted_exactly_150_words", _words(150), None),
    ("accepted_starts_with_digit", "1 reason to learn Python today.", None),
    ("accepted_write_a_python_program", "Write a Python program that reverses a string.", None),
    ("accepted_imagery", "Explain what imagery means in poetry.", None),
    ("accepted_filed", "Describe how a lawsuit is filed in court.", None),
    ("accepted_mapping", "Explain why mapping a function over a list helps.", None),
    ("accepted_going_to", "Explain when going to bed early helps.", None),
    ("too_short_3_words", "Name three colors.", Verdict("too_short", "3 words < 4")),
    ("too_short_empty", "", Verdict("too_short", "0 words < 4")),
    ("too_short_whitespace", "   \n ", Verdict("too_short", "0 words < 4")),
    ("too_short_beats_blacklist", "Draw a map.", Verdict("too_short", "3 words < 4")),
    ("too_long_151_words", _words(151), Verdict("too_long", "151 words > 150")),
    (
        "blacklisted_case_insensitive",
        "Describe the IMAGE below in detail.",
        Verdict("blacklisted_word", "image"),
    ),
    (
        "blacklisted_phrase_case_insensitive",
        "Go To the shop and buy some milk.",
        Verdict("blacklisted_word", "go to"),
    ),
    (
        "blacklisted_before_punctuation",
        "Summarize the attached files, please.",
        Verdict("blacklisted_word", "files"),
    ),
    (
        "blacklisted_beats_write_a_program",
        "Write a program that reads a file line by line.",
        Verdict("blacklisted_word", "file"),
    ),
    (
        "write_a_program",
        "Write a program that prints the first ten primes.",
        Verdict("write_a_program"),
    ),
    (
        "write_a_program_lowercase",
        "write a program to sort a list of numbers.",
        Verdict("write_a_program"),
    ),
    (
        "starts_with_quote",
        '"Repeat this sentence back to me."',
        Verdict("starts_with_punctuation", '"'),
    ),
    (
        "starts_with_dash",
        "- List four fruits that are red.",
        Verdict("starts_with_punctuation", "-"),
    ),
    (
        "starts_with_paren_after_whitespace",
        "  (Optional) List four fruits that are red.",
        Verdict("starts_with_punctuation", "("),
    ),
    (
        "starts_with_non_ascii_inverted_question",
        "¿Cómo se dice hello en inglés?",
        Verdict("starts_with_non_ascii", "¿"),
    ),
    (
        "starts_with_non_ascii_letter",
        "Écris une phrase sur la mer.",
        Verdict("starts_with_non_ascii", "É"),
    ),
    (
        "starts_with_curly_quote",
        "\u201cRepeat this sentence back to me.\u201d",
        Verdict("starts_with_non_ascii", "\u201c"),
    ),
]


@pytest.mark.parametrize(
    ("instruction", "expected"), [c[1:] for c in CHECK_CASES], ids=[c[0] for c in CHECK_CASES]
)
def test_check(instruction: str, expected: Verdict | None) -> None:
    assert DEFAULT.check(instruction) == expected


@pytest.mark.parametrize("word", DEFAULT_BLACKLIST, ids=DEFAULT_BLACKLIST)
def test_each_default_blacklisted_word(word: str) -> None:
    verdict = DEFAULT.check(f"Please explain the {word} shown here today.")
    assert verdict == Verdict("blacklisted_word", word)


@pytest.mark.parametrize("word", DEFAULT_BLACKLIST, ids=DEFAULT_BLACKLIST)
def test_blacklist_is_whole_word(word: str) -> None:
    joined = word.replace(" ", "")
    assert DEFAULT.check(f"Please explain the {joined}xyz shown here today.") is None
    assert DEFAULT.check(f"Please explain the xyz{joined} shown here today.") is None


NON_ASCII_STARTS = [
    "¿Cómo se dice hello en inglés?",
    "Écris une phrase sur la mer.",
    "日本 の 首都 は どこ ですか",
]


@pytest.mark.parametrize("instruction", NON_ASCII_STARTS, ids=["es", "fr", "ja"])
def test_non_ascii_start_allowed_outside_english(instruction: str) -> None:
    assert DEFAULT.check(instruction) is not None
    assert InstructionFilters(FilterConfig(), english=False).check(instruction) is None


def test_punctuation_still_rejected_outside_english() -> None:
    filters = InstructionFilters(FilterConfig(), english=False)
    assert filters.check("- List four fruits that are red.") == Verdict(
        "starts_with_punctuation", "-"
    )


CUSTOM_CASES: list[tuple[str, FilterConfig, str, Verdict | None]] = [
    # (id, config, instruction, expected verdict)
    (
        "custom_blacklist_hits",
        FilterConfig(blacklist=["recipe"]),
        "Share a Recipe for fluffy pancakes.",
        Verdict("blacklisted_word", "recipe"),
    ),
    (
        "custom_blacklist_replaces_default",
        FilterConfig(blacklist=["recipe"]),
        "Describe the image above in detail.",
        None,
    ),
    (
        "custom_blacklist_phrase",
        FilterConfig(blacklist=["look up"]),
        "Look up the weather in Oslo today.",
        Verdict("blacklisted_word", "look up"),
    ),
    (
        "custom_blacklist_regex_chars_are_literal",
        FilterConfig(blacklist=["a.b"]),
        "Explain the word axb to a child.",
        None,
    ),
    (
        "empty_blacklist",
        FilterConfig(blacklist=[]),
        "Describe the image above in detail.",
        None,
    ),
    ("custom_min_words_accepts", FilterConfig(min_words=2), "Say hello.", None),
    (
        "custom_min_words_rejects",
        FilterConfig(min_words=6),
        "Give three tips for sleep.",
        Verdict("too_short", "5 words < 6"),
    ),
    ("custom_max_words_boundary", FilterConfig(max_words=5), "Give three tips for sleep.", None),
    (
        "custom_max_words_rejects",
        FilterConfig(max_words=5),
        "Give three tips for better sleep.",
        Verdict("too_long", "6 words > 5"),
    ),
]


@pytest.mark.parametrize(
    ("config", "instruction", "expected"),
    [c[1:] for c in CUSTOM_CASES],
    ids=[c[0] for c in CUSTOM_CASES],
)
def test_custom_config(config: FilterConfig, instruction: str, expected: Verdict | None) -> None:
    assert InstructionFilters(config).check(instruction) == expected


def test_custom_blacklist_entry_ending_in_punctuation() -> None:
    filters = InstructionFilters(FilterConfig(blacklist=["c++"]))
    assert filters.check("Explain templates in c++ with an example.") == Verdict(
        "blacklisted_word", "c++"
    )


def test_empty_instruction_with_min_words_zero() -> None:
    assert InstructionFilters(FilterConfig(min_words=0)).check("   ") is not None


OUTPUT_CASES: list[tuple[str, str, str | None, Verdict | None]] = [
    # (id, input, output, expected verdict)
    ("accepted", "The soup was cold.", "Negative", None),
    ("accepted_no_input", "", "Paris", None),
    ("accepted_multi_line", "", "Line one.\nLine two.", None),
    ("accepted_case_differs", "paris", "Paris", None),
    ("empty_output_none", "", None, Verdict("empty_output")),
    ("empty_output_empty", "some input", "", Verdict("empty_output")),
    ("empty_output_spaces", "some input", "   ", Verdict("empty_output")),
    ("empty_output_newlines", "", "\n\t\n", Verdict("empty_output")),
    ("output_equals_input", "Paris", "Paris", Verdict("output_equals_input")),
    ("output_equals_input_after_strip", "  Paris\n", "Paris  ", Verdict("output_equals_input")),
]


@pytest.mark.parametrize(
    ("task_input", "output", "expected"),
    [c[1:] for c in OUTPUT_CASES],
    ids=[c[0] for c in OUTPUT_CASES],
)
def test_check_output(task_input: str, output: str | None, expected: Verdict | None) -> None:
    assert check_output(task_input, output) == expected


def test_check_output_rejects_output_ending_with_colon() -> None:
    assert check_output("", "Here are the steps:") is not None


# -- character limits: a word limit alone lets one huge "word" through ---------------------

SIZES = FilterConfig(max_instruction_chars=40, max_input_chars=10, max_output_chars=20)


@pytest.mark.parametrize(
    ("instruction", "expected"),
    [
        ("Explain the big " + "x" * 24, None),  # exactly 40 characters
        (
            "Explain the big " + "x" * 25,
            Verdict("instruction_too_long_chars", "41 characters > 40"),
        ),
        ("  Explain the big " + "x" * 24 + "  ", None),  # surrounding whitespace does not count
        ("x" * 10_000_000, Verdict("instruction_too_long_chars", "10000000 characters > 40")),
    ],
    ids=["at_limit", "over_limit", "whitespace_ignored", "ten_megabyte_word"],
)
def test_instruction_character_limit(instruction: str, expected: Verdict | None) -> None:
    assert InstructionFilters(SIZES).check(instruction) == expected


def test_default_limits_pass_a_long_but_real_instruction() -> None:
    assert DEFAULT.check(_words(150)) is None  # 150 words, ~900 characters
    assert DEFAULT.check("Explain " + "x" * 5_000 + " now.") == Verdict(
        "instruction_too_long_chars", "5013 characters > 4000"
    )


@pytest.mark.parametrize(
    ("task_input", "output", "expected"),
    [
        ("", "y" * 20, None),
        ("x" * 10, "y", None),
        ("x" * 11, "y", Verdict("input_too_long_chars", "11 characters > 10")),
        ("", "y" * 21, Verdict("output_too_long_chars", "21 characters > 20")),
        ("x" * 11, "y" * 21, Verdict("input_too_long_chars", "11 characters > 10")),
        ("", None, None),  # a missing output is check_output's to reject
    ],
)
def test_input_and_output_character_limits(
    task_input: str, output: str | None, expected: Verdict | None
) -> None:
    assert InstructionFilters(SIZES).check_sizes(task_input, output) == expected


def test_instances_over_a_limit_are_dropped_with_clipped_texts() -> None:
    pairs = [("x" * 50, "fine"), ("ok", "y" * 50), ("ok", "fine")]
    checked = check_instances(pairs, 5, max_input_chars=10, max_output_chars=20)
    assert checked.kept == [("ok", "fine")]
    (v1, in1, _), (v2, _, out2) = checked.dropped
    assert v1 == Verdict("input_too_long_chars", "50 characters > 10")
    assert v2 == Verdict("output_too_long_chars", "50 characters > 20")
    assert in1 == "x" * 10 + " [... 40 more characters]"
    assert out2 == "y" * 20 + " [... 30 more characters]"


def test_clip() -> None:
    assert clip("abc", 3) == "abc"
    assert clip("abcd", 3) == "abc [... 1 more characters]"
