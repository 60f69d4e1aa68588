"""Write a commented run.toml generated from RunConfig's fields, so it never drifts.

Every setting appears with its description as a comment. A setting with a plain default
is written as ``name = value``. A setting whose default follows another setting (the
mode's sampling, the language's filters) or is none at all is written commented out,
``# name = value``, showing the value it takes, so that changing ``mode`` or
``language`` in the file still changes it; uncomment a line to pin its value.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from selfinstruct.config import (
    LANGUAGE_FILTER_DEFAULTS,
    MODE_SAMPLING,
    MODE_WINDOW,
    STORED_DEFAULTS,
    RunConfig,
)
from selfinstruct.store import atomic_write

WIDTH = 92

# Settings resolved from the mode when unset, in MODE_SAMPLING's tuple order.
_MODE_FIELDS = (
    "teacher.temperature",
    "teacher.top_p",
    "teacher.presence_penalty",
    "teacher.max_tokens",
)
# What to show for settings whose default is none (TOML has no null).
_EXAMPLES: dict[str, Any] = {
    "seeds": "my_seeds.jsonl",
    "prompts": "my_prompts",
    "teacher.model_path": "model.gguf",
    "teacher.threads": 4,
    "teacher.max_model_len": 4096,
    "teacher.engine_args": {"enforce_eager": True},
    "filters.semantic_threshold": 0.85,
    "budget.max_cost": 20.0,
    "budget.max_tokens": 5_000_000,
    "budget.price_in": 0.15,
    "budget.price_out": 0.6,
    "judge.model": "gpt-4o-mini",
    "judge.api": "chat",
    "judge.price_in": 0.15,
    "judge.price_out": 0.6,
}


def write_run_toml(path: Path, text: str, *, overwrite: bool = False) -> None:
    """Write a run.toml atomically; without `overwrite`, an existing file (or link) stays.

    Raise FileExistsError when `path` exists and `overwrite` is false.
    """
    atomic_write(path, text.encode(), overwrite=overwrite)


def toml_value(value: Any) -> str:
    """Format a JSON-ready value as a TOML value (strings, numbers, booleans, lists)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a TOML basic string: both escape \\, " and control characters.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _assignment(name: str, value: Any, *, commented: bool) -> list[str]:
    """Return `name = value`, wrapping a long list one item per line."""
    prefix = "# " if commented else ""
    line = f"{prefix}{name} = {toml_value(value)}"
    if len(line) <= WIDTH or not isinstance(value, list):
        return [line]
    lines, row = [f"{prefix}{name} = ["], f"{prefix}   "
    for item in (toml_value(v) + "," for v in value):
        if len(row) + 1 + len(item) > WIDTH:
            lines.append(row)
            row = f"{prefix}   "
        row += " " + item
    return [*lines, row, f"{prefix}]"]


def _comment(text: str) -> list[str]:
    return ["# " + line for line in textwrap.wrap(text, WIDTH - 2, break_on_hyphens=False)]


def _note(dotted: str) -> str | None:
    """Say what an unset setting follows, or None when it has a plain default."""
    if dotted in _MODE_FIELDS:
        i = _MODE_FIELDS.index(dotted)
        by_mode = ", ".join(f"{mode} {values[i]}" for mode, values in MODE_SAMPLING.items())
        return f"(Follows the mode unless set: {by_mode}.)"
    if dotted in STORED_DEFAULTS:  # prompts_per_round, lookahead
        i = STORED_DEFAULTS.index(dotted)
        by_mode = ", ".join(f"{mode} {values[i]}" for mode, values in MODE_WINDOW.items())
        return f"(Follows the mode unless set: {by_mode}.)"
    head, _, leaf = dotted.partition(".")
    if head == "filters" and leaf in LANGUAGE_FILTER_DEFAULTS["en"]:
        return "(Follows the language unless set.)"
    return None


def _section(model: type[BaseModel], resolved: BaseModel, prefix: str) -> list[str]:
    """Render the plain settings of one model; nested models are left to the caller."""
    lines: list[str] = []
    for name, info in model.model_fields.items():
        if _nested(info) is not None:
            continue
        dotted = prefix + name
        description = info.description
        if not description:
            raise ValueError(f"{dotted}: RunConfig field without a description")
        value = getattr(resolved, name)
        default = info.get_default(call_default_factory=True)
        note = _note(dotted)
        lines.append("")
        lines.extend(_comment(description + (f" {note}" if note else "")))
        if note is not None:
            lines.extend(_assignment(name, _json(value), commented=True))
        elif default is None:
            if dotted not in _EXAMPLES:
                raise ValueError(f"{dotted}: no example value for a setting without a default")
            lines.extend(_assignment(name, _EXAMPLES[dotted], commented=True))
        else:
            lines.extend(_assignment(name, _json(value), commented=False))
    return lines


def _nested(info: FieldInfo) -> type[BaseModel] | None:
    annotation = info.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _json(value: Any) -> Any:
    """Turn paths and other pydantic values into their JSON form."""
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, list):
        return [_json(v) for v in value]
    return value


def render_run_toml(language: str = "en") -> str:
    """Return the text of a run.toml holding every setting of RunConfig with its default."""
    config = RunConfig.model_validate({"language": language})
    lines = [
        "# selfinstruct run settings: selfinstruct bootstrap --config run.toml",
        "# Written by `selfinstruct init` from the settings' own descriptions; flags given",
        "# on the command line override this file, unknown keys are errors.",
        "# A line `# name = value` is unset: its value follows another setting (mode,",
        "# language) or there is none; uncomment it to pin the value.",
    ]
    lines += _section(RunConfig, config, "")
    for name, info in RunConfig.model_fields.items():
        nested = _nested(info)
        if nested is None:
            continue
        doc = (nested.__doc__ or "").strip().splitlines()[0]
        lines += ["", "", f"[{name}]", *_comment(doc)]
        lines += _section(nested, getattr(config, name), f"{name}.")
    return "\n".join(lines) + "\n"
