"""Measure the default request rates that `bootstrap --dry-run` uses before any run exists.

Run ``python benchmarks/estimate_defaults.py [--target N]`` from the repository root. For
each mode it grows a fresh run against the bundled synthetic teacher on a loopback server
(default settings, --target 1000) and prints the requests per accepted task by stage, the
figures to copy into selfinstruct/plan.py's DEFAULT_REQUESTS_PER_TASK.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evidence import add_save_option, saved_output  # noqa: E402

from selfinstruct.testing.server import OpenAITestServer  # noqa: E402
from selfinstruct.testing.teacher import SyntheticTeacher  # noqa: E402


def main() -> None:
    """Run each mode to the target and print requests per task by stage."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=int, default=1000)
    add_save_option(parser)
    args = parser.parse_args()
    for mode in ("self-instruct", "alpaca"):
        with tempfile.TemporaryDirectory() as tmp, OpenAITestServer(SyntheticTeacher()) as server:
            out = Path(tmp) / "run"
            start = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "selfinstruct", "bootstrap", "--mode", mode,
                 "--base-url", server.base_url, "--model", "synthetic", "--out", str(out),
                 "--target", str(args.target), "--quiet"],
                capture_output=True, text=True, check=False, cwd=ROOT,
            )  # fmt: skip
            if done.returncode != 0:
                raise SystemExit(done.stderr)
            state = json.loads((out / "state.json").read_text())
            accepted = state["accepted"]
            rates = {
                stage: round(usage["requests"] / accepted, 3)
                for stage, usage in sorted(state["usage"].items())
            }
            print(
                f"{mode}: {accepted} tasks, {sum(state['rejections'].values())} rejections, "
                f"{time.monotonic() - start:.0f}s; requests per task: {rates}"
            )


if __name__ == "__main__":
    with saved_output("--save" in sys.argv, __file__):
        main()
