"""Dedup of our own exports: records sharing an instruction are one task, kept whole."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import bootstrap_args, run_cli

from selfinstruct.dedup import dedup_file
from selfinstruct.export import user_turn
from selfinstruct.testing.server import OpenAITestServer
from selfinstruct.testing.teacher import SyntheticTeacher


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Grow a self-instruct run (classification and instances stages) once."""
    out = tmp_path_factory.mktemp("dedup-exports") / "run"
    with OpenAITestServer(SyntheticTeacher()) as server:
        done = run_cli(*bootstrap_args(server, out, "--target", "40"))
    assert done.returncode == 0, done.stderr
    return out


def _pool(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "pool.jsonl").read_text().splitlines()]


def _chat(system_key: str, user: str, assistant: str, rec: dict[str, str]) -> dict[str, Any]:
    if system_key == "messages":
        turns: list[dict[str, str]] = [
            {"role": "user", "content": user_turn(rec["instruction"], rec["input"])},
            {"role": "assistant", "content": rec["output"]},
        ]
    else:
        turns = [
            {"from": "human", "value": user_turn(rec["instruction"], rec["input"])},
            {"from": "gpt", "value": rec["output"]},
        ]
    return {system_key: turns}


# How a record of each format is written, to add a near-duplicate task to an export.
LINE: dict[str, Callable[[dict[str, str]], dict[str, Any]]] = {
    "jsonl": lambda rec: rec,
    "sharegpt": lambda rec: _chat("conversations", "human", "gpt", rec),
    "openai": lambda rec: _chat("messages", "user", "assistant", rec),
}


@pytest.mark.parametrize("fmt", ["alpaca", "jsonl", "sharegpt", "openai", "tasks"])
def test_every_export_format_survives_dedup_whole(run_dir: Path, tmp_path: Path, fmt: str) -> None:
    pool = _pool(run_dir)
    records = sum(len(t["instances"]) for t in pool)
    assert records > len(pool)  # tasks with several instances share an instruction
    name = "data.json" if fmt == "alpaca" else "data.jsonl"
    exported = tmp_path / name
    done = run_cli("export", "--out", str(run_dir), "-f", fmt, "-o", str(exported))
    assert done.returncode == 0, done.stderr
    kept = tmp_path / f"kept-{name}"
    done = run_cli("dedup", str(exported), "-o", str(kept))
    assert done.returncode == 0, done.stderr
    n = len(pool) if fmt == "tasks" else records
    assert f"kept {n} of {n} records ({len(pool)} of {len(pool)} tasks; 0 records" in done.stdout
    assert kept.read_bytes() == exported.read_bytes()  # nothing lost, nothing changed
    assert (tmp_path / f"kept-{name}.rejected.jsonl").read_text() == ""


@pytest.mark.parametrize("fmt", ["alpaca", "jsonl", "sharegpt", "openai", "tasks"])
def test_near_duplicate_task_is_dropped_with_all_its_instances(
    run_dir: Path, tmp_path: Path, fmt: str
) -> None:
    pool = _pool(run_dir)
    original = pool[0]["instruction"]
    near = original.rstrip(".?!") + " and be brief."
    extra = [
        {"instruction": near, "input": f"Case {n}.", "output": f"Answer {n}."} for n in range(3)
    ]
    name = "data.json" if fmt == "alpaca" else "data.jsonl"
    exported = tmp_path / name
    assert run_cli("export", "--out", str(run_dir), "-f", fmt, "-o", str(exported)).returncode == 0
    if fmt == "alpaca":
        rows = json.loads(exported.read_text())
        # The near duplicate's records go in twice: at the end and amid the others.
        rows[3:3] = extra[:1]
        rows += extra[1:]
        exported.write_text(json.dumps(rows, indent=2))
        dropped_records = 3
    elif fmt == "tasks":
        instances = [{"input": r["input"], "output": r["output"]} for r in extra]
        task = {"id": "x", "instruction": near, "instances": instances}
        with exported.open("a") as fh:
            fh.write(json.dumps(task) + "\n")
        dropped_records = 1
    else:
        lines = exported.read_text().splitlines(keepends=True)
        added = [json.dumps(LINE[fmt](rec)) + "\n" for rec in extra]
        lines[3:3] = added[:1]
        lines += added[1:]
        exported.write_text("".join(lines))
        dropped_records = 3
    kept = tmp_path / "kept"
    summary = dedup_file(exported, kept, rejected_path=tmp_path / "rejects.jsonl")
    assert (summary.tasks, summary.tasks_kept) == (len(pool) + 1, len(pool))
    assert summary.rejected == dropped_records and summary.duplicate_records == 0
    rejects = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert len(rejects) == dropped_records
    assert {r["reason"] for r in rejects} == {"near_duplicate"}
    assert {r["nearest"] for r in rejects} == {original}
    assert all(r["score"] > 0.7 and r["source"] == "input" for r in rejects)
    assert near not in kept.read_text()


def test_repeated_records_are_dropped_but_instances_kept(tmp_path: Path) -> None:
    task = "Sort the following numbers from the smallest to the largest."
    other = "Name the capital city of the given country."
    rows = [
        {"instruction": task, "input": "3, 1, 2", "output": "1, 2, 3"},
        {"instruction": other, "input": "France", "output": "Paris"},
        {"instruction": task, "input": "9, 7", "output": "7, 9"},  # an instance: kept
        {"instruction": task, "input": "3, 1, 2", "output": "1, 2, 3"},  # the same again
    ]
    source = tmp_path / "data.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = dedup_file(source, tmp_path / "kept.jsonl")
    assert (summary.kept, summary.duplicate_records, summary.tasks) == (3, 1, 2)
    (reject,) = [json.loads(x) for x in summary.rejected_path.read_text().splitlines()]
    assert (reject["reason"], reject["line"], reject["nearest_line"]) == ("duplicate_record", 4, 1)
