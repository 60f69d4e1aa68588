"""Load prompt templates and render prompts from them (pure apart from loading)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from selfinstruct.errors import PromptError
from selfinstruct.records import Instance

NO_INPUT = "(no input)"

# Each template file and the variables it must use (and may only use).
TEMPLATE_VARIABLES: dict[str, frozenset[str]] = {
    "alpaca.txt": frozenset({"examples", "next"}),
    "alpaca_task.txt": frozenset({"number", "instruction", "input", "output"}),
    "si_instructions.txt": frozenset({"examples", "next"}),
    "si_classify.txt": frozenset({"examples", "instruction"}),
    "si_classify_example.txt": frozenset({"instruction", "answer"}),
    "si_instances.txt": frozenset({"examples", "instruction"}),
    "si_instances_cls.txt": frozenset({"examples", "instruction"}),
    "si_instance_example.txt": frozenset({"instruction", "instances"}),
}
# The judge's template: read, checked and hashed only for a run with the judge on, so
# that the digest of every other run (its identity) stays what it was before the judge.
JUDGE_TEMPLATE = "judge.txt"
JUDGE_VARIABLES = frozenset({"instruction", "instances"})


@dataclass(frozen=True)
class PromptSet:
    """The loaded templates of a run and a digest of their text."""

    templates: dict[str, Template]
    digest: str
    source: Path
    judge_digest: str | None = None  # set when the judge's template was loaded

    def render(self, name: str, **values: str) -> str:
        """Fill template `name`; a missing variable is a PromptError."""
        try:
            return self.templates[name].substitute(values)
        except KeyError as exc:
            raise PromptError(f"{self.source / name}: no value for ${exc.args[0]}") from None


def default_prompts_dir(language: str = "en") -> Path:
    """Return the bundled prompt directory of a language, from a checkout or a wheel."""
    base = resources.files("selfinstruct") / "data" / "prompts"
    # English templates sit at the top; other languages in a subdirectory named by code.
    return Path(str(base if language == "en" else base / language))


def _identifiers(template: Template) -> dict[str, int]:
    """Return each variable the template uses with the line it first appears on."""
    found: dict[str, int] = {}
    for match in template.pattern.finditer(template.template):
        name = match.group("named") or match.group("braced")
        if name is not None:
            found.setdefault(name, template.template[: match.start()].count("\n") + 1)
        elif match.group("invalid") is not None:
            line = template.template[: match.start()].count("\n") + 1
            raise ValueError(f"line {line}: a lone '$' (write $$ for a dollar sign)")
    return found


def _read_template(path: Path, expected: frozenset[str]) -> tuple[Template, str]:
    """Read one template and check its variables; return it and its text."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PromptError(f"{path}: template missing from the prompt directory") from None
    except UnicodeDecodeError as exc:
        raise PromptError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    template = Template(text)
    try:
        used = _identifiers(template)
    except ValueError as exc:
        raise PromptError(f"{path}: {exc}") from None
    if unknown := sorted(set(used) - expected, key=lambda name: used[name]):
        raise PromptError(
            f"{path}:{used[unknown[0]]}: unknown variable ${unknown[0]} (allowed: "
            + ", ".join(f"${v}" for v in sorted(expected))
            + ")"
        )
    if missing := sorted(expected - set(used)):
        raise PromptError(f"{path}: the template never uses ${missing[0]}")
    return template, text


def load_prompts(
    directory: Path | None = None, *, language: str = "en", judge: bool = False
) -> PromptSet:
    """Read and check every template; an unknown or missing variable names file and variable.

    Without a directory, read the bundled templates of `language`. With `judge`, read the
    judge's template too; its digest is kept apart (`judge_digest`), so `digest` is the
    same with the judge on or off.
    """
    directory = directory or default_prompts_dir(language)
    if not directory.is_dir():
        raise PromptError(f"{directory}: prompt directory not found")
    templates: dict[str, Template] = {}
    digest = hashlib.sha256()
    for name, expected in sorted(TEMPLATE_VARIABLES.items()):
        template, text = _read_template(directory / name, expected)
        templates[name] = template
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    judge_digest = None
    if judge:
        template, text = _read_template(directory / JUDGE_TEMPLATE, JUDGE_VARIABLES)
        templates[JUDGE_TEMPLATE] = template
        judge_digest = hashlib.sha256(JUDGE_TEMPLATE.encode() + b"\0" + text.encode()).hexdigest()
    return PromptSet(
        templates=templates, digest=digest.hexdigest(), source=directory, judge_digest=judge_digest
    )


