"""Turn teacher text into candidate tasks: pure, never raises on any input."""

from __future__ import annotations

import re
from dataclasses import dataclass

from selfinstruct.records import Candidate

# A task header such as "### Task 12", "Task 12:" or "**Task 12**".
_HEADER = re.compile(
    r"^[ \t]*(?:#+[ \t]*)?(?:\*\*)?task[ \t]*\d+[ \t]*[:.]?(?:\*\*)?[ \t]*$", re.M | re.I
)
# A field label at the start of a line, tolerating markdown bold around it.
_FIELD = re.compile(
    r"^[ \t]*(?:\*\*)?(instruction|input|output)(?:\*\*)?[ \t]*:(?:\*\*)?[ \t]*", re.M | re.I
)
# Ways models say "this task has no input".
_NO_INPUT = frozenset(
    {
        "",
        "(no input)",
        "no input",
        "<noinput>",
        "<no input>",
        "noinput",
        "none",
        "(none)",
        "n/a",
        "-",
    }
)


@dataclass(frozen=True)
class Unparsed:
    """A stretch of teacher text that could not become a candidate, and why."""

    reason: str  # "unparseable" | "missing_output" | "truncated"
    text: str


def _split_fields(block: str) -> list[dict[str, str]]:
    """Split a block into tasks, starting a new one at each Instruction label."""
    tasks: list[dict[str, str]] = []
    matches = list(_FIELD.finditer(block))
    for i, match in enumerate(matches):
        label = match.group(1).lower()
        end = matches[i + 1].start() if i + 1 < len(matches) else len(block)
        value = block[match.end() : end].strip()
        if label == "instruction" or not tasks or label in tasks[-1]:
            tasks.append({})
        tasks[-1][label] = value
    return tasks


def parse_alpaca(text: str, *, truncated: bool) -> list[Candidate | Unparsed]:
    """Parse a one-stage answer into candidates, dropping a last task cut by the token limit.

    The prompt ends with the header of the next task and "Instruction:", so the answer may
    start mid-task (completions API) or repeat the header (chat models); either works, and
    chatter before the first task is ignored.
    """
    headers = list(_HEADER.finditer(text))
    bounds = [0] + [m.start() for m in headers] + [len(text)]
    blocks: list[str] = []
    for i in range(len(bounds) - 1):
        block = text[bounds[i] : bounds[i + 1]]
        if i > 0:
            block = block[headers[i - 1].end() - headers[i - 1].start() :]
        elif not _FIELD.search(block):
            continue  # chatter before the first task
        if i == 0:
            first = _FIELD.search(block)
            if first is not None and first.group(1).lower() == "instruction":
                block = block[first.start() :]  # drop chatter before the first label
            else:
                block = "Instruction:" + block  # the answer continues our "Instruction:" line
        if block.strip():
            blocks.append(block)
    results: list[Candidate | Unparsed] = []
    for block in blocks:
        for fields in _split_fields(block):
            instruction = " ".join(fields.get("instruction", "").split())
            raw = "\n".join(f"{k}: {v}" for k, v in fields.items())
            if not instruction:
                results.append(Unparsed("unparseable", raw))
            elif "output" not in fields:
                results.append(Unparsed("missing_output", raw))
            else:
                task_input = fields.get("input", "")
                if task_input.strip().lower() in _NO_INPUT:
                    task_input = ""
                results.append(Candidate(instruction, task_input, fields["output"]))
    if truncated and results:
        last = results.pop()
        text_of_last = (
            last.text
            if isinstance(last, Unparsed)
            else f"instruction: {last.instruction}\ninput: {last.input}\noutput: {last.output}"
        )
        results.append(Unparsed("truncated", text_of_last))
    return results
