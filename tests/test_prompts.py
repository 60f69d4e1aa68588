"""Golden and error tests for prompt templates and the one-stage Alpaca prompt."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from selfinstruct.errors import PromptError
from selfinstruct.parse import Unparsed, parse_alpaca
from selfinstruct.prompts import (
    TEMPLATE_VARIABLES,
    Example,
    PromptSet,
    default_prompts_dir,
    load_prompts,
    render_alpaca,
)
from selfinstruct.records import Candidate, Instance

GOLDEN = Path(__file__).parent / "golden" / "alpaca_prompt.txt"

EXAMPLES = [
    Example(
        "Suggest a name for a bakery\n  that sells only sourdough bread.",
        Instance(input="", output="Rise and Shine Loaves"),
    ),
    Example(
        "Classify the sentiment of the restaurant review.",
        Instance(input="  The soup was cold and the waiter ignored us.  ", output="Negative"),
    ),
    Example(
        "Sort the words alphabetically.",
        Instance(input="pear\napple\nfig", output="apple\nfig\npear\n"),
    ),
]


@pytest.fixture
def bundled() -> PromptSet:
    return load_prompts()


@pytest.fixture
def prompt_dir(tmp_path: Path) -> Path:
    """Return a writable copy of the bundled prompt directory."""
    directory = tmp_path / "prompts"
    shutil.copytree(default_prompts_dir(), directory)
    return directory


def test_render_alpaca_golden(bundled: PromptSet) -> None:
    # Byte-exact: read without newline translation.
    expected = GOLDEN.read_bytes().decode("utf-8")
    assert render_alpaca(bundled, EXAMPLES) == expected


def test_rendered_prompt_reads_back_as_its_examples(bundled: PromptSet) -> None:
    items = parse_alpaca(render_alpaca(bundled, EXAMPLES), truncated=False)
    assert items[:3] == [
        Candidate(
            "Suggest a name for a bakery that sells only sourdough bread.",
            "",
            "Rise and Shine Loaves",
        ),
        Candidate(
            "Classify the sentiment of the restaurant review.",
            "The soup was cold and the waiter ignored us.",
            "Negative",
        ),
        Candidate("Sort the words alphabetically.", "pear\napple\nfig", "apple\nfig\npear"),
    ]
    assert len(items) == 4
    assert isinstance(items[3], Unparsed)
    assert items[3].reason == "unparseable"  # the empty "### Task 4 / Instruction:" header


@pytest.mark.parametrize(
    "instruction",
    ["Say hi\nto Ann.", "Say hi\r\nto Ann.", "Say hi \n\n  to Ann.", "\n Say hi\tto Ann.\n"],
    ids=["lf", "crlf", "blank_line", "surrounding"],
)
def test_instruction_flattened_to_one_line(bundled: PromptSet, instruction: str) -> None:
    prompt = render_alpaca(bundled, [Example(instruction, Instance(input="", output="Hi!"))])
    assert "### Task 1\nInstruction: Say hi" in prompt
    assert "to Ann.\nInput: (no input)\n" in prompt
    block = prompt.split("### Task 1\n", 1)[1]
    assert block.splitlines()[0].startswith("Instruction: Say hi")
    assert block.splitlines()[0].endswith("to Ann.")


def test_dollar_signs_in_values_are_literal(bundled: PromptSet) -> None:
    example = Example("Add the prices $a and ${b}.", Instance(input="$5 + $$6", output="$11"))
    prompt = render_alpaca(bundled, [example])
    assert "Instruction: Add the prices $a and ${b}.\nInput: $5 + $$6\nOutput: $11\n" in prompt


def test_no_examples(bundled: PromptSet) -> None:
    prompt = render_alpaca(bundled, [])
    assert "### Task" not in prompt.replace("### Task 1\nInstruction:", "", 1)
    assert prompt.rstrip().endswith("### Task 1\nInstruction:")


def test_render_missing_value_names_file_and_variable(bundled: PromptSet) -> None:
    with pytest.raises(PromptError) as info:
        bundled.render("alpaca_task.txt", number="1")
    assert "alpaca_task.txt" in str(info.value)
    assert "$instruction" in str(info.value)


def test_prompt_ends_right_after_the_instruction_label(bundled: PromptSet) -> None:
    assert render_alpaca(bundled, EXAMPLES).endswith("### Task 4\nInstruction:")


def test_bundled_templates_are_the_declared_ones(bundled: PromptSet) -> None:
    assert set(bundled.templates) == set(TEMPLATE_VARIABLES)
    assert bundled.source == default_prompts_dir()
    assert len(bundled.digest) == 64


def test_custom_dir_with_changed_wording(bundled: PromptSet, prompt_dir: Path) -> None:
    path = prompt_dir / "alpaca.txt"
    text = path.read_text(encoding="utf-8")
    path.write_text("Invent new tasks.\n\n" + text.split("\n\n", 2)[2], encoding="utf-8")
    custom = load_prompts(prompt_dir)
    prompt = render_alpaca(custom, EXAMPLES)
    assert prompt.startswith("Invent new tasks.\n\n")
    assert "### Task 3\nInstruction: Sort the words alphabetically.\n" in prompt
    assert custom.digest != bundled.digest
    assert custom.source == prompt_dir


def test_digest_depends_on_content_not_location(bundled: PromptSet, prompt_dir: Path) -> None:
    assert load_prompts(prompt_dir).digest == bundled.digest


def test_braced_and_escaped_dollars_are_allowed(prompt_dir: Path) -> None:
    (prompt_dir / "alpaca.txt").write_text(
        "Tasks cost $$0.\n\n${examples}### Task ${next}\nInstruction:", encoding="utf-8"
    )
    prompt = render_alpaca(load_prompts(prompt_dir), EXAMPLES[:1])
    assert prompt.startswith("Tasks cost $0.\n\n### Task 1\n")
    assert prompt.endswith("### Task 2\nInstruction:")


ALPACA = "Intro.\n\n$examples### Task $next\nInstruction:"
TASK = "### Task $number\nInstruction: $instruction\nInput: $input\nOutput: $output\n\n"

ERROR_CASES: list[tuple[str, str, bytes | None, list[str]]] = [
    # (id, file to replace, new content or None to delete it, expected message parts)
    (
        "unknown_variable_task",
        "alpaca_task.txt",
        (TASK + "Notes: $notes\n").encode(),
        ["alpaca_task.txt", "unknown variable $notes"],
    ),
    (
        "unknown_braced_variable",
        "alpaca.txt",
        (ALPACA + " ${hint}").encode(),
        ["alpaca.txt", "unknown variable $hint"],
    ),
    (
        "misspelt_variable",
        "alpaca.txt",
        ALPACA.replace("$examples", "$example").encode(),
        ["alpaca.txt", "$example "],
    ),
    (
        "required_variable_unused_input",
        "alpaca_task.txt",
        TASK.replace("Input: $input\n", "").encode(),
        ["alpaca_task.txt", "never uses $input"],
    ),
    (
        "required_variable_unused_next",
        "alpaca.txt",
        ALPACA.replace("$next", "9").encode(),
        ["alpaca.txt", "never uses $next"],
    ),
    (
        "missing_template_file",
        "alpaca_task.txt",
        None,
        ["alpaca_task.txt", "missing"],
    ),
    (
        "lone_dollar",
        "alpaca.txt",
        b"Intro.\nEach task costs $ 5.\n$examples### Task $next\nInstruction:",
        ["alpaca.txt", "line 2", "lone '$'"],
    ),
    (
        "dollar_before_digit",
        "alpaca_task.txt",
        b"### Task $number\nInstruction: $instruction\nInput: $input\nOutput: $output $5\n",
        ["alpaca_task.txt", "line 4", "lone '$'"],
    ),
    (
        "non_utf8",
        "alpaca.txt",
        b"Intro \xff.\n$examples### Task $next\nInstruction:",
        ["alpaca.txt", "UTF-8", "byte 6"],
    ),
]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [c[1:] for c in ERROR_CASES],
    ids=[c[0] for c in ERROR_CASES],
)
def test_template_errors(
    prompt_dir: Path, name: str, content: bytes | None, expected: list[str]
) -> None:
    path = prompt_dir / name
    if content is None:
        path.unlink()
    else:
        path.write_bytes(content)
    with pytest.raises(PromptError) as info:
        load_prompts(prompt_dir)
    message = str(info.value)
    assert message.startswith(f"{path}:")
    for part in expected:
        assert part in message


def test_missing_prompt_directory(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match="prompt directory not found"):
        load_prompts(tmp_path / "nowhere")
