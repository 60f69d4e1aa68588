"""Spend limits as a user meets them: a real CLI run against the loopback teacher stops at
--max-tokens / --max-cost, keeps a consistent run directory, and resumes without paying twice.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import bootstrap_args, run_cli

from selfinstruct.testing.keys import digest_of
from selfinstruct.testing.server import OpenAITestServer
from selfinstruct.testing.teacher import SyntheticTeacher

EXIT_BUDGET_SPENT = 3


def _args(server: OpenAITestServer, out: Path, *extra: str) -> list[str]:
    # Small rounds, so a budget stop falls between commits.
    return bootstrap_args(server, out, "--concurrency", "4", "--prompts-per-round", "1", *extra)


def _logged(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "responses.jsonl").read_text().splitlines()]


def _tokens(entries: list[dict[str, object]]) -> int:
    return sum(sum(e["usage"]) for e in entries)  # type: ignore[arg-type]


def _check_consistent(out: Path) -> dict[str, object]:
    """The commit record matches the logs, as after any clean stop."""
    state = json.loads((out / "state.json").read_text())
    pool = (out / "pool.jsonl").read_bytes()
    rejected = (out / "rejected.jsonl").read_bytes()
    assert state["pool_bytes"] == len(pool) and state["rejected_bytes"] == len(rejected)
    tasks = [json.loads(line) for line in pool.splitlines()]
    assert state["accepted"] == len(tasks)
    assert [t["id"] for t in tasks] == [f"task_{i:06d}" for i in range(1, len(tasks) + 1)]
    assert sum(state["rejections"].values()) == len(rejected.splitlines())
    # Usage in the record counts every logged (paid) response, committed or not.
    logged = _logged(out)
    assert sum(u["requests"] for u in state["usage"].values()) == len(logged)
    used = sum(u["prompt_tokens"] + u["completion_tokens"] for u in state["usage"].values())
    assert used == _tokens(logged)
    return state  # type: ignore[no-any-return]


def test_max_tokens_stops_cleanly_and_resumes_without_paying_twice(tmp_path: Path) -> None:
    teacher = SyntheticTeacher()
    target = 60
    with OpenAITestServer(teacher) as server:
        reference = tmp_path / "reference"
        assert run_cli(*_args(server, reference, "--target", str(target))).returncode == 0
    full_tokens = _tokens(_logged(reference))

    out = tmp_path / "run"
    with OpenAITestServer(teacher) as server:
        budget = full_tokens // 2
        done = run_cli(*_args(server, out, "--target", str(target), "--max-tokens", str(budget)))
        assert done.returncode == EXIT_BUDGET_SPENT, done.stderr
        assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
        assert "budget spent" in done.stderr and "--max-tokens" in done.stderr
        assert f"/{target} tasks" in done.stdout  # the summary line still comes
        state = _check_consistent(out)
        assert 0 < state["accepted"] < target  # type: ignore[operator]
        logged = _logged(out)
        # Every request the teacher answered is in the log: none was paid and thrown away.
        assert len(server.requests) == len(logged)
        # Requests stop once the budget is reached; only those already in flight (at most
        # --concurrency) come after it.
        spent = _tokens(logged)
        assert spent >= budget
        assert _tokens(logged[:-4]) < budget

        # The same budget again: nothing more is sent, and the run says so.
        before = len(server.requests)
        again = run_cli(*_args(server, out, "--target", str(target), "--max-tokens", str(budget)))
        assert again.returncode == EXIT_BUDGET_SPENT, again.stderr
        assert len(server.requests) == before

        # A larger budget resumes and reaches the target, asking nothing already answered.
        paid = {str(e["key"]).rsplit("/", 1)[1] for e in _logged(out)}
        more = run_cli(
            *_args(server, out, "--target", str(target), "--max-tokens", str(full_tokens * 2))
        )
        assert more.returncode == 0, more.stderr
        _check_consistent(out)
        assert not [r for r in server.requests[before:] if digest_of(r) in paid]
        keys = [e["key"] for e in _logged(out)]
        assert len(keys) == len(set(keys))
    # Stopping and resuming changes nothing in what the run produces.
    for name in ("pool.jsonl", "rejected.jsonl"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    status = run_cli("status", "--out", str(out))
    assert status.returncode == 0 and f"{target}" in status.stdout


def test_max_cost_uses_given_prices(teacher: OpenAITestServer, tmp_path: Path) -> None:
    out = tmp_path / "run"
    # 1,000 USD per million tokens: the synthetic teacher's few thousand tokens cost dollars.
    prices = ("--price-in", "1000", "--price-out", "1000")
    done = run_cli(*_args(teacher, out, "--target", "200", "--max-cost", "2", *prices))
    assert done.returncode == EXIT_BUDGET_SPENT, done.stderr
    assert "budget spent" in done.stderr and "--max-cost 2.00" in done.stderr
    state = _check_consistent(out)
    usage: dict[str, dict[str, int]] = state["usage"]  # type: ignore[assignment]
    used = sum(u["prompt_tokens"] + u["completion_tokens"] for u in usage.values())
    assert used * 1000 / 1e6 >= 2
    # status prices the run the same way
    status = run_cli("status", "--out", str(out), *prices)
    assert status.returncode == 0 and "cost" in status.stdout


def test_max_cost_without_a_price_is_refused_before_anything(
    teacher: OpenAITestServer, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    done = run_cli(*_args(teacher, out, "--max-cost", "5"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1
    assert "--price-in" in done.stderr and "test-model" in done.stderr
    assert not out.exists() and teacher.requests == []


@pytest.mark.parametrize("flag", ["--max-tokens", "--max-cost"])
def test_budget_is_operational(teacher: OpenAITestServer, tmp_path: Path, flag: str) -> None:
    out = tmp_path / "run"
    assert run_cli(*_args(teacher, out, "--target", "10")).returncode == 0
    # A budget may be added or changed on an existing run; it is no part of its identity.
    prices = ("--price-in", "1", "--price-out", "1")
    done = run_cli(*_args(teacher, out, "--target", "20", flag, "1000000", *prices))
    assert done.returncode == 0, done.stderr


def test_status_prices_a_run_at_the_prices_it_was_started_with(
    teacher: OpenAITestServer, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    prices = ("--price-in", "1000", "--price-out", "3000")
    done = run_cli(*_args(teacher, out, "--target", "10", *prices))
    assert done.returncode == 0, done.stderr
    state = json.loads((out / "state.json").read_text())
    prompt = sum(u["prompt_tokens"] for u in state["usage"].values())
    completion = sum(u["completion_tokens"] for u in state["usage"].values())
    expected = (prompt * 1000 + completion * 3000) / 1e6
    # No flags: test-model has no known price, but the run was started with prices.
    status = run_cli("status", "--out", str(out))
    assert status.returncode == 0, status.stderr
    assert _cost(status.stdout, "1000.0/3000.0") == pytest.approx(expected, abs=0.006)
    # Flags still win, part by part.
    status = run_cli("status", "--out", str(out), "--price-out", "0")
    assert _cost(status.stdout, "1000.0/0.0") == pytest.approx(prompt * 1000 / 1e6, abs=0.006)


def _cost(stdout: str, prices: str) -> float:
    """Return the USD that `status` printed at `prices` (a sum of per-stage costs, rounded)."""
    line = rf"^cost +([0-9.,]+) USD at {re.escape(prices)} USD per million"
    found = re.search(line, stdout, re.MULTILINE)
    assert found, stdout
    return float(found.group(1).replace(",", ""))
