"""Bad input everywhere a user gives it: one clear line, non-zero exit, nothing written.

The CLI runs in-process (typer's CliRunner) against the loopback teacher: what is tested is
the message and the run directory, not process start-up.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfinstruct.cli import app
from selfinstruct.prompts import default_prompts_dir
from selfinstruct.testing.server import OpenAITestServer
from selfinstruct.testing.teacher import SyntheticTeacher


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer(SyntheticTeacher()) as srv:
        yield srv


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"OPENAI_API_KEY": None})
    assert not isinstance(result.exception, AssertionError)
    return result.exit_code, result.stderr


def _bootstrap(server: OpenAITestServer, out: Path, *extra: str) -> list[str]:
    return ["bootstrap", "--base-url", server.base_url, "--out", str(out), "-q", *extra]


def _snapshot(path: Path) -> dict[str, tuple[bytes, int]]:
    """Return every data file's bytes and mtime; the lock holds a pid, not data."""
    if not path.exists():
        return {}
    return {
        str(p.relative_to(path)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name != "lock"
    }


def _refused(code: int, stderr: str, *parts: str) -> None:
    assert code == 1, stderr
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr
    for part in parts:
        assert part in stderr, (part, stderr)


@pytest.fixture(scope="module")
def finished_run(server: OpenAITestServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory that has committed a few rounds, to be copied by each test."""
    out = tmp_path_factory.mktemp("runs") / "base"
    code, stderr = _invoke(*_bootstrap(server, out, "--mode", "alpaca", "--target", "40"))
    assert code == 0, stderr
    return out


@pytest.fixture
def run(finished_run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    return out


# -- seed files ------------------------------------------------------------------------

GOOD = {
    "id": "s1",
    "name": "n",
    "instruction": "Name three rivers that cross Europe.",
    "instances": [{"input": "", "output": "The Danube, the Rhine and the Elbe."}],
    "is_classification": False,
}


def _jsonl(*objs: object) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objs)


SEED_CASES: list[tuple[str, bytes, str]] = [
    ("invalid_json", _jsonl(GOOD) + b'{"id": "s2", "name": \n', ":2: invalid JSON"),
    (
        "wrong_type",
        _jsonl(GOOD, {**GOOD, "id": "s2", "instances": "none"}),
        ":2: field 'instances'",
    ),
    (
        "missing_field",
        _jsonl({k: v for k, v in GOOD.items() if k != "instruction"}),
        ":1: field 'instruction': missing",
    ),
    ("empty", b"", ": no seed tasks"),
    ("non_utf8", _jsonl(GOOD) + b'{"id": "caf\xe9"}\n', ":2: not valid UTF-8"),
    ("bom_then_garbage", b"\xef\xbb\xbfnot json\n", ":1: invalid JSON"),
    ("duplicate_ids", _jsonl(GOOD, GOOD), ":2: field 'id': duplicate id 's1' (first on line 1)"),
    ("not_an_object", _jsonl(GOOD, [GOOD]), ":2: expected a JSON object, got list"),
    # 8 MB on one line, no newline: the message must stay one short line.
    ("huge_line", b'{"id": "' + b"x" * 8_000_000, ":1: invalid JSON"),
]


@pytest.mark.parametrize(
    ("content", "part"), [c[1:] for c in SEED_CASES], ids=[c[0] for c in SEED_CASES]
)
def test_bad_seed_file(
    server: OpenAITestServer, run: Path, tmp_path: Path, content: bytes, part: str
) -> None:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_bytes(content)
    before, sent = _snapshot(run), len(server.requests)
    code, stderr = _invoke(*_bootstrap(server, run, "--seeds", str(seeds)))
    _refused(code, stderr, f"{seeds}{part}")
    assert len(stderr) < 300
    assert _snapshot(run) == before and len(server.requests) == sent


def test_huge_valid_seed_file_loads(tmp_path: Path) -> None:
    from selfinstruct.seeds import load_seeds

    seeds = tmp_path / "many.jsonl"
    seeds.write_bytes(
        _jsonl(
            *(
                {**GOOD, "id": f"s{i}", "instruction": f"Task number {i} here."}
                for i in range(30_000)
            )
        )
    )
    assert len(load_seeds(seeds).tasks) == 30_000


# -- prompt templates ------------------------------------------------------------------


PROMPT_CASES: list[tuple[str, str, Callable[[bytes], bytes], str]] = [
    (
        "unknown_variable",
        "alpaca.txt",
        lambda t: b"Intro line\n\nSee $hint here.\n" + t,
        ":3: unknown variable $hint",
    ),
    (
        "missing_variable",
        "si_classify.txt",
        lambda t: t.replace(b"$instruction", b"the task"),
        ": the template never uses $instruction",
    ),
    ("lone_dollar", "alpaca_task.txt", lambda t: t + b"\nCosts $ 5\n", ": line"),
    ("not_utf8", "si_instances.txt", lambda t: b"caf\xe9 " + t, ": not valid UTF-8"),
]


@pytest.mark.parametrize(
    ("name", "edit", "part"), [c[1:] for c in PROMPT_CASES], ids=[c[0] for c in PROMPT_CASES]
)
def test_bad_prompt_template(
    server: OpenAITestServer,
    run: Path,
    tmp_path: Path,
    name: str,
    edit: Callable[[bytes], bytes],
    part: str,
) -> None:
    directory = tmp_path / "prompts"
    shutil.copytree(default_prompts_dir(), directory)
    path = directory / name
    path.write_bytes(edit(path.read_bytes()))
    before = _snapshot(run)
    code, stderr = _invoke(
        *_bootstrap(server, run, "--mode", "alpaca", "--prompts", str(directory))
    )
    _refused(code, stderr, f"{path}{part}")
    assert _snapshot(run) == before


# -- config files and flags ------------------------------------------------------------

TOML_CASES: list[tuple[str, str, str]] = [
    (
        "unknown_key",
        '[teacher]\nmodel = "m"\ntemprature = 0.5\n',
        ": teacher.temprature: unknown setting",
    ),
    ("unknown_section", "[teachers]\nmodel = 'm'\n", ": teachers: unknown setting"),
    ("out_of_range", "[filters]\nrouge_threshold = 1.5\n", ": filters.rouge_threshold: "),
    ("wrong_type", 'target = "lots"\n', ": target: "),
    (
        "conflict",
        "num_examples = 2\nnum_machine_examples = 3\n",
        ": num_machine_examples must not exceed num_examples",
    ),
    ("invalid_toml", "target = = 3\n", ": invalid TOML"),
]


@pytest.mark.parametrize(
    ("text", "part"), [c[1:] for c in TOML_CASES], ids=[c[0] for c in TOML_CASES]
)
def test_bad_config_file(
    server: OpenAITestServer, run: Path, tmp_path: Path, text: str, part: str
) -> None:
    config = tmp_path / "run.toml"
    config.write_text(text)
    before = _snapshot(run)
    code, stderr = _invoke(*_bootstrap(server, run, "--config", str(config)))
    _refused(code, stderr, f"error: {config}{part}")
    assert _snapshot(run) == before


FLAG_CASES: list[tuple[str, list[str], str]] = [
    ("concurrency_zero", ["--concurrency", "0"], "command line: teacher.concurrency: "),
    ("target_zero", ["--target", "0"], "command line: target: "),
    ("temperature_high", ["--temperature", "9"], "command line: teacher.temperature: "),
    ("timeout_negative", ["--timeout", "-1"], "command line: teacher.timeout: "),
    ("retries_negative", ["--max-retries", "-1"], "command line: teacher.max_retries: "),
    ("unknown_mode", ["--mode", "evol"], "command line: mode: "),
    ("unknown_api", ["--api", "responses"], "command line: teacher.api: "),
    ("local_with_base_url", ["--backend", "local"], "--base-url is for --backend openai"),
]


@pytest.mark.parametrize(
    ("flags", "part"), [c[1:] for c in FLAG_CASES], ids=[c[0] for c in FLAG_CASES]
)
def test_bad_flag(server: OpenAITestServer, run: Path, flags: list[str], part: str) -> None:
    if flags == ["--backend", "local"]:
        pytest.importorskip("llama_cpp", reason="the conflict is checked once the backend loads")
    before = _snapshot(run)
    code, stderr = _invoke(*_bootstrap(server, run, *flags))
    _refused(code, stderr, part)
    assert _snapshot(run) == before


def test_flag_error_names_the_flag_not_the_config_file(
    server: OpenAITestServer, run: Path, tmp_path: Path
) -> None:
    config = tmp_path / "run.toml"
    config.write_text("target = 50\n[teacher]\ntemperature = 0.9\n")
    code, stderr = _invoke(*_bootstrap(server, run, "--config", str(config), "--temperature", "7"))
    _refused(code, stderr, f"command line (with {config}): teacher.temperature: ")


def test_mistyped_flag_is_a_usage_error(server: OpenAITestServer, run: Path) -> None:
    before = _snapshot(run)
    code, stderr = _invoke(*_bootstrap(server, run, "--target", "many"))
    assert code == 2 and "Traceback" not in stderr and "--target" in stderr
    assert _snapshot(run) == before


# -- run directories -------------------------------------------------------------------


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _edit_longer(run: Path) -> str:
    lines = _lines(run / "pool.jsonl")
    lines[1] = lines[1].replace(b'"instruction":"', b'"instruction":"Edited: ', 1)
    (run / "pool.jsonl").write_bytes(b"".join(lines))
    return "pool.jsonl: does not match its commit record"


def _edit_same_length_garbage(run: Path) -> str:
    lines = _lines(run / "pool.jsonl")
    lines[2] = b"x" * (len(lines[2]) - 1) + b"\n"
    (run / "pool.jsonl").write_bytes(b"".join(lines))
    return "pool.jsonl:3: field '(line)'"


def _edit_shorter(run: Path) -> str:
    (run / "pool.jsonl").write_bytes(b"".join(_lines(run / "pool.jsonl")[:-1]))
    return "pool.jsonl: shorter"


def _append_by_hand(run: Path) -> str:
    first = json.loads(_lines(run / "pool.jsonl")[0])
    with open(run / "pool.jsonl", "ab") as fh:
        fh.write(json.dumps({**first, "id": "mine"}).encode() + b"\n")
    n = len(_lines(run / "pool.jsonl"))
    return f"pool.jsonl:{n}: field 'round': this line is after the last commit"


def _foreign_pool(run: Path) -> str:
    (run / "pool.jsonl").write_bytes(_jsonl(GOOD) * 400)  # someone else's, and longer
    return "pool.jsonl: does not match its commit record"


def _foreign_pool_without_state(run: Path) -> str:
    (run / "state.json").unlink()
    (run / "pool.jsonl").write_bytes(_jsonl(GOOD) * 3)
    return "pool.jsonl:1: field 'round': missing or invalid"


def _other_format(run: Path) -> str:
    header = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**header, "format": 2, "selfinstruct": "9.0"}))
    return "config.json: field 'format': run format 2 (written by selfinstruct 9.0)"


def _garbage_config(run: Path) -> str:
    (run / "config.json").write_bytes(b"\x00\x01 not json")
    return "config.json: unreadable; not a run directory of this tool"


def _logs_without_config(run: Path) -> str:
    (run / "config.json").unlink()
    return "has pool.jsonl but no config.json"


RUN_CASES = [
    _edit_longer,
    _edit_same_length_garbage,
    _edit_shorter,
    _append_by_hand,
    _foreign_pool,
    _foreign_pool_without_state,
    _other_format,
    _garbage_config,
    _logs_without_config,
]


@pytest.mark.parametrize("damage", RUN_CASES, ids=[f.__name__.strip("_") for f in RUN_CASES])
def test_damaged_run_directory(
    server: OpenAITestServer, run: Path, damage: Callable[[Path], str]
) -> None:
    part = damage(run)
    before, sent = _snapshot(run), len(server.requests)
    code, stderr = _invoke(*_bootstrap(server, run, "--mode", "alpaca", "--target", "80"))
    _refused(code, stderr, f"{run}/" if "config" not in part else str(run), part)
    assert _snapshot(run) == before
    assert len(server.requests) == sent


@pytest.mark.parametrize(
    "damage", [_other_format, _garbage_config], ids=["other_format", "garbage"]
)
def test_status_of_a_foreign_config(run: Path, damage: Callable[[Path], str]) -> None:
    part = damage(run)
    code, stderr = _invoke("status", "--out", str(run))
    _refused(code, stderr, part)
