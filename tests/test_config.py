"""Tests for load_config: precedence, errors naming the field, and the run identity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from selfinstruct.config import (
    DEFAULT_BLACKLIST,
    LATER_IDENTITY,
    OPERATIONAL,
    RunConfig,
    flatten,
    identity,
    load_config,
)
from selfinstruct.errors import ConfigError, SelfInstructError


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    config = load_config(None, {})
    assert config == RunConfig()
    assert config.out == Path("outputs/default")
    assert config.seed == 42
    assert (config.num_examples, config.num_machine_examples) == (8, 2)
    assert config.teacher.model == "gpt-3.5-turbo-instruct"
    assert config.teacher.base_urls == []
    assert config.filters.rouge_threshold == 0.7
    assert (config.filters.min_words, config.filters.max_words) == (4, 150)
    assert config.filters.blacklist == list(DEFAULT_BLACKLIST)


def test_toml_sets_nested_fields(tmp_path: Path) -> None:
    path = _toml(
        tmp_path,
        'seed = 7\nout = "runs/a"\n\n[teacher]\nmodel = "llama-3-8b"\ntemperature = 0.7\n'
        'base_urls = ["http://a:8000/v1", "http://b:8000/v1"]\n\n'
        '[filters]\nblacklist = ["recipe"]\n',
    )
    config = load_config(path, {})
    assert config.seed == 7
    assert config.out == Path("runs/a")
    assert config.teacher.model == "llama-3-8b"
    assert config.teacher.temperature == 0.7
    assert config.teacher.base_urls == ["http://a:8000/v1", "http://b:8000/v1"]
    assert config.teacher.top_p == 0.5  # untouched sibling keeps its (mode's) default
    assert config.filters.blacklist == ["recipe"]


def test_overrides_beat_toml_and_keep_siblings(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'target = 10\n[teacher]\nmodel = "from-toml"\ntemperature = 0.5\n')
    config = load_config(path, {"target": 20, "teacher": {"model": "from-cli"}})
    assert config.target == 20
    assert config.teacher.model == "from-cli"
    assert config.teacher.temperature == 0.5


def test_overrides_without_toml() -> None:
    config = load_config(None, {"teacher": {"concurrency": 64}, "filters": {"min_words": 3}})
    assert config.teacher.concurrency == 64
    assert config.filters.min_words == 3


def test_override_can_replace_a_whole_list(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[teacher]\nbase_urls = ["http://a/v1"]\n')
    config = load_config(path, {"teacher": {"base_urls": ["http://b/v1"]}})
    assert config.teacher.base_urls == ["http://b/v1"]


TOML_ERRORS: list[tuple[str, str, list[str]]] = [
    # (id, TOML text, parts the message must contain besides the file name)
    ("unknown_nested_key", '[teacher]\nmodle = "x"\n', ["teacher.modle", "unknown setting"]),
    ("unknown_top_level_key", "targte = 5\n", ["targte", "unknown setting"]),
    ("unknown_section", "[teachers]\nmodel = 'x'\n", ["teachers", "unknown setting"]),
    ("temperature_too_high", "[teacher]\ntemperature = 5\n", ["teacher.temperature"]),
    ("top_p_zero", "[teacher]\ntop_p = 0\n", ["teacher.top_p"]),
    ("target_zero", "target = 0\n", ["target"]),
    (
        "rouge_threshold_above_one",
        "[filters]\nrouge_threshold = 1.5\n",
        ["filters.rouge_threshold"],
    ),
    ("concurrency_zero", "[teacher]\nconcurrency = 0\n", ["teacher.concurrency"]),
    ("concurrency_word", '[teacher]\nconcurrency = "lots"\n', ["teacher.concurrency"]),
    ("wrong_type_int", 'target = "many"\n', ["target", "integer"]),
    ("wrong_type_str", "[teacher]\nmodel = 5\n", ["teacher.model", "string"]),
    ("wrong_type_list", '[teacher]\nbase_urls = "http://a/v1"\n', ["teacher.base_urls"]),
    ("wrong_literal", '[teacher]\napi = "responses"\n', ["teacher.api"]),
    ("section_is_a_value", 'teacher = "gpt-4o"\n', ["teacher"]),
    (
        "machine_examples_exceed_examples",
        "num_examples = 4\nnum_machine_examples = 5\n",
        ["num_machine_examples must not exceed num_examples"],
    ),
    (
        "min_words_exceed_max_words",
        "[filters]\nmin_words = 10\nmax_words = 5\n",
        ["filters.min_words must not exceed filters.max_words"],
    ),
    ("invalid_toml", "target = \n", ["invalid TOML", "line 1"]),
    ("invalid_toml_duplicate_key", "seed = 1\nseed = 2\n", ["invalid TOML"]),
]


@pytest.mark.parametrize(
    ("text", "parts"), [c[1:] for c in TOML_ERRORS], ids=[c[0] for c in TOML_ERRORS]
)
def test_toml_errors_name_file_and_field(tmp_path: Path, text: str, parts: list[str]) -> None:
    path = _toml(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    for part in parts:
        assert part in message
    assert "\n" not in message


def test_several_errors_are_all_named(tmp_path: Path) -> None:
    path = _toml(tmp_path, "target = 0\n[teacher]\ntemperature = 5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert "target" in str(info.value)
    assert "teacher.temperature" in str(info.value)


OVERRIDE_ERRORS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown", {"teacher": {"modle": "x"}}, "teacher.modle: unknown setting"),
    ("out_of_range", {"teacher": {"temperature": 5.0}}, "teacher.temperature"),
    ("machine_exceed", {"num_examples": 1}, "num_machine_examples must not exceed"),
]


@pytest.mark.parametrize(
    ("overrides", "part"), [c[1:] for c in OVERRIDE_ERRORS], ids=[c[0] for c in OVERRIDE_ERRORS]
)
def test_override_errors_name_the_command_line(overrides: dict[str, Any], part: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    assert str(info.value).startswith("command line: ")
    assert part in str(info.value)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_bytes(b'[teacher]\nmodel = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert str(info.value).startswith(f"{path}: ")
    assert "UTF-8" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert str(info.value).startswith(f"{path}: ")
    assert "cannot read" in str(info.value)


def test_config_error_is_a_selfinstruct_error() -> None:
    assert issubclass(ConfigError, SelfInstructError)


def test_assignment_is_validated() -> None:
    config = RunConfig()
    with pytest.raises(ValueError, match="temperature"):
        config.teacher.temperature = 9.0


# ---- identity -----------------------------------------------------------------------------

OPERATIONAL_FIELDS = [
    "out",
    "target",
    "seeds",
    "prompts",
    "teacher.base_urls",
    "teacher.concurrency",
    "teacher.max_concurrency",
    "teacher.timeout",
    "teacher.max_retries",
    "teacher.backend",
    "teacher.model_path",
    "teacher.threads",
    "teacher.batch_api",
    "teacher.batch_poll_seconds",
    "teacher.batch_quiet_seconds",
    "teacher.batch_max_requests",
    "budget.max_cost",
    "budget.max_tokens",
    "budget.price_in",
    "budget.price_out",
    "teacher.tensor_parallel_size",
    "teacher.pipeline_parallel_size",
    "teacher.data_parallel_size",
    "teacher.gpu_memory_utilization",
    "teacher.distributed_executor_backend",
    "judge.base_urls",
    "judge.price_in",
    "judge.price_out",
]
# Identity only while the judge is on: a run without it keeps the identity it always had.
JUDGE_IDENTITY_FIELDS = ["judge.enabled", "judge.model", "judge.api", "judge.max_tokens"]
IDENTITY_FIELDS = [
    "seed",
    "mode",
    "language",
    "num_examples",
    "num_machine_examples",
    "new_per_prompt",
    "prompts_per_round",
    "lookahead",
    "teacher.model",
    "teacher.api",
    "teacher.temperature",
    "teacher.top_p",
    "teacher.presence_penalty",
    "teacher.max_tokens",
    "teacher.classify_max_tokens",
    "teacher.instances_max_tokens",
    "teacher.instances_temperature",
    "teacher.context",
    "teacher.max_model_len",
    "teacher.engine_args",
    "max_instances",
    "filters.min_words",
    "filters.max_words",
    "filters.blacklist",
    "filters.rouge_threshold",
    "filters.tokenizer",
    "filters.semantic_threshold",
]


def test_identity_fields_exactly() -> None:
    ident = identity(RunConfig())
    assert set(ident) == set(IDENTITY_FIELDS)
    assert list(ident) == sorted(ident)
    assert set(OPERATIONAL) == set(OPERATIONAL_FIELDS)
    # Every setting is either operational or identity, never both, never neither; those
    # added later count as identity once set away from the value older runs had.
    every = set(flatten(RunConfig().model_dump(mode="json")))
    assert every == (
        set(OPERATIONAL_FIELDS)
        | set(IDENTITY_FIELDS)
        | set(LATER_IDENTITY)
        | set(JUDGE_IDENTITY_FIELDS)
    )
    judged = identity(RunConfig.model_validate({"judge": {"enabled": True}}))
    assert set(judged) == set(IDENTITY_FIELDS) | set(JUDGE_IDENTITY_FIELDS)
    assert not set(LATER_IDENTITY) & (set(OPERATIONAL_FIELDS) | set(IDENTITY_FIELDS))
    changed = RunConfig.model_validate({"filters": {"max_output_chars": 100}})
    assert identity(changed)["filters.max_output_chars"] == 100


def test_identity_values_are_json_ready() -> None:
    ident = identity(RunConfig())
    assert ident["teacher.model"] == "gpt-3.5-turbo-instruct"
    assert ident["teacher.temperature"] == 0.7  # Self-Instruct's, resolved from the mode
    assert ident["seed"] == 42
    assert ident["filters.blacklist"] == list(DEFAULT_BLACKLIST)


OPERATIONAL_CHANGES: list[tuple[str, dict[str, Any]]] = [
    ("out", {"out": "elsewhere"}),
    ("target", {"target": 52000}),
    ("seeds", {"seeds": "my_seeds.jsonl"}),
    ("prompts", {"prompts": "my_prompts"}),
    ("teacher.base_urls", {"teacher": {"base_urls": ["http://h:8000/v1"]}}),
    ("teacher.concurrency", {"teacher": {"concurrency": 512}}),
    ("teacher.max_concurrency", {"teacher": {"max_concurrency": 64}}),
    ("teacher.timeout", {"teacher": {"timeout": 10.0}}),
    ("teacher.max_retries", {"teacher": {"max_retries": 0}}),
    ("budget.max_cost", {"budget": {"max_cost": 20.0, "price_in": 1.0, "price_out": 2.0}}),
    ("budget.max_tokens", {"budget": {"max_tokens": 10**9}}),
    (
        "teacher.vllm_layout",
        {
            "teacher": {
                "tensor_parallel_size": 4,
                "pipeline_parallel_size": 2,
                "data_parallel_size": 2,
                "gpu_memory_utilization": 0.8,
                "distributed_executor_backend": "ray",
            }
        },
    ),
]


@pytest.mark.parametrize(
    "overrides", [c[1] for c in OPERATIONAL_CHANGES], ids=[c[0] for c in OPERATIONAL_CHANGES]
)
def test_operational_change_keeps_identity(overrides: dict[str, Any]) -> None:
    changed = load_config(None, overrides)
    assert changed != RunConfig()
    assert identity(changed) == identity(RunConfig())


IDENTITY_CHANGES: list[tuple[str, dict[str, Any]]] = [
    ("seed", {"seed": 1}),
    ("teacher.model", {"teacher": {"model": "llama"}}),
    ("teacher.temperature", {"teacher": {"temperature": 1.0}}),
    ("teacher.max_tokens", {"teacher": {"max_tokens": 2048}}),
    ("filters.blacklist", {"filters": {"blacklist": ["image"]}}),
    ("filters.rouge_threshold", {"filters": {"rouge_threshold": 0.6}}),
    ("num_machine_examples", {"num_machine_examples": 0}),
    ("lookahead", {"lookahead": 0}),
    ("filters.semantic_threshold", {"filters": {"semantic_threshold": 0.85}}),
    ("teacher.max_model_len", {"teacher": {"max_model_len": 2048}}),
]


@pytest.mark.parametrize(
    ("field", "overrides"), IDENTITY_CHANGES, ids=[c[0] for c in IDENTITY_CHANGES]
)
def test_identity_change_is_seen(field: str, overrides: dict[str, Any]) -> None:
    before, after = identity(RunConfig()), identity(load_config(None, overrides))
    assert [k for k in before if before[k] != after[k]] == [field]


def test_mode_sets_sampling_defaults_and_flags_override_them() -> None:
    alpaca = load_config(None, {"mode": "alpaca"})
    assert alpaca.teacher.instruction_sampling() == (1.0, 1.0, 0.0, 3072)
    assert RunConfig().teacher.instruction_sampling() == (0.7, 0.5, 2.0, 1024)
    mixed = load_config(None, {"mode": "alpaca", "teacher": {"temperature": 0.2}})
    assert mixed.teacher.instruction_sampling() == (0.2, 1.0, 0.0, 3072)


def test_every_bootstrap_flag_names_a_setting() -> None:
    import inspect

    from selfinstruct.cli import bootstrap
    from selfinstruct.config import FLAG_KEYS, flatten

    settings = set(flatten(RunConfig().model_dump()))
    assert set(FLAG_KEYS.values()) <= settings
    assert len(set(FLAG_KEYS.values())) == len(FLAG_KEYS)  # no setting twice
    # Every flag of `bootstrap` sets a setting, except those that say how to run it.
    flags = set(inspect.signature(bootstrap).parameters) - {"config", "dry_run", "quiet"}
    assert flags == set(FLAG_KEYS)


def test_resolve_returns_a_new_config_and_leaves_the_validated_one_alone(tmp_path: Path) -> None:
    from selfinstruct.runner import resolve

    gguf = tmp_path / "tiny-model.gguf"
    gguf.write_bytes(b"GGUF" + bytes(60))
    cfg = RunConfig.model_validate({"teacher": {"backend": "local", "model_path": str(gguf)}})
    resolved, name = resolve(cfg, {})
    assert name == "local"
    assert resolved.teacher.model == "tiny-model"
    assert cfg.teacher.model == "gpt-3.5-turbo-instruct"  # untouched
    vllm = RunConfig.model_validate({"teacher": {"backend": "vllm", "model": "org/m"}})
    resolved, name = resolve(vllm, {})
    assert (name, resolved.teacher.concurrency, vllm.teacher.concurrency) == ("vllm", 1024, "auto")
    pinned = RunConfig.model_validate(
        {"teacher": {"backend": "vllm", "model": "org/m", "concurrency": 8}}
    )
    assert resolve(pinned, {})[0].teacher.concurrency == 8
    with pytest.raises(ConfigError, match="needs --model"):
        resolve(RunConfig.model_validate({"teacher": {"backend": "vllm"}}), {})
    batch = RunConfig.model_validate({"teacher": {"batch_api": True}})
    assert resolve(batch, {"OPENAI_API_KEY": "k"})[1] == "batch-api"


# -- settings refused before anything is created or sent ----------------------------------

REFUSED_FLAGS: list[tuple[str, list[str], str]] = [
    ("timeout_inf", ["--timeout", "inf"], "teacher.timeout: Input should be a finite number"),
    ("timeout_nan", ["--timeout", "nan"], "teacher.timeout: Input should be a finite number"),
    ("timeout_zero", ["--timeout", "0"], "teacher.timeout: "),
    ("timeout_negative", ["--timeout", "-1"], "teacher.timeout: "),
    ("target_zero", ["--target", "0"], "target: "),
    ("max_cost_nan", ["--max-cost", "nan"], "budget.max_cost: Input should be a finite number"),
    ("price_in_inf", ["--price-in", "inf"], "budget.price_in: Input should be a finite number"),
    ("url_bad_ipv6", ["--base-url", "http://[::1:8000/v1"], "teacher.base_urls: "),
    ("url_bad_port", ["--base-url", "http://localhost:80x/v1"], "teacher.base_urls: "),
    (
        "url_no_scheme",
        ["--base-url", "localhost:8000/v1"],
        "teacher.base_urls: URL 2 of 2 must start",
    ),
    ("url_ftp", ["--base-url", "ftp://localhost/v1"], "teacher.base_urls: URL 2 of 2 must start"),
    ("url_no_host", ["--base-url", "http:///v1"], "teacher.base_urls: URL 2 of 2 has no host"),
    ("url_empty", ["--base-url", ""], "teacher.base_urls: "),
]
REFUSED_FILES: list[tuple[str, str, str]] = [
    ("concurrency_true", "[teacher]\nconcurrency = true\n", "teacher.concurrency: must be a "),
    ("target_true", "target = true\n", "target: must be a number, not true"),
    ("timeout_false", "[teacher]\ntimeout = false\n", "teacher.timeout: must be a number"),
    ("max_retries_true", "[teacher]\nmax_retries = true\n", "teacher.max_retries: must be"),
    ("timeout_inf", "[teacher]\ntimeout = inf\n", "teacher.timeout: Input should be a finite"),
    ("blacklist_empty", '[filters]\nblacklist = [""]\n', "filters.blacklist: entry 1 is empty"),
    (
        "blacklist_blank",
        '[filters]\nblacklist = ["video", "  "]\n',
        "filters.blacklist: entry 2 is",
    ),
    ("base_url_in_file", '[teacher]\nbase_urls = ["http://[::1/v1"]\n', "teacher.base_urls: "),
    ("max_chars_zero", "[filters]\nmax_output_chars = 0\n", "filters.max_output_chars: "),
]


def _refused_before_anything(tmp_path: Path, *args: str, part: str) -> None:
    """Run bootstrap through the CLI: one line naming the key, no run dir, no request sent."""
    from typer.testing import CliRunner

    from selfinstruct.cli import app
    from selfinstruct.testing.server import OpenAITestServer
    from selfinstruct.testing.teacher import SyntheticTeacher

    out = tmp_path / "run"
    with OpenAITestServer(SyntheticTeacher()) as server:
        argv = ["bootstrap", "--base-url", server.base_url, "--out", str(out), "-q", *args]
        result = CliRunner().invoke(app, argv, env={"OPENAI_API_KEY": None})
        sent = len(server.requests)
    stderr = result.stderr
    assert result.exit_code == 1, stderr
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    assert part in stderr and "Traceback" not in stderr, stderr
    assert not out.exists() and sent == 0


@pytest.mark.parametrize(
    ("flags", "part"), [c[1:] for c in REFUSED_FLAGS], ids=[c[0] for c in REFUSED_FLAGS]
)
def test_bad_flag_is_refused_before_anything(tmp_path: Path, flags: list[str], part: str) -> None:
    _refused_before_anything(tmp_path, *flags, part=f"error: command line: {part}")


@pytest.mark.parametrize(
    ("text", "part"), [c[1:] for c in REFUSED_FILES], ids=[c[0] for c in REFUSED_FILES]
)
def test_bad_config_value_is_refused_before_anything(tmp_path: Path, text: str, part: str) -> None:
    config = _toml(tmp_path, text)
    _refused_before_anything(tmp_path, "--config", str(config), part=f"error: {config}: {part}")


def test_a_url_with_a_credential_is_not_echoed_when_refused(tmp_path: Path) -> None:
    url = "http://user:s3cret@[::1:8000/v1"
    _refused_before_anything(
        tmp_path, "--base-url", url, part="teacher.base_urls: URL 2 of 2 is malformed"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"teacher": {"base_urls": [url]}})
    assert "s3cret" not in str(caught.value)


def test_good_values_still_load() -> None:
    cfg = load_config(
        None,
        {
            "teacher": {
                "base_urls": ["http://[::1]:8000/v1", "https://api.example.com/v1"],
                "concurrency": "4",  # as the --concurrency flag passes it
                "batch_api": True,
            },
            "filters": {"blacklist": ["video"]},
        },
    )
    assert cfg.teacher.concurrency == 4 and cfg.teacher.batch_api is True
    assert load_config(None, {"teacher": {"concurrency": "auto"}}).teacher.concurrency == "auto"


def test_a_run_without_the_character_limits_resumes(tmp_path: Path) -> None:
    """config.json of a run started before the limits existed still matches the identity."""
    from selfinstruct.store import RunDir

    cfg = load_config(None, {"out": str(tmp_path / "run")})
    header = {"format": 1, "identity": identity(cfg), "config": cfg.model_dump(mode="json")}
    old = json.loads(json.dumps(header))
    for key in LATER_IDENTITY:
        section, name = key.split(".")
        old["identity"].pop(key, None)
        del old["config"][section][name]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps(old))
    RunDir(tmp_path / "run").check_identity(header)  # no ConfigError
    changed = load_config(None, {"filters": {"max_input_chars": 10}})
    with pytest.raises(ConfigError, match="filters.max_input_chars"):
        RunDir(tmp_path / "run").check_identity(
            {"identity": identity(changed), "config": changed.model_dump(mode="json")}
        )
