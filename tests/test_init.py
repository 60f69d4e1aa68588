"""`selfinstruct init`: a commented run.toml that loads back to the default config."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from selfinstruct.config import RunConfig, flatten, identity, load_config
from selfinstruct.runtoml import render_run_toml, toml_value
from selfinstruct.testing.server import OpenAITestServer

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

# Settings with no default at all: their commented line shows an example, not a default.
NO_DEFAULT = {
    "seeds",
    "prompts",
    "teacher.model_path",
    "teacher.threads",
    "teacher.max_model_len",
    "teacher.engine_args",
    "filters.semantic_threshold",
    "budget.max_cost",
    "budget.max_tokens",
    "budget.price_in",
    "budget.price_out",
    "judge.model",
    "judge.api",
    "judge.price_in",
    "judge.price_out",
}
_ASSIGNMENT = re.compile(r"^(# )?([a-z_]+) = ")


def _settings(text: str) -> dict[str, tuple[int, bool]]:
    """Map each dotted setting in the file to its first line and whether it is commented."""
    found: dict[str, tuple[int, bool]] = {}
    table = ""
    for lineno, line in enumerate(text.splitlines()):
        if header := re.fullmatch(r"\[(\w+)\]", line):
            table = header.group(1) + "."
        elif match := _ASSIGNMENT.match(line):
            found[table + match.group(2)] = (lineno, match.group(1) is not None)
    return found


def _uncomment(text: str, start: int) -> str:
    """Uncomment the assignment starting at line `start`, a multi-line list included."""
    lines = text.splitlines()
    depth = 0
    i = start
    while True:
        lines[i] = lines[i].removeprefix("# ")
        depth += lines[i].count("[") - lines[i].count("]")
        if depth <= 0:
            break
        i += 1
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("language", ["en", "zh"])
def test_file_loads_back_to_the_default_config(tmp_path: Path, language: str) -> None:
    path = tmp_path / "run.toml"
    path.write_text(render_run_toml(language), encoding="utf-8")
    assert load_config(path, {}) == RunConfig(language=language)  # type: ignore[arg-type]


@pytest.mark.parametrize("language", ["en", "zh"])
def test_every_setting_is_written_once_with_a_comment(language: str) -> None:
    text = render_run_toml(language)
    found = _settings(text)
    assert set(found) == set(flatten(RunConfig().model_dump(mode="json")))
    lines = text.splitlines()
    for dotted, (lineno, _) in found.items():
        assert lines[lineno - 1].startswith("# "), f"{dotted} has no description above it"


@pytest.mark.parametrize("language", ["en", "zh"])
def test_uncommenting_a_line_pins_the_value_it_shows(tmp_path: Path, language: str) -> None:
    text = render_run_toml(language)
    default = RunConfig(language=language)  # type: ignore[arg-type]
    commented = {k: line for k, (line, c) in _settings(text).items() if c}
    # Mode- and language-dependent settings, and the ones with no default.
    assert {"teacher.temperature", "filters.blacklist", "filters.tokenizer"} <= set(commented)
    assert NO_DEFAULT <= set(commented)
    path = tmp_path / "run.toml"
    for dotted, line in commented.items():
        path.write_text(_uncomment(text, line), encoding="utf-8")
        pinned = load_config(path, {})
        if dotted in NO_DEFAULT:
            assert pinned != default, dotted  # an example value, visibly not a default
        else:
            assert pinned == default, dotted


def test_commented_language_settings_follow_the_language(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text(render_run_toml("en").replace('language = "en"', 'language = "zh"'), "utf-8")
    assert load_config(path, {}) == RunConfig(language="zh")


@pytest.mark.parametrize(
    "value", ["plain", 'quote " and \\ backslash', "tab\tnew\nline", "中文", 0, 2.5, True, []]
)
def test_toml_value_round_trips(value: object) -> None:
    assert tomllib.loads(f"x = {toml_value(value)}")["x"] == value


def test_init_writes_and_refuses_to_overwrite(tmp_path: Path) -> None:
    done = run_cli("init", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    path = tmp_path / "run.toml"
    assert path.read_text(encoding="utf-8") == render_run_toml("en")
    assert "selfinstruct bootstrap --config run.toml" in done.stdout

    path.write_text("# my edits\n", encoding="utf-8")
    refused = run_cli("init", cwd=tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.strip() == "error: run.toml: already exists; pass --force to overwrite it"
    assert path.read_text(encoding="utf-8") == "# my edits\n"

    forced = run_cli("init", "run.toml", "--force", "--language", "zh", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert path.read_text(encoding="utf-8") == render_run_toml("zh")

    bad = run_cli("init", "other.toml", "--language", "fr", cwd=tmp_path)
    assert bad.returncode == 1 and "--language: unknown language 'fr'" in bad.stderr
    assert not (tmp_path / "other.toml").exists()


def test_bootstrap_with_the_written_file_runs_the_default_config(
    teacher: OpenAITestServer, tmp_path: Path
) -> None:
    assert run_cli("init", cwd=tmp_path).returncode == 0
    out = tmp_path / "run"
    done = run_cli(
        "bootstrap",
        "--config",
        str(tmp_path / "run.toml"),
        "--base-url",
        teacher.base_url,
        "--model",
        "test-model",
        "--out",
        str(out),
        "--target",
        "5",
        "--quiet",
        api_key="sk-test",
    )
    assert done.returncode == 0, done.stderr
    stored = json.loads((out / "config.json").read_text(encoding="utf-8"))["identity"]
    # What the header adds to the config's identity: content digests, the sampling version.
    stored = {k: v for k, v in stored.items() if not k.endswith(".sha256")}
    assert stored.pop("sampling_version") == 2
    assert stored == identity(RunConfig.model_validate({"teacher": {"model": "test-model"}}))
