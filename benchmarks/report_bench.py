"""Time the slow parts of `selfinstruct report` at the sizes of a full 52K-task run.

Run ``python benchmarks/report_bench.py [--quick]`` from the repository root. It builds
the synthetic instruction pool of rouge_bench.py and prints:

* the novelty replay (each instruction's highest ROUGE-L against everything admitted
  before it): CPU seconds of a full replay from 175 seeds to 10,000 tasks, and ms per
  instruction against a 52,000-entry index, with the full 52K replay that implies
  (the cost per query grows linearly with the index, so the replay is about half of
  52,000 x that figure);
* the verb/object parse: ms per instruction with spaCy (when installed) and with the
  heuristic fallback.

``--quick`` replays 2,000 tasks instead of 10,000 and samples fewer queries.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# Runs as a script from a checkout, before the package is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from evidence import add_save_option, saved_output  # noqa: E402
from rouge_bench import InstructionFactory  # noqa: E402

from selfinstruct.report import heuristic_verb_object, novelty_scores, verb_objects  # noqa: E402
from selfinstruct.similarity import NoveltyIndex  # noqa: E402


def main() -> int:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    add_save_option(parser)
    args = parser.parse_args()
    replay_n, sample_n = (2_000, 50) if args.quick else (10_000, 200)
    factory = InstructionFactory()
    seeds = [factory.fresh() for _ in range(175)]
    texts = [factory.fresh() for _ in range(52_000)]

    admitted = dict(enumerate(texts[:replay_n]))
    start = time.process_time()
    scores = novelty_scores(seeds, admitted, set(admitted), threshold=0.7)
    replay = time.process_time() - start
    print(f"novelty replay, 175 seeds -> {replay_n} tasks: {replay:.1f} CPU s "
          f"(mean best ROUGE-L {sum(scores.values()) / len(scores):.3f})")  # fmt: skip

    index = NoveltyIndex()
    index.add_many(seeds + texts[: 52_000 - sample_n])
    start = time.process_time()
    for text in texts[52_000 - sample_n :]:
        index.nearest(text)
    per_query = (time.process_time() - start) / sample_n
    print(f"nearest() against a {len(index)}-entry index: {per_query * 1000:.2f} ms per "
          f"instruction -> full 52K replay about {per_query * 52_000 / 2:.0f} CPU s")  # fmt: skip

    sample = texts[:2_000]
    start = time.perf_counter()
    for text in sample:
        heuristic_verb_object(text)
    per = (time.perf_counter() - start) / len(sample)
    print(f"heuristic verb/object: {per * 1e3:.3f} ms per instruction")
    start = time.perf_counter()
    _, name = verb_objects(sample, "auto")
    per = (time.perf_counter() - start) / len(sample)
    print(f"{name} verb/object (load included): {per * 1e3:.2f} ms per instruction "
          f"-> 52K instructions about {per * 52_000:.0f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    with saved_output("--save" in sys.argv, __file__):
        raise SystemExit(main())
