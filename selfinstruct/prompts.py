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
}


@dataclass(frozen=True)
class PromptSet:
    """The loaded templates of a run and a digest of their text."""

    templates: dict[str, Template]
    digest: str
    source: Path

    def render(self, name: str, **values: str) -> str:
        """Fill template `name`; a missing variable is a PromptError."""
        try:
            return self.templates[name].substitute(values)
        except KeyError as exc:
            raise PromptError(f"{self.source / name}: no value for ${exc.args[0]}") from None


def default_prompts_dir() -> Path:
    """Return the bundled prompt directory, from a checkout or an installed wheel."""
    return Path(str(resources.files("selfinstruct") / "data" / "prompts"))


def _identifiers(template: Template) -> set[str]:
    found: set[str] = set()
    for match in template.pattern.finditer(template.template):
        name = match.group("named") or match.group("braced")
        if name is not None:
            found.add(name)
        elif match.group("invalid") is not None:
            line = template.template[: match.start()].count("\n") + 1
            raise ValueError(f"line {line}: a lone '$' (write $$ for a dollar sign)")
    return found


def load_prompts(directory: Path | None = None) -> PromptSet:
    """Read and check every template; an unknown or missing variable names file and variable."""
    directory = directory or default_prompts_dir()
    if not directory.is_dir():
        raise PromptError(f"{directory}: prompt directory not found")
    templates: dict[str, Template] = {}
    digest = hashlib.sha256()
    for name, expected in sorted(TEMPLATE_VARIABLES.items()):
        path = directory / name
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
        if unknown := sorted(used - expected):
            raise PromptError(
                f"{path}: unknown variable ${unknown[0]} (allowed: "
                + ", ".join(f"${v}" for v in sorted(expected))
                + ")"
            )
        if missing := sorted(expected - used):
            raise PromptError(f"{path}: the template never uses ${missing[0]}")
        templates[name] = template
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    return PromptSet(templates=templates, digest=digest.hexdigest(), source=directory)


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
