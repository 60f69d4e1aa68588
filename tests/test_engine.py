"""The pipeline in-process: determinism whatever the concurrency or arrival order."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import Jittery, machine_example_prompts

from selfinstruct.config import RunConfig
from selfinstruct.runner import run_bootstrap
from selfinstruct.testing.server import OpenAITestServer

# Per mode: a target and a window such that most rounds show machine tasks in their
# prompts (from round lookahead + 1 on, not 65), with lookahead + 1 rounds of 4 requests in
# flight (alpaca rounds are one request a prompt, and accept ~24 tasks).
RUNS = {"self-instruct": (60, 1), "alpaca": (200, 2)}


def _run(server: OpenAITestServer, out: Path, mode: str, concurrency: int) -> None:
    target, lookahead = RUNS[mode]
    config = RunConfig.model_validate(
        {
            "out": out,
            "mode": mode,
            "target": target,
            "lookahead": lookahead,
            "prompts_per_round": 4,  # fixed here, whatever the mode's default
            "teacher": {
                "base_urls": [server.base_url],
                "model": "test-model",
                "concurrency": concurrency,
            },
        }
    )
    # The library entry point the CLI calls, in process: the same backend, the same checks.
    asyncio.run(run_bootstrap(config, {}))


@pytest.mark.parametrize("mode", ["self-instruct", "alpaca"])
def test_same_pool_whatever_the_concurrency(tmp_path: Path, mode: str) -> None:
    logs = {}
    for concurrency in (1, 32):
        with OpenAITestServer(Jittery(0.03)) as server:
            out = tmp_path / f"c{concurrency}"
            _run(server, out, mode, concurrency)
            peak = server.stats().peak_in_flight
            assert machine_example_prompts(server.requests, out) > 0
        assert peak <= concurrency
        if concurrency == 32:
            # More than one round's requests at once, so answers of different rounds really
            # arrived out of order (not more: how many overlap depends on the machine's load).
            assert peak > 4
        logs[concurrency] = [(out / n).read_bytes() for n in ("pool.jsonl", "rejected.jsonl")]
    assert logs[1] == logs[32]
    assert logs[1][0].count(b"\n") >= RUNS[mode][0]
