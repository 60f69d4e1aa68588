"""Turn teacher text into candidate tasks: pure, never raises on any input.

This is the one boundary teacher text crosses (DESIGN.md sec. 6): each parser first
normalises the whole answer (selfinstruct.text.normalise), then every field it reads is
either clean or rejected as ``invalid_text``, and what an Unparsed carries is escaped, so
nothing after it (the logs, the pool, exports, the report) meets a control character or a
lone surrogate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from selfinstruct.records import CHARS_PER_TOKEN, Candidate, Completion, Usage
from selfinstruct.text import escape_invalid, invalid_char, normalise

# A task header such as "### Task 12", "Task 12:" or "**Task 12**". Colons may be
# full-width (：), as a teacher writing Chinese tends to type them.
_HEADER = re.compile(
    r"^[ \t]*(?:#+[ \t]*)?(?:\*\*)?task[ \t]*\d+[ \t]*[:.：]?(?:\*\*)?[ \t]*$", re.M | re.I
)
# A field label at the start of a line, tolerating markdown bold around it.
_FIELD = re.compile(
    r"^[ \t]*(?:\*\*)?(instruction|input|output)s?(?:\*\*)?[ \t]*[:：](?:\*\*)?[ \t]*",
    re.M | re.I,
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
        # Chinese teachers: "none", "no input", with ASCII or full-width brackets.
        "无",
        "(无)",
        "（无）",
        "无输入",
        "(无输入)",
        "（无输入）",
        "（no input）",
    }
)


# The tags reasoning models (DeepSeek-R1, Qwen3, QwQ and their distillations) put around
# their thinking when the server leaves it in the text.
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
# The rejection reason of an answer that is only reasoning: its token limit ran out while
# the model was still thinking, so nothing after the reasoning was written.
REASONING_ONLY = "reasoning_only"


@dataclass(frozen=True)
class Reasoned:
    """A teacher's text split into its reasoning and its answer."""

    answer: str
    reasoning: str


def split_reasoning(text: str) -> Reasoned:
    """Split the reasoning a model wrote before its answer from the answer.

    Handles a leading ``<think>...</think>`` block; an unclosed ``<think>`` (the token
    limit ran out inside it: all of it is reasoning); and a stray leading ``</think>``
    with no opening tag, which servers send when the chat template opened the tag in the
    prompt (everything before it is reasoning). Text without either tag is all answer.
    """
    start = len(text) - len(text.lstrip())
    if text.startswith(THINK_OPEN, start):
        body = start + len(THINK_OPEN)
        end = text.find(THINK_CLOSE, body)
        if end < 0:
            return Reasoned("", text[body:])
        return Reasoned(text[end + len(THINK_CLOSE) :].lstrip(), text[body:end])
    end = text.find(THINK_CLOSE)
    if end >= 0 and THINK_OPEN not in text[:end]:
        return Reasoned(text[end + len(THINK_CLOSE) :].lstrip(), text[:end])
    return Reasoned(text, "")


