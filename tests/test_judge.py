"""The judge stage (--judge): every committed task rated 1-5 with a reason, like any stage.

Runs go through the real CLI (or the library entry point it calls) against the loopback
server with the real openai client; the synthetic teacher answers judge prompts too.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    SHORT_WINDOW,
    Jittery,
    Tripwire,
    bootstrap_args,
    cli_env,
    run_cli,
    window_config,
)

from selfinstruct.config import RunConfig
from selfinstruct.judge import parse_verdict, summarize
from selfinstruct.prompts import TEMPLATE_VARIABLES, default_prompts_dir, load_prompts
from selfinstruct.records import Task
from selfinstruct.runner import run_bootstrap
from selfinstruct.testing.keys import digest_of
from selfinstruct.testing.server import OpenAITestServer, RecordedRequest, Reply
from selfinstruct.testing.teacher import SyntheticTeacher
from selfinstruct.testing.teacher_zh import ChineseSyntheticTeacher
from selfinstruct.text import invalid_char


def _is_judge(request: RecordedRequest) -> bool:
    return request.prompt.rstrip().endswith("Score:")


def _pool(out: Path) -> list[Task]:
    return [
        Task.model_validate_json(line) for line in (out / "pool.jsonl").read_text().splitlines()
    ]


def _usage(out: Path) -> dict[str, dict[str, int]]:
    usage: dict[str, dict[str, int]] = json.loads((out / "state.json").read_text())["usage"]
    return usage


def _rated(request: RecordedRequest) -> str:
    """Return the instruction a judge prompt shows."""
    found = re.search(r"\nInstruction: (.+)\n", request.prompt)
    assert found is not None, request.prompt
    return found.group(1)


def _unjudged(out: Path) -> list[str]:
    """Return pool.jsonl's lines without their judge field, as an unjudged run writes them."""
    lines = []
    for line in (out / "pool.jsonl").read_text().splitlines():
        entry = json.loads(line)
        entry.pop("judge", None)
        lines.append(json.dumps(entry, ensure_ascii=False, separators=(",", ":")))
    return lines


# -- reading verdicts ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "score", "reason"),
    [
        (" 4\nReason: Clear and correct.", 4, "Clear and correct."),  # a continued line
        ("Score: 5\nReason: Excellent outputs.\n\nInstruction: next", 5, "Excellent outputs."),
        ("**Score:** 2\n\n**Reason:** Vague.", 2, "Vague."),
        ("score: 3 - the outputs are thin", 3, "the outputs are thin"),
        ("Score：1\nReason：输出没有完成要求。", 1, "输出没有完成要求。"),
        ("评分：5\n理由：指令清楚。", 5, "指令清楚。"),
        (" 4", 4, ""),
    ],
)
def test_verdicts_are_read(text: str, score: int, reason: str) -> None:
    verdict = parse_verdict(text)
    assert verdict is not None
    assert (verdict.score, verdict.reason) == (score, reason)


@pytest.mark.parametrize(
    "text",
    ["", " Looks fine to me.", "Score: 7\nReason: off the scale", " 10 out of 10", "Score: 4.5"],
)
def test_answers_without_a_score_are_not_verdicts(text: str) -> None:
    assert parse_verdict(text) is None


def test_a_runaway_reason_is_cut_and_control_characters_escaped() -> None:
    verdict = parse_verdict(" 3\nReason: " + "very " * 200 + "\x1b[2J")
    assert verdict is not None and len(verdict.reason) <= 300
    assert "\x1b" not in (parse_verdict(" 3\nReason: bad \x1b[2J") or verdict).reason


