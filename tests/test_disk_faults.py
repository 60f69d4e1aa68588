"""Disk faults: writes fail mid-run; the run stops with one clear line and resumes later.

The file-size limit (RLIMIT_FSIZE, set in the child: writes then fail with EFBIG, since
Python ignores SIGXFSZ) works anywhere. A really full filesystem (ENOSPC) needs a small
tmpfs, which needs mount rights: that test is skipped where mounting is not allowed.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import cli_env

from selfinstruct.testing.server import OpenAITestServer
from selfinstruct.testing.teacher import SyntheticTeacher

TARGET = 150


def _args(server: OpenAITestServer, out: Path, target: int) -> list[str]:
    return [
        sys.executable, "-m", "selfinstruct", "bootstrap", "--mode", "alpaca",
        "--base-url", server.base_url, "--model", "test-model", "--out", str(out),
        "--target", str(target), "--quiet",
    ]  # fmt: skip


def _run(
    server: OpenAITestServer, out: Path, target: int, file_limit: int | None = None
) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    return subprocess.run(
        _args(server, out, target),
        env=cli_env(),
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    with OpenAITestServer(SyntheticTeacher()) as server:
        done = _run(server, out, TARGET)
    assert done.returncode == 0, done.stderr
    return out


def _assert_same(out: Path, reference: Path) -> None:
    for name in ("pool.jsonl", "rejected.jsonl"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def _assert_clean_stop(done: subprocess.CompletedProcess[str], out: Path, reason: str) -> None:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"error: {out}/"), done.stderr  # names the file
    assert reason in done.stderr
    assert "free space and re-run the same command to resume" in done.stderr
    # A failed atomic write (state.json, config.json) leaves no temporary behind.
    assert sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp")) == []


@pytest.mark.parametrize("headroom", [2_000, 10_000, 20_000])
def test_file_size_limit_mid_run(reference: Path, tmp_path: Path, headroom: int) -> None:
    out = tmp_path / "run"
    with OpenAITestServer(SyntheticTeacher()) as server:
        assert _run(server, out, 20).returncode == 0
        # The pool must grow by tens of KB to reach TARGET; the response log may not grow at
        # all (the first run may already hold the answers of the rounds it had in flight),
        # so the limit is set from the pool: some write always fails mid-run.
        pool = (out / "pool.jsonl").stat().st_size
        done = _run(server, out, TARGET, file_limit=pool + headroom)
        _assert_clean_stop(done, out, "File too large")
        resumed = _run(server, out, TARGET)  # the limit is gone: space is back
    assert resumed.returncode == 0, resumed.stderr
    _assert_same(out, reference)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """Mount a 64 KiB tmpfs (the run needs about 140 KiB), or skip where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
        timeout=60,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, timeout=60)


def test_disk_full_mid_run(reference: Path, small_disk: Path) -> None:
    out = small_disk / "run"
    with OpenAITestServer(SyntheticTeacher()) as server:
        done = _run(server, out, TARGET)
        _assert_clean_stop(done, out, "No space left on device")
        grown = subprocess.run(
            ["mount", "-o", "remount,size=20m", str(small_disk)],
            capture_output=True,
            check=False,
            timeout=60,
        )
        assert grown.returncode == 0, grown.stderr
        resumed = _run(server, out, TARGET)
    assert resumed.returncode == 0, resumed.stderr
    _assert_same(out, reference)