def estimate_reasoning(reasoning: str) -> int:
    """Estimate the tokens of reasoning text at CHARS_PER_TOKEN characters per token."""
    if not reasoning.strip():
        return 0
    return max(1, -(-len(reasoning) // CHARS_PER_TOKEN))


def without_reasoning(
    text: str,
    finish_reason: str,
    usage: Usage,
    *,
    reasoning: str = "",
    reasoning_tokens: int | None = None,
) -> Completion:
    """Return the answer with its reasoning removed and the reasoning's tokens counted.

    `reasoning` is what the server sent in a separate field (vLLM's and DeepSeek's
    ``reasoning_content``, or ``reasoning``); reasoning inside `text` is split off too
    (split_reasoning). `reasoning_tokens` is the server's count, when it gave one; else
    the count is estimated from the removed text and marked as an estimate.
    """
    split = split_reasoning(text)
    removed = "\n".join(r for r in (reasoning, split.reasoning) if r)
    if reasoning_tokens is not None and (reasoning_tokens > 0 or not removed.strip()):
        counted, estimated = reasoning_tokens, False
    else:
        counted, estimated = estimate_reasoning(removed), bool(removed.strip())
    if usage.completion_tokens:
        counted = min(counted, usage.completion_tokens)  # a part of them, never more
    usage = Usage(usage.prompt_tokens, usage.completion_tokens, counted, estimated)
    return Completion(split.answer, finish_reason, usage)


def reasoning_only(completion: Completion) -> bool:
    """Say whether an answer is only reasoning: thinking was counted, nothing came after it.

    Such an answer is no answer (its token limit was spent thinking); every stage rejects
    it with reason REASONING_ONLY.
    """
    return completion.usage.reasoning_tokens > 0 and not completion.text.strip()


def reasoning_detail(completion: Completion, limit: str = "the token limit") -> str:
    """Describe a reasoning-only answer for its rejection line; `limit` names the setting."""
    usage = completion.usage
    about = "about " if usage.reasoning_estimated else ""
    return (
        f"the answer was only reasoning ({about}{usage.reasoning_tokens} reasoning tokens, "
        f"finish_reason {completion.finish_reason or 'missing'}); a reasoning model may need "
        f"a larger {limit}"
    )


# The finish reasons that say an answer ended on its own (a stop sequence or the end of
# text): OpenAI's and vLLM's "stop"; Hugging Face TGI's "eos_token" and "stop_sequence".
# Anything else, missing or unknown included ("length", "content_filter", "abort", ""),
# may have cut the last item.
COMPLETE_FINISH_REASONS = frozenset({"stop", "eos_token", "stop_sequence"})


def is_truncated(finish_reason: str | None) -> bool:
    """Say whether an answer may end mid-item: a missing or unknown finish reason is not "stop"."""
    return finish_reason not in COMPLETE_FINISH_REASONS


@dataclass(frozen=True)
class Unparsed:
    """A stretch of teacher text that could not become a candidate, and why."""

    reason: str  # "unparseable" | "missing_output" | "truncated" | "invalid_text" | ...
    text: str  # escaped (selfinstruct.text.escape_invalid): safe to log


def _unparsed(reason: str, text: str) -> Unparsed:
    return Unparsed(reason, escape_invalid(text))


def _invalid(fields: dict[str, str], raw: str) -> Unparsed | None:
    """Reject a task or pair when one of its fields holds text a dataset must not hold."""
    for name, value in fields.items():
        if (found := invalid_char(value)) is not None:
            return _unparsed("invalid_text", f"{name}: {found}; {raw}")
    return None


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
    text = normalise(text)
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
            if (invalid := _invalid(fields, raw)) is not None:
                results.append(invalid)
            elif not instruction:
                results.append(_unparsed("unparseable", raw))
            elif "output" not in fields:
                results.append(_unparsed("missing_output", raw))
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


# A numbered item such as "12. ...", "12) ..." or "**12.** ...", or in Chinese "12、..."
# (the enumeration comma needs no space after it).
_ITEM = re.compile(
    r"^[ \t]*(?:\*\*)?(\d{1,3})(?:[.)](?:\*\*)?(?:[ \t]+|$)|、(?:\*\*)?[ \t]*)", re.M
)


def parse_instruction_list(text: str, *, continued: bool, truncated: bool) -> list[str | Unparsed]:
    """Parse a continued numbered list into instructions.

    With `continued` (completions API) the text before the first number finishes the item
    the prompt opened; otherwise (chat models) it is chatter and ignored. Lines without a
    number belong to the item above. A last item cut by the token limit is dropped.
    """
    text = normalise(text)
    matches = list(_ITEM.finditer(text))
    if truncated and matches and not text[matches[-1].end() :].strip():
        truncated = False  # the cut fell after a bare number: the item before it is whole
    pieces: list[str] = []
    if continued:
        pieces.append(text[: matches[0].start()] if matches else text)
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        pieces.append(text[match.end() : end])
    results: list[str | Unparsed] = []
    for piece in pieces:
        instruction = " ".join(piece.split())
        if instruction:
            invalid = _invalid({"instruction": instruction}, instruction)
            results.append(instruction if invalid is None else invalid)
    if truncated and results:
        last = results.pop()
        results.append(Unparsed("truncated", last if isinstance(last, str) else last.text))
    return results


_YES = frozenset({"yes", "true"})
_NO = frozenset({"no", "false"})
# A Chinese yes (是, 是的) or no (否, 不是) standing alone: at the end or before punctuation
# or a space, so that 是否 ("whether"), 是/否 and 不是分类任务 stay unreadable, as
# "Yes/No" and "Not a classification task." do in English.
_ZH_YES_NO = re.compile(r"(是的|不是|是|否)(?=$|[\s，。；：！、,.;:!)）”\"'*])")


def parse_yes_no(text: str) -> bool | None:
    """Read a classification answer; None when it is neither yes nor no."""
    text = normalise(text)
    # Chat models often repeat the label of the line they answer.
    text = re.sub(r"^\s*(?:\*\*)?classification(?:\*\*)?\s*[:：]", "", text, flags=re.I)
    words = text.strip().split()
    if not words:
        return None
    word = words[0].strip(".,:;!*\"'()").lower()
    if word in _YES:
        return True
    if word in _NO:
        return False
    if (zh := _ZH_YES_NO.match(words[0].lstrip("*\"'(（“「"))) is not None:
        return zh.group(1) in ("是", "是的")
    return None


_INSTANCE_FIELD = re.compile(
    r"^[ \t]*(?:\*\*)?(input|output|label|class label)(?:\*\*)?[ \t]*[:：](?:\*\*)?[ \t]*",
    re.M | re.I,
)
_EXAMPLE_HEADER = re.compile(
    r"^[ \t]*(?:\*\*)?example[ \t]*\d*[ \t]*[:.：]?(?:\*\*)?[ \t]*$", re.M | re.I
)


@dataclass(frozen=True)
class ParsedInstance:
    """An input/output pair read from an instance answer."""

    input: str
    output: str


def parse_instances(
    text: str, *, output_first: bool, truncated: bool
) -> list[ParsedInstance | Unparsed]:
    """Parse instance answers: Input/Output pairs, or Label/Input pairs when output-first.

    Example headers are optional; a new pair starts whenever a field repeats. An ordinary
    task's output may span lines; its input may be "(no input)". A last pair cut by the
    token limit is dropped.
    """
    text = normalise(text)
    headers = list(_EXAMPLE_HEADER.finditer(text))
    if truncated and headers and not text[headers[-1].end() :].strip():
        truncated = False  # the cut fell after a bare header: the last pair is whole
    text = _EXAMPLE_HEADER.sub("", text)
    groups: list[dict[str, str]] = []
    matches = [
        m
        for m in _INSTANCE_FIELD.finditer(text)
        # In an ordinary task a line starting "Label:" is part of an output, not a field.
        if output_first or m.group(1).lower() in ("input", "output")
    ]
    opener = "label" if output_first else "input"
    for i, match in enumerate(matches):
        label = match.group(1).lower()
        label = "label" if label == "class label" else label
        if output_first and label == "output":
            label = "label"  # some models write "Output:" for the label
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        value = text[match.end() : end].strip()
        if not groups or label in groups[-1] or (label == opener and groups[-1]):
            groups.append({})
        groups[-1][label] = value
    results: list[ParsedInstance | Unparsed] = []
    for group in groups:
        raw = "\n".join(f"{k}: {v}" for k, v in group.items())
        task_input = group.get("input", "")
        if task_input.strip().lower() in _NO_INPUT:
            task_input = ""
        if (invalid := _invalid(group, raw)) is not None:
            results.append(invalid)
        elif output_first:
            label = " ".join(group.get("label", "").split())
            if "input" not in group or not task_input:
                results.append(_unparsed("missing_input", raw))
            elif not label:
                results.append(_unparsed("missing_output", raw))
            else:
                results.append(ParsedInstance(task_input, label))
        elif "output" not in group:
            results.append(_unparsed("missing_output", raw))
        else:
            results.append(ParsedInstance(task_input, group["output"]))
    if truncated and results:
        last = results.pop()
        text_of_last = last.text if isinstance(last, Unparsed) else f"{last.input}\n{last.output}"
        results.append(Unparsed("truncated", text_of_last))
    return results