# -- a judged run, end to end ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["self-instruct", "alpaca"])
def test_judged_run_scores_every_task_and_status_shows_them(tmp_path: Path, mode: str) -> None:
    target = {"self-instruct": 40, "alpaca": 60}[mode]
    with OpenAITestServer(SyntheticTeacher()) as server:
        args = ("--mode", mode, "--target", str(target), "--concurrency", "8")
        plain = run_cli(*bootstrap_args(server, tmp_path / "plain", *args))
        assert plain.returncode == 0, plain.stderr
        plain_requests = len(server.requests)
        out = tmp_path / "judged"
        done = run_cli(*bootstrap_args(server, out, *args, "--judge"))
        assert done.returncode == 0, done.stderr
        judged_requests = server.requests[plain_requests:]
    pool = _pool(out)
    assert len(pool) >= target
    # The judge never rejects: the pool is the unjudged run's, task for task.
    assert _unjudged(out) == (tmp_path / "plain" / "pool.jsonl").read_text().splitlines()
    assert all(t.judge is not None and t.judge.model == "test-model" for t in pool)
    scores = Counter(t.judge.score for t in pool if t.judge is not None)
    assert set(scores) - {None} == {1, 2, 3, 4, 5}, scores  # a spread, not one value
    assert all(t.judge is not None and t.judge.reason for t in pool)
    # One judge request per task, plus one retry per unreadable first verdict; each shows
    # the task it rates.
    judge_requests = [r for r in judged_requests if _is_judge(r)]
    retries = [r for r in judge_requests if r.body.get("seed") is not None]
    # (Rounds still in flight at the target are given up: sent, maybe not logged.)
    assert 0 < _usage(out)["judge"]["requests"] <= len(judge_requests)
    assert retries, "the synthetic teacher's unreadable verdicts exercise the retry"
    assert all(r.body["temperature"] == 0.7 for r in retries)
    assert {t.instruction for t in pool} <= {_rated(r) for r in judge_requests}
    assert _usage(out)["judge"]["prompt_tokens"] > 0
    assert not any(
        json.loads(line)["stage"] == "judge"
        for line in (out / "rejected.jsonl").read_text().splitlines()
    )

    status = run_cli("status", "--out", str(out))
    assert status.returncode == 0, status.stderr
    summary = summarize(pool)
    text = status.stdout
    assert f"judge      {len(pool)} tasks judged by test-model, mean score" in text
    for score in range(1, 6):
        assert re.search(rf"\n  score {score} +{summary.counts[score]}  #*\n", text), score
    assert re.search(r"\n  judge +\d+ +\d+ +\d+", text)  # the stage's requests and tokens
    lowest = re.findall(r"\n  (task_\d+)  (\d)  ", text)
    assert len(lowest) == 5
    assert [int(s) for _, s in lowest] == sorted(int(s) for _, s in lowest)
    assert max(int(s) for _, s in lowest) <= sorted(t.judge.score or 9 for t in pool if t.judge)[4]
    # The unjudged run's status says nothing of a judge.
    assert "judge " not in run_cli("status", "--out", str(tmp_path / "plain")).stdout


def test_chinese_run_is_judged_with_the_chinese_template(tmp_path: Path) -> None:
    out = tmp_path / "zh"
    with OpenAITestServer(ChineseSyntheticTeacher()) as server:
        done = run_cli(
            *bootstrap_args(server, out, "--language", "zh", "--target", "15", "--judge")
        )
        assert done.returncode == 0, done.stderr
        prompts = [r.prompt for r in server.requests if _is_judge(r)]
    assert prompts and all("请按下面的标准给整个任务打分" in p for p in prompts)
    pool = _pool(out)
    assert all(t.judge is not None for t in pool)
    assert any(t.judge and t.judge.score and "输出" in t.judge.reason for t in pool)


# -- retry once, then record -------------------------------------------------------------


class _Mumbling:
    """The synthetic teacher, but a judge that never gives a score."""

    def __init__(self) -> None:
        self.teacher = SyntheticTeacher()

    def __call__(self, request: RecordedRequest) -> Reply:
        if _is_judge(request):
            return Reply(text=f" It is hard to say (seed {request.body.get('seed')}).")
        return self.teacher(request)


