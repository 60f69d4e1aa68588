"""Every export format, loaded back with the library that consumes it."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_env, run_cli

from selfinstruct.errors import ConfigError
from selfinstruct.export import export_run, user_turn
from selfinstruct.testing.server import OpenAITestServer
from selfinstruct.testing.teacher import SyntheticTeacher

datasets = pytest.importorskip("datasets", reason="the [hf] extra is not installed")
pq = pytest.importorskip("pyarrow.parquet", reason="the [hf] extra is not installed")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Grow a 30-task run against the synthetic teacher, once for this module."""
    out = tmp_path_factory.mktemp("export") / "run"
    with OpenAITestServer(SyntheticTeacher()) as server:
        done = run_cli(
            "bootstrap", "--base-url", server.base_url, "--model", "synthetic",
            "--target", "30", "--out", str(out), "--quiet",
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    yield out


@pytest.fixture
def offline_hf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep the datasets library offline and its cache inside the test's directory."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HOME", str(cache))
    return cache


def _expected(run: Path) -> list[dict[str, str]]:
    pool = [json.loads(line) for line in (run / "pool.jsonl").read_text().splitlines()]
    return [
        {"instruction": t["instruction"], "input": i["input"], "output": i["output"]}
        for t in pool
        for i in t["instances"]
    ]


def _export(run: Path, target: Path, fmt: str, *extra: str) -> None:
    done = run_cli("export", "--out", str(run), "-f", fmt, "-o", str(target), *extra)
    assert done.returncode == 0, done.stderr
    assert f"wrote {len(_expected(run))} records to {target}" in done.stdout


def _load_json(path: Path, cache: Path) -> list[dict[str, Any]]:
    # The loader LLaMA-Factory, axolotl and TRL scripts use for local JSON and JSONL files.
    ds = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache))
    return list(ds)


def test_alpaca_and_jsonl_load_with_datasets(
    run_dir: Path, tmp_path: Path, offline_hf: Path
) -> None:
    expected = _expected(run_dir)
    assert any(r["input"] for r in expected) and any(not r["input"] for r in expected)
    for fmt, name in (("alpaca", "data.json"), ("jsonl", "data.jsonl")):
        _export(run_dir, tmp_path / name, fmt)
        assert _load_json(tmp_path / name, offline_hf) == expected
    lines = (tmp_path / "data.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == expected


def test_sharegpt_conversations(run_dir: Path, tmp_path: Path, offline_hf: Path) -> None:
    path = tmp_path / "sharegpt.jsonl"
    _export(run_dir, path, "sharegpt")
    rows = _load_json(path, offline_hf)
    expected = _expected(run_dir)
    assert len(rows) == len(expected)
    for row, rec in zip(rows, expected, strict=True):
        assert row["conversations"] == [
            {"from": "human", "value": user_turn(rec["instruction"], rec["input"])},
            {"from": "gpt", "value": rec["output"]},
        ]
    with_input = next(r for r in expected if r["input"])
    assert user_turn(with_input["instruction"], with_input["input"]) == (
        f"{with_input['instruction']}\n\n{with_input['input']}"
    )


def test_openai_chat_messages_validate_with_the_sdk_types(
    run_dir: Path, tmp_path: Path, offline_hf: Path
) -> None:
    from openai.types.chat import ChatCompletionMessageParam
    from pydantic import TypeAdapter

    path = tmp_path / "openai.jsonl"
    _export(run_dir, path, "openai", "--system", "You are a helpful assistant.")
    adapter = TypeAdapter(list[ChatCompletionMessageParam])
    expected = _expected(run_dir)
    lines = path.read_text().splitlines()
    assert len(lines) == len(expected)
    for line, rec in zip(lines, expected, strict=True):
        row = json.loads(line)
        assert set(row) == {"messages"}  # OpenAI fine-tuning rejects unknown top-level keys
        messages = adapter.validate_python(row["messages"])
        assert [m["role"] for m in messages] == ["system", "user", "assistant"]
        assert messages[1]["content"] == user_turn(rec["instruction"], rec["input"])
        assert messages[2]["content"] == rec["output"]
    assert len(_load_json(path, offline_hf)) == len(expected)


def test_parquet_reads_back_with_pyarrow_and_pandas(run_dir: Path, tmp_path: Path) -> None:
    import pandas as pd

    path = tmp_path / "data.parquet"
    _export(run_dir, path, "parquet")
    table = pq.read_table(path)
    assert table.schema.names == ["instruction", "input", "output"]
    assert table.to_pylist() == _expected(run_dir)
    assert pd.read_parquet(path).to_dict("records") == _expected(run_dir)


def test_hf_directory_loads_from_disk_and_is_replaced_safely(
    run_dir: Path, tmp_path: Path, offline_hf: Path
) -> None:
    target = tmp_path / "ds"
    _export(run_dir, target, "hf")
    ds = datasets.load_from_disk(str(target))
    assert list(ds) == _expected(run_dir)
    assert {k: v.dtype for k, v in ds.features.items()} == dict.fromkeys(
        ("instruction", "input", "output"), "string"
    )
    _export(run_dir, target, "hf")  # an earlier export is replaced
    assert list(datasets.load_from_disk(str(target))) == _expected(run_dir)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".ds")) == []

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    done = run_cli("export", "--out", str(run_dir), "-f", "hf", "-o", str(foreign))
    assert done.returncode != 0 and "not a saved dataset" in done.stderr
    assert "Traceback" not in done.stderr
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_push_to_hub_without_token_fails_before_writing(run_dir: Path, tmp_path: Path) -> None:
    env = cli_env()
    env.pop("HF_TOKEN", None)
    target = tmp_path / "data.json"
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "selfinstruct", "export", "--out", str(run_dir), "-o",
         str(target), "--push-to-hub", "someone/data"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "HF_TOKEN" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not target.exists()


def test_push_to_hub_error_never_shows_the_token(run_dir: Path, tmp_path: Path) -> None:
    import subprocess

    token = "hf_testtoken0123456789abcdefSECRET"
    env = cli_env()
    # Offline mode makes huggingface_hub refuse every request: no network is touched.
    env.update(HF_TOKEN=token, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    done = subprocess.run(
        [sys.executable, "-m", "selfinstruct", "export", "--out", str(run_dir),
         "--push-to-hub", "someone/data"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "--push-to-hub someone/data" in done.stderr
    assert token not in done.stderr and token not in done.stdout
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not any(token in p.read_text(errors="replace") for p in written)


def test_export_errors(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    done = run_cli("export", "--out", str(run_dir), "-f", "csv", "-o", str(tmp_path / "x"))
    assert done.returncode != 0 and "unknown format 'csv'" in done.stderr
    done = run_cli("export", "--out", str(run_dir))
    assert done.returncode != 0 and "--output" in done.stderr
    with pytest.raises(ConfigError, match="--system applies to the chat formats"):
        export_run(run_dir, tmp_path / "a.json", "alpaca", system="Be nice.")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as when the [hf] extra is absent
    with pytest.raises(ConfigError, match=r"needs pyarrow: pip install \"selfinstruct\[hf\]\""):
        export_run(run_dir, tmp_path / "a.parquet", "parquet")
    assert not (tmp_path / "a.parquet").exists()
