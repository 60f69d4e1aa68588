"""The CLI as a user runs it: a real subprocess against the loopback teacher."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import bootstrap_args, cli_env, run_cli

from selfinstruct.testing.server import OpenAITestServer, RecordedRequest

SECRET = "sk-test-secret-0123456789"


def test_bootstrap_status_export(teacher: OpenAITestServer, tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = run_cli(*bootstrap_args(teacher, out, "--target", "60"), api_key=SECRET)
    assert done.returncode == 0, done.stderr
    pool = [json.loads(line) for line in (out / "pool.jsonl").read_text().splitlines()]
    assert len(pool) >= 60
    assert len({t["instruction"] for t in pool}) == len(pool)
    assert [t["id"] for t in pool] == [f"task_{i:06d}" for i in range(1, len(pool) + 1)]
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert rejected and all(r["reason"] for r in rejected)
    state = json.loads((out / "state.json").read_text())
    assert state["accepted"] == len(pool)
    assert sum(state["rejections"].values()) == len(rejected)

    status = run_cli("status", "--out", str(out))
    assert status.returncode == 0
    assert f"{len(pool)} / 60" in status.stdout and "near_duplicate" in status.stdout
    for stage in ("instructions", "classify", "instances"):
        assert stage in status.stdout

    data = tmp_path / "data.json"
    exported = run_cli("export", "--out", str(out), "-o", str(data))
    assert exported.returncode == 0, exported.stderr
    records = json.loads(data.read_text())
    # One record per instance, as the Self-Instruct release did.
    expected = [
        {"instruction": t["instruction"], "input": i["input"], "output": i["output"]}
        for t in pool
        for i in t["instances"]
    ]
    assert records == expected and len(records) > len(pool)
    assert all(r["output"].strip() for r in records)

    # Complete tasks only: classified, with 1 to 5 instances.
    assert all(isinstance(t["is_classification"], bool) for t in pool)
    assert all(1 <= len(t["instances"]) <= 5 for t in pool)
    assert any(t["is_classification"] for t in pool) and not all(
        t["is_classification"] for t in pool
    )
    stages = {r["stage"] for r in rejected}
    assert {"instructions", "instances"} <= stages

    tasks_file = tmp_path / "tasks.jsonl"
    assert (
        run_cli("export", "--out", str(out), "-f", "tasks", "-o", str(tasks_file)).returncode == 0
    )
    from selfinstruct.seeds import load_seeds

    reseeded = load_seeds(tasks_file)  # a finished pool can seed another run
    assert [t.instruction for t in reseeded.tasks] == [t["instruction"] for t in pool]

    # The secret is in no file of the run directory, and not in any output.
    for path in out.iterdir():
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path
    assert SECRET not in done.stdout + done.stderr

    # A larger target continues the same run; the first 60+ tasks stay as they were.
    more = run_cli(*bootstrap_args(teacher, out, "--target", "90"), api_key=SECRET)
    assert more.returncode == 0, more.stderr
    grown = (out / "pool.jsonl").read_text().splitlines()
    assert len(grown) >= 90
    assert [json.loads(line) for line in grown[: len(pool)]] == pool


def test_missing_key_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    done = run_cli(
        "bootstrap", "--backend", "openai", "--out", str(tmp_path / "run"), "--target", "5"
    )
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "OPENAI_API_KEY" in done.stderr and "--base-url" in done.stderr
    assert not (tmp_path / "run").exists()


def test_missing_key_without_the_local_extra_names_both_ways(tmp_path: Path) -> None:
    # Make llama_cpp unimportable in the child, as on a machine without the [local] extra.
    code = "import sys; sys.modules['llama_cpp'] = None; from selfinstruct.cli import app; app()"
    done = subprocess.run(
        [sys.executable, "-c", code, "bootstrap", "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env=cli_env(),
        check=False,
        timeout=120,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "OPENAI_API_KEY" in done.stderr and "--base-url" in done.stderr
    assert "selfinstruct[local]" in done.stderr or ".[local]" in done.stderr
    assert not (tmp_path / "run").exists()


def test_unreachable_server_is_one_line(tmp_path: Path) -> None:
    done = run_cli(
        "bootstrap",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--out",
        str(tmp_path / "run"),
        "--max-retries",
        "0",
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "cannot reach http://127.0.0.1:9/v1" in done.stderr
    assert not (tmp_path / "run").exists()


def test_bad_seed_file_names_line_and_field(teacher: OpenAITestServer, tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.jsonl"
    good = {
        "id": "a",
        "name": "a",
        "instruction": "Say something nice about Mondays.",
        "instances": [{"input": "", "output": "They start the week."}],
        "is_classification": False,
    }
    bad = dict(good, id="b", is_classification="sometimes")
    seeds.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    done = run_cli(*bootstrap_args(teacher, tmp_path / "run", "--seeds", str(seeds)))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert f"{seeds}:2: field 'is_classification'" in done.stderr
    assert not (tmp_path / "run").exists()
    assert teacher.requests == []


def test_bad_config_names_the_field(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('[teacher]\nmodel = "m"\ntemprature = 0.5\n')
    done = run_cli("bootstrap", "--config", str(config), "--base-url", "http://127.0.0.1:9/v1")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "teacher.temprature: unknown setting" in done.stderr

    config.write_text("target = -3\n")
    done = run_cli("bootstrap", "--config", str(config), "--base-url", "http://127.0.0.1:9/v1")
    assert done.returncode != 0 and "target:" in done.stderr


def test_config_file_and_flags(teacher: OpenAITestServer, tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    out = tmp_path / "run"
    config.write_text(f'target = 10\nout = "{out}"\n[teacher]\nmodel = "from-toml"\ntop_p = 0.5\n')
    done = run_cli(
        "bootstrap", "--config", str(config), "--base-url", teacher.base_url, "--top-p", "0.9", "-q"
    )
    assert done.returncode == 0, done.stderr
    body = teacher.requests[0].body
    assert body["model"] == "from-toml" and body["top_p"] == 0.9
    assert json.loads((out / "config.json").read_text())["config"]["target"] == 10


def test_changed_identity_is_refused_with_field(teacher: OpenAITestServer, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run_cli(*bootstrap_args(teacher, out, "--target", "10")).returncode == 0
    before = (out / "pool.jsonl").read_bytes()
    done = run_cli(*bootstrap_args(teacher, out, "--target", "20", "--temperature", "0.3"))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "teacher.temperature" in done.stderr and "0.7" in done.stderr
    assert (out / "pool.jsonl").read_bytes() == before
    # Operational settings may change.
    done = run_cli(*bootstrap_args(teacher, out, "--target", "20", "--concurrency", "3"))
    assert done.returncode == 0, done.stderr


def test_export_of_missing_run_is_one_line(tmp_path: Path) -> None:
    done = run_cli("export", "--out", str(tmp_path / "nothing"), "-o", str(tmp_path / "x.json"))
    assert done.returncode != 0 and "not a run directory" in done.stderr
    assert "Traceback" not in done.stderr


def test_chat_api_runs_every_stage(teacher: OpenAITestServer, tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = run_cli(*bootstrap_args(teacher, out, "--target", "20", "--api", "chat"))
    assert done.returncode == 0, done.stderr
    assert {r.endpoint for r in teacher.requests} == {"chat"}
    pool = [json.loads(line) for line in (out / "pool.jsonl").read_text().splitlines()]
    assert len(pool) >= 20
    # The chat teacher opens with chatter; it must not become an instruction.
    assert not any(t["instruction"].startswith("Here are") for t in pool)


def test_persistent_teacher_fault_stops_cleanly_and_resumes(tmp_path: Path) -> None:
    from selfinstruct.testing.server import Reply
    from selfinstruct.testing.teacher import SyntheticTeacher

    teacher = SyntheticTeacher()
    broken = {"on": False}

    def handler(request: RecordedRequest) -> Reply:
        return Reply.server_error(503) if broken["on"] else teacher(request)

    out = tmp_path / "run"
    with OpenAITestServer(handler) as server:
        assert run_cli(*bootstrap_args(server, out, "--target", "20")).returncode == 0
        broken["on"] = True
        args = bootstrap_args(server, out, "--target", "60", "--max-retries", "1")
        done = run_cli(*args)
        assert done.returncode != 0 and "Traceback" not in done.stderr
        assert server.base_url in done.stderr and "503" in done.stderr
        assert "re-run the same command to resume" in done.stderr
        broken["on"] = False
        done = run_cli(*args)
        assert done.returncode == 0, done.stderr
    assert len((out / "pool.jsonl").read_text().splitlines()) >= 60


def test_dedup_command(tmp_path: Path) -> None:
    records = [
        {"instruction": "Explain how tides work to a curious child.", "input": "", "output": "a"},
        {"instruction": "Explain how tides work to a curious kid.", "input": "", "output": "b"},
        {"instruction": "List three uses of baking soda at home.", "input": "", "output": "c"},
    ]
    source, kept = tmp_path / "data.json", tmp_path / "kept.json"
    source.write_text(json.dumps(records))
    done = run_cli("dedup", str(source), "-o", str(kept))
    assert done.returncode == 0, done.stderr
    assert "kept 2 of 3" in done.stdout
    assert json.loads(kept.read_text()) == [records[0], records[2]]
    (reject,) = [
        json.loads(x) for x in (tmp_path / "kept.json.rejected.jsonl").read_text().splitlines()
    ]
    assert reject["nearest"] == records[0]["instruction"] and reject["score"] > 0.7

    source.write_text('[{"instruction": 5}]')
    done = run_cli("dedup", str(source), "-o", str(kept))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert f"{source}:1: field 'instruction'" in done.stderr


def test_progress_is_saved_only_where_there_is_progress(tmp_path: Path) -> None:
    from selfinstruct.testing.server import Reply

    out = tmp_path / "run"
    with OpenAITestServer(lambda request: Reply.server_error(503)) as server:
        done = run_cli(*bootstrap_args(server, out, "--max-retries", "0"))
    assert done.returncode == 1 and "HTTP 503" in done.stderr
    assert "Traceback" not in done.stderr
    # Nothing was answered, so there is nothing to resume: no promise that there is.
    assert "progress is saved" not in done.stderr and "resume" not in done.stderr


def test_the_model_the_server_reports_is_recorded_and_shown(tmp_path: Path) -> None:
    from selfinstruct.testing.teacher import SyntheticTeacher

    out = tmp_path / "run"
    with OpenAITestServer(SyntheticTeacher(), models=("org/checkpoint-7b",)) as server:
        done = run_cli(*bootstrap_args(server, out, "--target", "10"))
        assert done.returncode == 0, done.stderr
    header = json.loads((out / "config.json").read_text())
    assert header["teacher_reported"] == "org/checkpoint-7b"
    assert "teacher.model" in header["identity"] and "teacher_reported" not in header["identity"]
    status = run_cli("status", "--out", str(out))
    assert "teacher    test-model (completions API; the server reports org/checkpoint-7b)" in (
        status.stdout
    )
    # A server that now runs something else under the name: the run goes on, and says so.
    with OpenAITestServer(SyntheticTeacher(), models=("org/checkpoint-13b",)) as server:
        done = run_cli(*bootstrap_args(server, out, "--target", "20"))
    assert done.returncode == 0, done.stderr
    assert "now reports the model 'org/checkpoint-13b'" in done.stderr
    assert "'org/checkpoint-7b'" in done.stderr


def test_the_progress_line_says_at_once_that_the_run_waits_for_requests_at_the_target(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from collections import Counter

    from selfinstruct.cli import _ProgressLine
    from selfinstruct.engine import Progress

    line = _ProgressLine()  # stderr is no terminal here: a line at most every 5 s ...
    reached = Progress(
        accepted=1063,
        target=1000,
        rounds=11,
        rejections=Counter(),
        accepted_this_session=1063,
        elapsed=20.0,
        requests_sent=185,
        requests_replayed=0,
    )
    line(reached)
    line(dataclasses.replace(reached, landing=63))  # ... but the wait is news at once
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and "landing" not in lines[0]
    assert "target reached: 63 requests already sent are landing in the log" in lines[1]
    assert "Ctrl-C exits now" in lines[1]