def test_unreadable_verdicts_are_asked_again_once_then_recorded(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with OpenAITestServer(_Mumbling()) as server:
        done = run_cli(*bootstrap_args(server, out, "--target", "12", "--judge"))
        assert done.returncode == 0, done.stderr
        judge_requests = [r for r in server.requests if _is_judge(r)]
    pool = _pool(out)
    assert len(pool) >= 12  # every task is kept, judged or not
    # Exactly one retry per task: greedy first, then sampled with a seed of its own.
    asked = Counter(
        (_rated(r), r.body["temperature"], r.body.get("seed") is None) for r in judge_requests
    )
    for task in pool:
        assert asked[(task.instruction, 0, True)] == 1, task.instruction
        assert asked[(task.instruction, 0.7, False)] == 1, task.instruction
    seeds = [r.body["seed"] for r in judge_requests if r.body.get("seed") is not None]
    assert len(set(seeds)) == len(seeds)
    for task in pool:
        assert task.judge is not None and task.judge.score is None
        assert task.judge.reason.startswith("no score in the judge's answers ")
        assert "hard to say (seed None)" in task.judge.reason
    status = run_cli("status", "--out", str(out))
    assert f"  no score{len(pool):>9}" in status.stdout


# What a hostile judge may slip into its reason (as tests/test_hostile_text.py injects).
INJECTED = ["\ud800", "\x00", "\x1b[2J\x1b]0;pwned\x07", "\x9b31m", "\ufffd", "\u202e", "\u2028"]


class _Hostile:
    """The synthetic teacher, with a character of INJECTED inside every judge's reason."""

    def __init__(self) -> None:
        self.teacher = SyntheticTeacher(judge_garbage_rate=0.0)

    def __call__(self, request: RecordedRequest) -> Reply:
        reply = self.teacher(request)
        if not _is_judge(request):
            return reply
        pick = hashlib.sha256(request.prompt.encode()).digest()[0] % len(INJECTED)
        return replace(reply, text=reply.text.replace("Reason: ", f"Reason: {INJECTED[pick]}", 1))


def test_a_hostile_judges_reasons_are_stored_safely_and_replayed(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with OpenAITestServer(_Hostile()) as server:
        done = run_cli(*bootstrap_args(server, out, "--target", "20", "--judge"))
        assert done.returncode == 0, done.stderr
        before = (out / "pool.jsonl").read_bytes()
        # Resumed from the logged answers alone: the very same pool comes back.
        (out / "state.json").unlink()
        for name in ("pool.jsonl", "rejected.jsonl"):
            (out / name).write_bytes(b"")
        sent, logged = len(server.requests), _logged_digests(out)
        again = run_cli(*bootstrap_args(server, out, "--target", "20", "--judge"))
        assert again.returncode == 0, again.stderr
        assert not [r for r in server.requests[sent:] if digest_of(r) in logged]
    assert (out / "pool.jsonl").read_bytes() == before
    before.decode("utf-8")  # valid UTF-8: no lone surrogate was written raw
    for task in _pool(out):
        assert task.judge is not None and task.judge.score is not None
        assert invalid_char(task.judge.reason) is None, task.judge.reason
        assert not set(task.judge.reason) & set("\u202e\u2028\x1b")
    status = run_cli("status", "--out", str(out))
    assert status.returncode == 0 and "\x1b" not in status.stdout


# -- determinism: concurrency and kills ----------------------------------------------------


def test_same_pool_and_scores_whatever_the_concurrency(tmp_path: Path) -> None:
    pools = []
    for concurrency in (1, 24):
        out = tmp_path / f"c{concurrency}"
        config = RunConfig.model_validate(
            {
                "out": out,
                "target": 40,
                "lookahead": 1,
                "judge": {"enabled": True},
                "teacher": {"model": "test-model", "concurrency": concurrency},
            }
        )
        with OpenAITestServer(Jittery(0.02)) as server:
            config.teacher.base_urls = [server.base_url]
            asyncio.run(run_bootstrap(config, {}))
        pools.append((out / "pool.jsonl").read_bytes())
    assert pools[0] == pools[1]
    assert b'"judge":{"score":' in pools[0]


def _logged_digests(out: Path) -> set[str]:
    path = out / "responses.jsonl"
    if not path.exists():
        return set()
    lines = path.read_bytes().split(b"\n")[:-1]
    return {json.loads(line)["key"].rsplit("/", 1)[1] for line in lines if line.strip()}


def test_killed_judged_run_resumes_to_the_same_pool_paying_nothing_twice(tmp_path: Path) -> None:
    window_config(tmp_path)
    args = ("--target", "60", "--concurrency", "4", "--config", str(tmp_path / "window.toml"))
    wire = Tripwire(SyntheticTeacher(), counts=_is_judge)
    with OpenAITestServer(wire) as server:
        reference = run_cli(*bootstrap_args(server, tmp_path / "reference", *args, "--judge"))
        assert reference.returncode == 0, reference.stderr
        out = tmp_path / "killed"
        command = [sys.executable, "-m", "selfinstruct"]
        command += bootstrap_args(server, out, *args, "--judge")
        start = len(server.requests)
        kills = 0
        for attempt in range(12):
            logged = _logged_digests(out)
            seen = len(server.requests)
            wire.arm(3 + 4 * attempt)  # a kill among the judge's requests, later each time
            proc = subprocess.Popen(
                command, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            deadline = time.monotonic() + 60
            while not wire.fired.wait(0.01) and proc.poll() is None:
                assert time.monotonic() < deadline, "the run neither finished nor judged"
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            _, stderr = proc.communicate(timeout=120)
            # Nothing whose answer was logged is asked again, judge requests included.
            again = [r for r in server.requests[seen:] if digest_of(r) in logged]
            assert again == [], f"attempt {attempt}: {len(again)} logged requests asked again"
            if proc.returncode == 0:
                break
            assert proc.returncode == -signal.SIGKILL, stderr
        else:
            raise AssertionError("the run never finished")
        requests = server.requests[start:]
    assert kills >= 2
    assert (out / "pool.jsonl").read_bytes() == (tmp_path / "reference" / "pool.jsonl").read_bytes()
    # Only what was on the wire at a kill is paid twice: at most --concurrency per kill.
    sent = Counter(digest_of(r) for r in requests)
    assert sum(n - 1 for n in sent.values()) <= 4 * kills
    keys = [json.loads(line)["key"] for line in (out / "responses.jsonl").read_text().splitlines()]
    assert len(keys) == len(set(keys))


# -- the judge's own model, endpoint, key and prices ------------------------------------------


def test_judge_with_its_own_model_endpoint_key_and_prices(tmp_path: Path) -> None:
    out = tmp_path / "run"
    teacher_key, judge_key = "sk-teacher-0123456789abcdef", "sk-judge-0123456789abcdef"
    with (
        OpenAITestServer(SyntheticTeacher(), api_key=teacher_key) as teacher,
        OpenAITestServer(SyntheticTeacher(), api_key=judge_key, models=("judge-model",)) as judge,
    ):
        args = bootstrap_args(teacher, out, "--target", "20", "--judge")
        args += ["--judge-model", "judge-model", "--judge-base-url", judge.base_url]
        args += ["--judge-api", "chat", "--price-in", "1", "--price-out", "2"]
        args += ["--judge-price-in", "10", "--judge-price-out", "20"]
        env = cli_env(teacher_key) | {"SELFINSTRUCT_JUDGE_API_KEY": judge_key}
        done = subprocess.run(
            [sys.executable, "-m", "selfinstruct", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        teacher_requests, judge_requests = list(teacher.requests), list(judge.requests)
    assert judge_requests and all(_is_judge(r) for r in judge_requests)
    assert not any(_is_judge(r) for r in teacher_requests)
    assert {r.body["model"] for r in judge_requests} == {"judge-model"}
    assert {r.endpoint for r in judge_requests} == {"chat"}
    assert all(r.headers.get("authorization") == f"Bearer {judge_key}" for r in judge_requests)
    pool = _pool(out)
    assert all(t.judge is not None and t.judge.model == "judge-model" for t in pool)
    # The keys stay in the environment: no file of the run holds either.
    for path in out.iterdir():
        data = path.read_bytes()
        assert teacher_key.encode() not in data and judge_key.encode() not in data, path.name
    header = json.loads((out / "config.json").read_text())
    assert header["identity"]["judge.model"] == "judge-model"
    assert "judge.base_urls" not in header["identity"]  # where it is served is operational

    usage = _usage(out)
    teacher_usd = sum(
        (u["prompt_tokens"] * 1 + u["completion_tokens"] * 2) / 1e6
        for stage, u in usage.items()
        if stage != "judge"
    )
    judge_usd = (
        usage["judge"]["prompt_tokens"] * 10 + usage["judge"]["completion_tokens"] * 20
    ) / 1e6
    status = run_cli("status", "--out", str(out))
    assert status.returncode == 0, status.stderr
    assert f"cost       {teacher_usd + judge_usd:.2f} USD at 1.0/2.0" in status.stdout
    assert "the judge at 10.0/20.0" in status.stdout
    assert "judged by judge-model" in status.stdout

    # The report and the export's data card price the judge as status does, and the card
    # counts what --min-score kept of this really judged pool.
    report = run_cli("report", str(out), "--parser", "heuristic")
    assert report.returncode == 0, report.stderr
    page = (out / "report" / "report.html").read_text(encoding="utf-8")
    assert f"{teacher_usd + judge_usd:.2f} USD at 1 / 2 USD per million tokens" in page
    assert "The judge&#x27;s scores" in page or "The judge's scores" in page
    scores = [t.judge.score for t in pool if t.judge is not None]
    exported = tmp_path / "data.json"
    done_export = run_cli("export", "--out", str(out), "-o", str(exported), "--min-score", "4")
    assert done_export.returncode == 0, done_export.stderr
    kept = json.loads(exported.read_text())
    card = json.loads((tmp_path / "data.json.card.json").read_text())
    assert card["judge"]["min_score"] == 4
    assert card["judge"]["dropped_below_min_score"] == sum(
        1 for s in scores if s is not None and s < 4
    )
    assert card["judge"]["dropped_unscored"] == len(pool) - len(scores) + scores.count(None)
    wanted = {t.instruction for t in pool if t.judge and t.judge.score and t.judge.score >= 4}
    assert {r["instruction"] for r in kept} == wanted
    assert card["usage"]["cost_usd"] == pytest.approx(teacher_usd + judge_usd, abs=1e-6)


def test_max_cost_needs_the_judge_models_price(tmp_path: Path) -> None:
    with OpenAITestServer(SyntheticTeacher()) as server:
        done = run_cli(
            *bootstrap_args(server, tmp_path / "run", "--judge", "--judge-model", "unpriced"),
            *("--max-cost", "1", "--price-in", "1", "--price-out", "1"),
        )
        assert server.requests == []
    assert done.returncode == 1
    assert "--max-cost needs the judge model's price: 'unpriced'" in done.stderr
    assert not (tmp_path / "run").exists()


# -- budgets --------------------------------------------------------------------------------


def test_max_tokens_counts_the_judges_tokens(tmp_path: Path) -> None:
    out = tmp_path / "run"
    limit = 20_000
    with OpenAITestServer(SyntheticTeacher()) as server:
        args = ("--target", "1000", "--judge", "--concurrency", "2", "--max-tokens", str(limit))
        done = run_cli(*bootstrap_args(server, out, *args))
    assert done.returncode == 3, done.stderr  # stopped by the budget, resumable
    assert "budget spent" in done.stderr
    usage = _usage(out)
    spent = {s: u["prompt_tokens"] + u["completion_tokens"] for s, u in usage.items()}
    assert spent["judge"] > 0
    # It stopped because of what the judge used: the other stages alone were under it.
    assert sum(spent.values()) >= limit > sum(n for s, n in spent.items() if s != "judge")


def test_max_cost_prices_the_judge_at_its_own_models_price(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with OpenAITestServer(SyntheticTeacher(), models=("test-model", "judge-model")) as server:
        # The teacher is free: only the judge's tokens, at its own price, can spend 1 USD.
        args = ("--target", "1000", "--concurrency", "2", "--max-cost", "1")
        args += ("--price-in", "0", "--price-out", "0", "--judge", "--judge-model", "judge-model")
        args += ("--judge-price-in", "200", "--judge-price-out", "200")
        done = run_cli(*bootstrap_args(server, out, *args))
    assert done.returncode == 3, done.stderr
    assert "budget spent" in done.stderr and "of --max-cost 1.00" in done.stderr
    judge = _usage(out)["judge"]
    spent = (judge["prompt_tokens"] + judge["completion_tokens"]) * 200 / 1e6
    # Stopped once the judge's own cost reached the limit (a few answers in flight land after).
    assert 1.0 <= spent < 1.5
    status = run_cli("status", "--out", str(out))
    assert f"cost       {spent:.2f} USD at 0.0/0.0" in status.stdout


# -- the Batch API ------------------------------------------------------------------------


class _Recording:
    """The synthetic teacher, noting the model of every judge request it answers."""

    def __init__(self) -> None:
        self.teacher = SyntheticTeacher()
        self.judge_models: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> Reply:
        if _is_judge(request):
            with self._lock:
                self.judge_models.append(str(request.body.get("model")))
        return self.teacher(request)


@pytest.mark.parametrize("own_model", [False, True])
def test_judge_requests_go_through_the_batch_api(tmp_path: Path, own_model: bool) -> None:
    config = tmp_path / "batch.toml"
    config.write_text(SHORT_WINDOW + "[teacher]\nbatch_quiet_seconds = 0.3\n")
    extra = ["--judge-model", "judge-model"] if own_model else []
    args = ("--target", "30", "--config", str(config), "--judge", *extra)
    handler = _Recording()
    with OpenAITestServer(handler, batch_delay=0.1, models=("test-model", "judge-model")) as srv:
        direct = run_cli(*bootstrap_args(srv, tmp_path / "direct", *args))
        assert direct.returncode == 0, direct.stderr
        direct_requests = len(srv.requests)
        batched = run_cli(
            *bootstrap_args(srv, tmp_path / "batch", *args),
            *("--batch-api", "--batch-poll-seconds", "0.05"),
        )
        assert batched.returncode == 0, batched.stderr
        assert len(srv.requests) == direct_requests, "--batch-api sent direct requests"
        batches = srv.batches
    out = tmp_path / "batch"
    judged = [k for b in batches for k in b.custom_ids if "/judge/" in k]
    assert judged and all(b.status == "completed" for b in batches)
    # The same answers make the same pool, scores included, however they were fetched.
    assert (out / "pool.jsonl").read_bytes() == (tmp_path / "direct" / "pool.jsonl").read_bytes()
    log = [json.loads(line) for line in (out / "batches.jsonl").read_text().splitlines()]
    lanes = {entry.get("lane") for entry in log}
    if own_model:
        # A batch holds one model's requests: the judge's go in batches of their own.
        assert lanes == {None, "judge"}
        assert all(
            all("/judge/" in k for k in b.custom_ids)
            or not any("/judge/" in k for k in b.custom_ids)
            for b in batches
        )
        assert set(handler.judge_models) == {"judge-model"}
    else:
        assert lanes == {None}
        assert set(handler.judge_models) == {"test-model"}
    status = run_cli("status", "--out", str(out), "--price-in", "1", "--price-out", "1")
    answered = sum(len(b.answered) for b in batches)
    assert f"batch API  {answered} requests answered at half price" in status.stdout


# -- identity ---------------------------------------------------------------------------


def _base_digest(language: str) -> str:
    """Hash the base templates as runs before the judge did (name, NUL, text, NUL each)."""
    digest = hashlib.sha256()
    directory = default_prompts_dir(language)
    for name in sorted(TEMPLATE_VARIABLES):
        text = (directory / name).read_text(encoding="utf-8")
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    return digest.hexdigest()


@pytest.mark.parametrize("language", ["en", "zh"])
def test_prompts_digest_is_the_same_with_the_judge_on_or_off(language: str) -> None:
    assert "judge.txt" not in TEMPLATE_VARIABLES
    off = load_prompts(language=language)
    on = load_prompts(language=language, judge=True)
    assert off.digest == on.digest == _base_digest(language)
    assert off.judge_digest is None and on.judge_digest is not None
    assert "judge.txt" not in off.templates


def test_identity_without_the_judge_is_unchanged_and_old_runs_resume(tmp_path: Path) -> None:
    golden = Path(__file__).parent / "golden" / "v0.1.0-run"
    stored = json.loads((golden / "config.json").read_text())
    assert stored["identity"]["prompts.sha256"] == _base_digest("en")
    with OpenAITestServer(SyntheticTeacher()) as server:
        out = tmp_path / "new"
        done = run_cli(*bootstrap_args(server, out, "--target", "5"))
        assert done.returncode == 0, done.stderr
        header = json.loads((out / "config.json").read_text())
        # No trace of the judge in a run without it: config.json is what it was before.
        assert "judge" not in header["config"]
        assert not [k for k in header["identity"] if k.startswith("judge")]
        assert header["identity"]["prompts.sha256"] == _base_digest("en")
        before = (out / "config.json").read_bytes()
        resumed = run_cli(*bootstrap_args(server, out, "--target", "10"))
        assert resumed.returncode == 0, resumed.stderr
        assert (out / "config.json").read_bytes() == before
        # Turning the judge on changes what the run produces: refused, naming the setting.
        judged = run_cli(*bootstrap_args(server, out, "--target", "15", "--judge"))
    assert judged.returncode == 1
    assert "judge.enabled: the run in" in judged.stderr


# -- the dry run ------------------------------------------------------------------------


def test_dry_run_counts_judge_requests(tmp_path: Path) -> None:
    def dry(*extra: str) -> str:
        done = run_cli(
            "bootstrap",
            *("--base-url", "http://127.0.0.1:9/v1", "--model", "gpt-4o-mini", "--target", "1000"),
            *("--out", str(tmp_path / "run"), "--dry-run", *extra),
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    plain, judged = dry(), dry("--judge", "--judge-model", "gpt-4.1", "--judge-api", "chat")
    assert "judge      off" in plain
    assert not re.search(r"\n  judge ", plain)
    row = re.search(r"\n  judge +([\d,]+) +([\d,]+) +([\d,]+) +([\d.]+)\n", judged)
    assert row is not None, judged
    assert int(row.group(1).replace(",", "")) == 1050  # one per task, plus retries
    assert "judge      gpt-4.1 (chat API, the teacher's endpoints)" in judged
    assert "2.0 / 8.0 USD per million" in judged  # the judge model's known price
    assert "judge: rate the task from 1 to 5" in judged and "\nScore:\n" in judged

    def total(text: str) -> float:
        found = re.search(r"\n  total +[\d,]+ +[\d,]+ +[\d,]+ +([\d.]+)", text)
        assert found is not None
        return float(found.group(1))

    assert total(judged) == pytest.approx(total(plain) + float(row.group(4)), abs=0.011)


def test_dry_run_of_a_judged_run_uses_its_observed_judge_rate(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with OpenAITestServer(SyntheticTeacher()) as server:
        done = run_cli(*bootstrap_args(server, out, "--target", "20", "--judge"))
        assert done.returncode == 0, done.stderr
        dry = run_cli(*bootstrap_args(server, out, "--target", "120", "--judge", "--dry-run"))
    assert dry.returncode == 0, dry.stderr
    assert "rates observed in this run" in dry.stdout
    usage: dict[str, Any] = _usage(out)
    accepted = json.loads((out / "state.json").read_text())["accepted"]
    expected = round((120 - accepted) * usage["judge"]["requests"] / accepted)
    assert re.search(rf"\n  judge +{expected:,} ", dry.stdout), dry.stdout


def test_room_probes_are_priced_at_their_own_backends_price() -> None:
    from selfinstruct.costs import price_usage
    from selfinstruct.store import StageUsage

    one_million = StageUsage(requests=1, prompt_tokens=1_000_000, completion_tokens=0)
    usage = {"probe": one_million, "judge-probe": one_million, "judge": one_million}
    table = price_usage(usage, {}, (1.0, 2.0), {"judge": (10.0, 20.0)})
    assert {name: s.usd for name, s in table.stages.items()} == {
        "judge": 10.0,
        "judge-probe": 10.0,  # the judge's own endpoint answered it
        "probe": 1.0,
    }
