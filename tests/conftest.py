"""Shared fixtures: a loopback teacher server and a way to run the real CLI.

Under CI (the CI environment variable set, as `.ci/run` is run) a skipped test fails unless
it is marked `gpu`: CI installs every extra and Chromium, so any other skip means a broken
install that would otherwise pass unnoticed.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from selfinstruct.testing.keys import digest_of
from selfinstruct.testing.server import OpenAITestServer, RecordedRequest, Reply
from selfinstruct.testing.teacher import SyntheticTeacher

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def teacher() -> Iterator[OpenAITestServer]:
    """Serve the synthetic teacher on 127.0.0.1 for one test."""
    with OpenAITestServer(SyntheticTeacher()) as server:
        yield server


def bootstrap_args(
    server: OpenAITestServer, out: Path, *extra: str, quiet: bool = True
) -> list[str]:
    """Return the CLI arguments of a bootstrap of `out` against a loopback teacher."""
    return [
        "bootstrap",
        "--base-url",
        server.base_url,
        "--model",
        "test-model",
        "--out",
        str(out),
        *(["--quiet"] if quiet else []),
        *extra,
    ]


def cli_env(api_key: str | None = None) -> dict[str, str]:
    """Return the environment for a CLI subprocess, with or without an API key."""
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env["PYTHONUNBUFFERED"] = "1"
    if api_key is not None:
        env["OPENAI_API_KEY"] = api_key
    return env


def run_cli(
    *args: str, api_key: str | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `python -m selfinstruct ARGS` to completion and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "selfinstruct", *args],
        capture_output=True,
        text=True,
        env=cli_env(api_key),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


# -- CI: only gpu tests may skip ------------------------------------------------------------


def _in_ci() -> bool:
    """Say whether this is a CI run (CI set to anything but empty, 0 or false)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unexpected_skip(report: pytest.TestReport | pytest.CollectReport, why: str) -> None:
    """Turn a skip report into a failure that names the test and the skip's reason."""
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    report.outcome = "failed"
    report.longrepr = (
        f"{report.nodeid}: skipped under CI ({reason}); only tests marked gpu may skip in CI {why}"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI, fail a test that skipped without a gpu mark."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if (
        _in_ci()
        and report.skipped
        and not hasattr(report, "wasxfail")  # an expected failure is reported as a skip
        and item.get_closest_marker("gpu") is None
    ):
        _unexpected_skip(report, "(a missing extra or tool is a broken CI install)")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    """Under CI, fail a module that skipped as a whole (pytest.importorskip at the top)."""
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    if _in_ci() and report.skipped:
        _unexpected_skip(report, "(a module-level skip hides every test in it)")


# Machine tasks enter prompts only from round `lookahead` + 1 on (64 by default), and the
# loopback teacher's runs are a few rounds long: tests of determinism use a short window so
# that most of their prompts depend on the pool.
SHORT_WINDOW = "lookahead = 1\n"


def window_config(directory: Path, extra: str = "") -> Path:
    """Write a config file with a one-round window (and `extra` TOML); return its path."""
    path = directory / "window.toml"
    path.write_text(SHORT_WINDOW + extra)
    return path


def machine_example_prompts(requests: Sequence[RecordedRequest], out: Path) -> int:
    """Count the instruction prompts of a run that show one of its machine tasks.

    Tests of determinism assert this is not zero, so that they cannot silently stop
    covering prompts that depend on the pool.
    """
    machine = [
        json.loads(line)["instruction"]
        for line in (out / "pool.jsonl").read_text().splitlines()
        if line.strip()
    ]
    stages = {}
    for line in (out / "responses.jsonl").read_bytes().split(b"\n")[:-1]:
        key = json.loads(line)["key"]
        stages[key.rsplit("/", 1)[1]] = key.split("/")[-2]
    shown = 0
    for request in requests:
        if stages.get(digest_of(request)) == "instructions" and any(
            f"{m}\n" in request.prompt for m in machine
        ):
            shown += 1
    return shown


class Jittery:
    """Answer like the synthetic teacher, after a delay that varies from request to request.

    The delay depends on the prompt alone (up to `most` seconds), so answers come back in
    an order unlike the order they were asked in, the same way in every run.
    """

    def __init__(self, most: float) -> None:
        self._teacher = SyntheticTeacher()
        self._most = most

    def __call__(self, request: RecordedRequest) -> Reply:
        reply = self._teacher(request)
        spread = hashlib.sha256(request.prompt.encode()).digest()[0] / 255
        return replace(reply, delay=self._most * spread)


class Tripwire:
    """Wrap a teacher: set `fired` once `after` more of the requests `counts` picks arrived."""

    def __init__(
        self,
        teacher: Callable[[RecordedRequest], Reply],
        counts: Callable[[RecordedRequest], bool] = lambda request: True,
    ) -> None:
        self.teacher = teacher
        self.counts = counts
        self.fired = threading.Event()
        self._left = -1
        self._lock = threading.Lock()

    def arm(self, after: int) -> None:
        with self._lock:
            self._left = after
            self.fired.clear()

    def __call__(self, request: RecordedRequest) -> Reply:
        if self.counts(request):
            with self._lock:
                if self._left > 0:
                    self._left -= 1
                    if self._left == 0:
                        self.fired.set()
        return self.teacher(request)