@dataclass(frozen=True)
class Example:
    """An in-context task shown to the teacher."""

    instruction: str
    instance: Instance


def render_alpaca(prompts: PromptSet, examples: Sequence[Example]) -> str:
    """Render the one-stage prompt: numbered example tasks, then the header of the next one."""
    blocks = []
    for number, example in enumerate(examples, start=1):
        blocks.append(
            prompts.render(
                "alpaca_task.txt",
                number=str(number),
                instruction=_one_line(example.instruction),
                input=example.instance.input.strip() or NO_INPUT,
                output=example.instance.output.strip(),
            )
        )
    # No trailing newline: the teacher continues on the "Instruction:" line, as examples do.
    text = prompts.render("alpaca.txt", examples="".join(blocks), next=str(len(examples) + 1))
    return text.rstrip()


def _one_line(text: str) -> str:
    # A multi-line instruction would be read back as ending at its first newline.
    return re.sub(r"\s*\n\s*", " ", text.strip())


def render_instruction_list(prompts: PromptSet, instructions: Sequence[str]) -> str:
    """Render the Self-Instruct prompt: a numbered list of instructions, then the next number."""
    listing = "".join(f"{n}. {_one_line(text)}\n" for n, text in enumerate(instructions, 1))
    return prompts.render(
        "si_instructions.txt", examples=listing, next=str(len(instructions) + 1)
    ).rstrip()


def render_classify(
    prompts: PromptSet, examples: Sequence[tuple[str, bool]], instruction: str
) -> str:
    """Render the yes/no prompt asking whether `instruction` is a classification task."""
    shots = "".join(
        prompts.render(
            "si_classify_example.txt", instruction=_one_line(text), answer="Yes" if is_cls else "No"
        )
        + "\n"
        for text, is_cls in examples
    )
    return prompts.render(
        "si_classify.txt", examples=shots, instruction=_one_line(instruction)
    ).rstrip()


def format_instances(instances: Sequence[Instance], *, output_first: bool) -> str:
    """Lay out instances the way the instance parser reads them back."""
    lines = []
    for number, inst in enumerate(instances, start=1):
        if output_first:
            lines.append(f"Label: {inst.output.strip()}\nInput: {inst.input.strip() or NO_INPUT}")
        else:
            lines.append(
                f"Example {number}\nInput: {inst.input.strip() or NO_INPUT}\n"
                f"Output: {inst.output.strip()}"
            )
    return "\n".join(lines)


def render_instances(
    prompts: PromptSet,
    examples: Sequence[tuple[str, Sequence[Instance]]],
    instruction: str,
    *,
    output_first: bool,
) -> str:
    """Render the instance prompt: input-first for ordinary tasks, output-first otherwise."""
    shots = "".join(
        prompts.render(
            "si_instance_example.txt",
            instruction=_one_line(text),
            instances=format_instances(instances, output_first=output_first),
        )
        + "\n"
        for text, instances in examples
    )
    name = "si_instances_cls.txt" if output_first else "si_instances.txt"
    # Keep the final newline: the teacher starts the first example on a line of its own.
    return prompts.render(name, examples=shots, instruction=_one_line(instruction)).rstrip() + "\n"


def render_judge(prompts: PromptSet, instruction: str, instances: Sequence[Instance]) -> str:
    """Render the judge's prompt for one complete task: its instruction and every instance."""
    listing = "\n\n".join(
        f"Example {number}\nInput: {inst.input.strip() or NO_INPUT}\nOutput: {inst.output.strip()}"
        for number, inst in enumerate(instances, start=1)
    )
    text = prompts.render(JUDGE_TEMPLATE, instruction=instruction.strip(), instances=listing)
    # No trailing newline: a completions model continues the "Score:" line with the score.
    return text.rstrip()
