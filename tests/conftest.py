"""Shared fixtures: a loopback teacher server and a way to run the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfinstruct.testing.server import OpenAITestServer
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
