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

``--run DIR`` times a whole report of a real run directory instead, part by part: reading
the run, the comparable measures (with and without the embedding model), their figures,
``build_report`` end to end (heuristic parser; the spaCy parse is timed above) and a
comparison of the run with itself (``report --compare``). A 52,000-task run of the
synthetic teacher takes a few minutes to grow:

    python benchmarks/throughput.py --instant --target 52000 --keep /tmp/run52k
    python benchmarks/report_bench.py --run /tmp/run52k --save
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

# Runs as a script from a checkout, before the package is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from evidence import add_save_option, saved_output  # noqa: E402
from rouge_bench import InstructionFactory  # noqa: E402

from selfinstruct.report import heuristic_verb_object, novelty_scores, verb_objects  # noqa: E402
from selfinstruct.similarity import NoveltyIndex  # noqa: E402

T = TypeVar("T")


def main() -> int:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--run", type=Path, default=None, help="time a report of this run")
    add_save_option(parser)
    args = parser.parse_args()
    if args.run is not None:
        return time_run(args.run)
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


def time_run(run: Path) -> int:
    """Print the CPU seconds of each part of a report of `run`, and its wall time."""
    import tempfile

    from selfinstruct.report import build_report, load_run
    from selfinstruct.report.compare import build_comparison
    from selfinstruct.report.measures import acceptance_bin, acceptance_curve
    from selfinstruct.report.quality import (
        measure_run,
        plot_acceptance,
        plot_length_distributions,
        sample_sizes,
    )

    def timed(label: str, fn: Callable[[], T]) -> T:
        start = time.process_time()
        value = fn()
        print(f"{label}: {time.process_time() - start:.1f} CPU s")
        return value

    data = timed("read the run", lambda: load_run(run))
    sizes = sample_sizes(len(data.seeds))
    print(f"{len(data.pool):,} tasks, {len(data.rejections):,} rejections, samples {sizes}")
    plain = timed("measures, no embeddings", lambda: measure_run(data, sizes, semantic=False))
    with_model = timed(
        f"measures, {len(data.seeds) + max(sizes):,} instructions embedded",
        lambda: measure_run(data, sizes),
    )
    timed("length figure", lambda: plot_length_distributions(plain.lengths))
    block = acceptance_bin(plain.acceptance.total)
    curve = acceptance_curve(plain.acceptance, block)
    timed("acceptance figure", lambda: plot_acceptance({"run": curve}, block))
    for column in (with_model.seeds, *with_model.samples, with_model.everything):
        m = column.measures
        print(f"  {column.head}: distinct-1 {m.distinct_1:.3f}, distinct-2 {m.distinct_2:.3f}, "
              f"compression {m.compression:.2f}, cosine "
              f"{'-' if column.cosine is None else f'{column.cosine:.3f}'}")  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        wall, cpu = time.perf_counter(), time.process_time()
        build_report(run, Path(out), parser="heuristic")
        print(f"whole report (heuristic parser): {time.perf_counter() - wall:.0f} s wall, "
              f"{time.process_time() - cpu:.0f} CPU s")  # fmt: skip
        wall, cpu = time.perf_counter(), time.process_time()
        build_comparison(run, run, Path(out) / "compare")
        print(f"report --compare of the run with itself: {time.perf_counter() - wall:.0f} s "
              f"wall, {time.process_time() - cpu:.0f} CPU s")  # fmt: skip
    return 0


if __name__ == "__main__":
    with saved_output("--save" in sys.argv, __file__):
        raise SystemExit(main())
