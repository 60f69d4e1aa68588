"""Benchmark the ROUGE-L novelty index against rouge-score, the reference scorer.

Run ``python benchmarks/rouge_bench.py [--quick]`` from the repository root.  It
builds a deterministic synthetic pool of 52,000 English instructions (the real
seed file is not needed), then reports:

* agreement with rouge-score: pairwise scores and reject decisions on tens of
  thousands of candidate/pool pairs, and the index's answers against a full
  rouge-score scan;
* milliseconds per candidate at pool sizes 1K / 10K / 52K for rouge-score (a full
  scan over a pre-tokenized pool, as Stanford Alpaca's generate_instruction.py
  does, on one core) and for the index's best_above (the call the engine and dedup
  make), with the speed-up measured in this run;
* CPU seconds of a sequential replay of 52,000 candidates against a pool that
  grows from 175 seeds, as the generation loop does;
* bytes of index per pool entry (tracemalloc) and bulk build time;
* wall time of dedup_file on a 52,000-record Alpaca file, and the cost of one LCS
  in rapidfuzz versus a bit-parallel LCS on Python ints (the road not taken).

``--quick`` shrinks the samples (not the pool sizes) for a fast smoke run. ``--save``
writes the output to benchmarks/results/ (see benchmarks/evidence.py).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

# Runs as a script from a checkout, before the package is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evidence import add_save_option, saved_output  # noqa: E402
from rouge_score import rouge_scorer  # noqa: E402

from selfinstruct.dedup import dedup_file  # noqa: E402
from selfinstruct.similarity import ROUGE_THRESHOLD, NoveltyIndex, rouge_l, tokenize  # noqa: E402

POOL_SIZES = (1_000, 10_000, 52_000)
SEED_COUNT = 175  # Self-Instruct's human-written seed tasks
REPLAY_COUNT = 52_000  # the size of Stanford Alpaca's released dataset
NEAR_DUPLICATE_SHARE = 0.22

_VERBS = (
    "write describe explain generate create list summarize translate classify identify "
    "compare suggest rewrite edit find give provide design outline analyze calculate "
    "convert name predict propose develop compose evaluate determine construct recommend "
    "brainstorm draft rank sort categorize paraphrase simplify expand critique"
).split()
_ADJECTIVES = (
    "short long formal casual funny serious detailed brief creative simple complex "
    "persuasive informative friendly professional poetic technical historical modern "
    "healthy cheap sustainable popular unusual common famous ancient digital local "
    "global personal positive negative neutral quick careful honest polite catchy "
    "memorable original effective practical realistic imaginary scientific musical "
    "colorful quiet busy rural urban tiny huge"
).split()
_NOUNS = (
    "poem story essay email letter tweet headline slogan summary list paragraph sentence "
    "recipe plan guide review speech dialogue joke riddle question answer title outline "
    "report article blog post advertisement description definition explanation example "
    "argument proposal schedule budget menu itinerary checklist strategy algorithm "
    "function program query table chart survey quiz lesson lecture song lyric haiku "
    "limerick sonnet metaphor analogy comparison critique memo invitation apology "
    "complaint resume cover note message caption product company city country river "
    "mountain ocean forest animal plant bird insect planet star galaxy computer phone "
    "robot car bicycle train airplane book movie painting museum school teacher student "
    "doctor patient customer manager friend family child parent garden kitchen house "
    "market bank hospital library restaurant hotel airport island desert village"
).split()
_SYLLABLES = (
    "ka lo mi ra ve tu shi no ban del for gri hal jo ken lum mor nip ost pra qui rel "
    "sol tam urb vin wex yor zel ath bri cor dun els fim gor hun ith jas kor lyn"
).split()


_OPENERS = (
    "Please",
    "In a few words,",
    "For a beginner,",
    "Using simple language,",
    "Based on the text below,",
    "As a teacher,",
    "Briefly,",
    "In your own words,",
    "For a job interview,",
    "Step by step,",
    "Imagine you are a tour guide and",
)
_TAILS = (
    "in {n} sentences",
    "for a {adj} {noun}",
    "using {n} bullet points",
    "without using the word {word}",
    "in the style of {name}",
    "that mentions {topic}",
    "and explain your reasoning",
    "in less than {n} words",
    "for {topic}",
    "with an example from {topic}",
    "suitable for {name}",
)
# "(a|b)" picks one alternative, "{slot}" draws a word or phrase.
_CORES = (
    "{verb} a {adj} {noun} (about|on|describing|inspired by) {topic}",
    "{verb} {n} (new|fresh|{adj}|original) (ideas|suggestions|tips) for {topic}",
    "(what are|tell me|explain|list) the (main|key|biggest) differences between {topic} and "
    "{topic}?",
    "(explain|describe|show|tell me) how {topic} (affects|changes|influences) {topic}",
    "(given|using|read) the following {noun} (on|about) {topic}, {verb} it",
    "classify (the following|this|each) {noun} (from|about) {topic} as {adj} or {adj}",
    "(rewrite|edit|revise) this {noun} about {topic} so (that it sounds|it is) (more|less) {adj}",
    "why (is|are) {topic} (important|useful|dangerous|{adj}) for {topic}?",
    "suggest (ways|strategies|steps) {name} (could|should|might) (use|take) to improve {topic}",
    "describe the {noun} of {topic} to a {adj} {noun}",
    "(create|make|design|build) a {noun} that (helps|teaches|lets) {name} (with|about) {topic}",
    "(list|name|give me|write down) {n} (facts|things|details) about {topic}",
    "translate (the|this|my) {noun} about {topic} into {word}",
    "how (can|could|should) {topic} be used to {verb} {topic}?",
    "tell me a {adj} {noun} (involving|about|featuring) {topic} and {topic}",
    "{verb} the (pros and cons|advantages and disadvantages|benefits and risks) of {topic}",
    "(identify|find|underline) the {adj} {noun} in this (text|passage|story) about {topic}",
    "(design|plan|draft) a {n}-step {noun} for {topic}",
    "find the {noun} that {name} (mentions|describes|forgot) in {topic}",
    "{verb} {topic}",
    "who (was|is) {name} and what (did|does) (he|she|they) do for {topic}?",
    "{verb} why {topic} (is|seems|became) {adj}",
    "{verb} a {noun} comparing {topic}, {topic} and {topic}",
    "(generate|write|tell) a {noun} where {name} (learns|finds out|hears) about {topic}",
    "give {n} (reasons|arguments|examples) (why|showing) {topic} (needs|depends on) {topic}",
    "is {topic} {adj}? (answer|reply|respond) (yes or no|with true or false)",
)
_PREPOSITIONS = ("of", "for", "in", "about", "with", "on", "from", "and")


def _pseudo_words(rng: random.Random, count: int) -> list[str]:
    """Invent a long tail of distinct words so the vocabulary resembles real text."""
    words: set[str] = set()
    while len(words) < count:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))))
    out = sorted(words)
    rng.shuffle(out)  # frequency rank independent of spelling
    return out


class InstructionFactory:
    """Generate synthetic instructions and near-duplicates from one seeded RNG."""

    def __init__(self, seed: int = 52) -> None:
        """Create the factory with its vocabulary, Zipf-distributed like real text."""
        self.rng = random.Random(seed)
        self.tail = _pseudo_words(self.rng, 30_000)
        # Zipf-Mandelbrot law (exponent 1, offset 30): rank r has weight 1/(r + 30),
        # so no content word dominates the way function words do.
        self.tail_weights = list(
            itertools.accumulate(1 / (r + 30) for r in range(1, len(self.tail) + 1))
        )
        self.names = [w.capitalize() for w in self.tail[-3_000:]]

    def verb(self) -> str:
        """Pick an imperative verb."""
        return self.rng.choice(_VERBS)

    def adj(self) -> str:
        """Pick an adjective."""
        return self.rng.choice(_ADJECTIVES)

    def noun(self) -> str:
        """Pick a common noun."""
        return self.rng.choice(_NOUNS)

    def num(self) -> str:
        """Pick a small count."""
        return str(self.rng.randint(2, 12))

    def word(self) -> str:
        """Pick a word of the long tail, Zipf-distributed."""
        return self.rng.choices(self.tail, cum_weights=self.tail_weights)[0]

    def name(self) -> str:
        """Pick a person's name."""
        return self.rng.choice(self.names)

    def topic(self) -> str:
        """Build a topic phrase of 1-6 words mixing common and rare words."""
        rng = self.rng
        words = [self.word() if rng.random() < 0.7 else self.noun()]
        if rng.random() < 0.5:
            words.insert(0, self.adj())
        if rng.random() < 0.5:
            words += [rng.choice(_PREPOSITIONS), self.word()]
        if rng.random() < 0.3:
            words.insert(0, "the")
        return " ".join(words)

    def fill(self, pattern: str) -> str:
        """Fill every slot of a pattern independently."""
        fillers = {
            "verb": self.verb,
            "adj": self.adj,
            "noun": self.noun,
            "n": self.num,
            "word": self.word,
            "name": self.name,
            "topic": self.topic,
        }
        text = re.sub(r"\(([^()]*)\)", lambda m: self.rng.choice(m.group(1).split("|")), pattern)
        return re.sub(r"\{(\w+)\}", lambda m: fillers[m.group(1)](), text)

    def fresh(self) -> str:
        """Generate an instruction: optional opener, a core pattern, optional tails."""
        rng = self.rng
        text = self.fill(rng.choice(_CORES))
        question = text.endswith("?")
        text = text.rstrip("?")
        if rng.random() < 0.3:
            text = f"{rng.choice(_OPENERS)} {text}"
        for _ in range(rng.choice((0, 1, 1, 2))):
            text += " " + self.fill(rng.choice(_TAILS))
        return text[0].upper() + text[1:] + ("?" if question else ".")

    def near_duplicate(self, source: str) -> str:
        """Perturb a source instruction by a few word edits, case or punctuation."""
        words = source.split()
        for _ in range(self.rng.choice((1, 1, 2, 2, 3, 4))):
            op = self.rng.random()
            pos = self.rng.randrange(len(words))
            if op < 0.35:
                words[pos] = self.rng.choice((self.adj(), self.noun(), self.word()))
            elif op < 0.6:
                words.insert(pos, self.rng.choice(("really", "very", "the", "new", self.adj())))
            elif op < 0.8 and len(words) > 4:
                del words[pos]
            elif pos + 1 < len(words):
                words[pos], words[pos + 1] = words[pos + 1], words[pos]
        text = " ".join(words)
        if self.rng.random() < 0.3:
            text = text.lower().rstrip(".?") + self.rng.choice(("", ".", "!", " please."))
        return text

    def stream(self, count: int, history: list[str]) -> list[str]:
        """Generate instructions, a share of them near-duplicates of earlier ones."""
        out: list[str] = []
        for _ in range(count):
            if history and self.rng.random() < NEAR_DUPLICATE_SHARE:
                text = self.near_duplicate(self.rng.choice(history))
            else:
                text = self.fresh()
            out.append(text)
            history.append(text)
        return out


def build_data() -> tuple[list[str], list[str], list[str]]:
    """Return (seeds, pool of 52K distinct-ish instructions, candidate stream)."""
    factory = InstructionFactory()
    seeds = [factory.fresh() for _ in range(SEED_COUNT)]
    pool = [factory.fresh() for _ in range(max(POOL_SIZES))]
    history = list(seeds)
    candidates = factory.stream(REPLAY_COUNT, history)
    return seeds, pool, candidates


def reference_full_scan(
    scorer: rouge_scorer.RougeScorer,
    candidate: str,
    pool_tokens: Sequence[list[str]],
) -> list[float]:
    """Score a candidate against every pool entry the way Alpaca does (one process)."""
    # stanford_alpaca/generate_instruction.py: partial(rouge_scorer._score_lcs,
    # new_instruction_tokens) mapped over the pre-tokenized pool.
    tokens = scorer._tokenizer.tokenize(candidate)
    return [rouge_scorer._score_lcs(tokens, t).fmeasure for t in pool_tokens]


def check_pairs(
    scorer: rouge_scorer.RougeScorer, pairs: Sequence[tuple[str, str]]
) -> tuple[int, int, int]:
    """Compare rouge_l with rouge-score on pairs; return (pairs, score diffs, decision diffs)."""
    score_diffs = decision_diffs = 0
    for cand, entry in pairs:
        ref = scorer.score(cand, entry)["rougeL"].fmeasure
        ours = rouge_l(cand, entry)
        score_diffs += ref != ours
        decision_diffs += (ref > ROUGE_THRESHOLD) != (ours > ROUGE_THRESHOLD)
    return len(pairs), score_diffs, decision_diffs


def lcs_bit_parallel(a: Sequence[int], b: Sequence[int]) -> int:
    """Return the LCS length with Hyyrö's bit-vector algorithm on Python ints."""
    # Allison-Dix / Hyyro (2004) recurrence: one big-int step per token of b.
    masks: dict[int, int] = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | 1 << i
    full = (1 << len(a)) - 1
    v = full
    for token in b:
        u = v & masks.get(token, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - bin(v).count("1")


def time_lcs_kernels(pool: Sequence[str], count: int) -> tuple[float, float]:
    """Return microseconds per LCS for rapidfuzz on id strings and for lcs_bit_parallel."""
    from rapidfuzz.distance import LCSseq

    vocab: dict[str, int] = {}
    ids = [[vocab.setdefault(t, len(vocab) + 1) for t in tokenize(text)] for text in pool]
    strs = ["".join(map(chr, x)) for x in ids]
    rng = random.Random(3)
    pairs = [(rng.randrange(len(ids)), rng.randrange(len(ids))) for _ in range(count)]
    t0 = time.perf_counter()
    for i, j in pairs:
        LCSseq.similarity(strs[i], strs[j])
    rapid = (time.perf_counter() - t0) / count * 1e6
    t0 = time.perf_counter()
    for i, j in pairs:
        lcs_bit_parallel(ids[i], ids[j])
    ours = (time.perf_counter() - t0) / count * 1e6
    assert all(
        LCSseq.similarity(strs[i], strs[j]) == lcs_bit_parallel(ids[i], ids[j])
        for i, j in pairs[:2000]
    )
    return rapid, ours


def time_dedup(pool: Sequence[str], candidates: Sequence[str]) -> tuple[float, int, int]:
    """Deduplicate a 52,000-record Alpaca file; return (wall seconds, kept, rejected)."""
    records = [
        {"instruction": text, "input": "", "output": f"answer {i}"}
        for i, text in enumerate(candidates)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "alpaca_data.json"
        source.write_text(json.dumps(records, indent=4), encoding="utf-8")
        summary = dedup_file(source, Path(tmp) / "kept.json")
    return summary.seconds, summary.kept, summary.rejected


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller samples, same pool sizes")
    add_save_option(parser)
    args = parser.parse_args(argv)
    quick: bool = args.quick
    rng = random.Random(7)
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    mismatches = 0

    t0 = time.perf_counter()
    seeds, pool, candidates = build_data()
    print(
        f"data: {len(seeds)} seeds, {len(pool)} pool, {len(candidates)} candidates "
        f"({time.perf_counter() - t0:.1f} s to generate)"
    )

    # -- agreement, pairwise -------------------------------------------------------
    pairs: list[tuple[str, str]] = []
    history = seeds + candidates
    factory = InstructionFactory(seed=99)
    for i in range(6_000 if quick else 24_000):
        if i % 3 == 0:  # near-duplicates straddle the threshold
            source = rng.choice(history)
            pairs.append((factory.near_duplicate(source), source))
        else:
            pairs.append((rng.choice(candidates), rng.choice(pool)))
    n_pairs, score_diffs, decision_diffs = check_pairs(scorer, pairs)
    mismatches += score_diffs + decision_diffs
    above = sum(rouge_l(a, b) > ROUGE_THRESHOLD for a, b in pairs)
    print(
        f"pairwise vs rouge-score: {n_pairs} pairs ({above} above {ROUGE_THRESHOLD}): "
        f"{score_diffs} score differences, {decision_diffs} decision differences"
    )

    # -- speed and agreement of whole-pool answers -----------------------------------
    ref_samples = {1_000: 20, 10_000: 5, 52_000: 3} if quick else {1_000: 60, 10_000: 10, 52_000: 5}
    index_samples = 1_000 if quick else 5_000
    whole_pairs = answer_diffs = 0
    print(
        "ms per candidate, one core (rouge-score: full scan of a pre-tokenized pool, "
        "as Alpaca does; index: best_above, as the engine calls it):"
    )
    print(f"{'pool':>7} {'rouge-score':>12} {'index':>9} {'speed-up':>9}")
    for size in POOL_SIZES:
        entries = pool[:size]
        pool_tokens = [scorer._tokenizer.tokenize(t) for t in entries]
        index = NoveltyIndex()
        index.add_many(entries)
        sample = rng.sample(candidates, ref_samples[size])
        t0 = time.process_time()
        ref_scores = [reference_full_scan(scorer, c, pool_tokens) for c in sample]
        ref_ms = (time.process_time() - t0) * 1e3 / len(sample)
        for cand, scores in zip(sample, ref_scores, strict=True):
            whole_pairs += len(scores)
            best = max(scores)
            found = index.best_above(cand)
            nearest = index.nearest(cand)
            expected = None if best == 0 else (best, scores.index(best))
            got = None if nearest is None else (nearest.score, nearest.index)
            answer_diffs += (found is not None) != (best > ROUGE_THRESHOLD) or got != expected
            if found is not None:  # the best match, ties to the earliest entry
                answer_diffs += (found.score, found.index) != expected
        timed = rng.sample(candidates, index_samples)
        t0 = time.process_time()
        for cand in timed:
            index.best_above(cand)
        ours_ms = (time.process_time() - t0) * 1e3 / len(timed)
        print(f"{size:>7} {ref_ms:>12.2f} {ours_ms:>9.4f} {ref_ms / ours_ms:>8.0f}x")
    mismatches += answer_diffs
    print(
        f"whole-pool answers vs rouge-score scans: {whole_pairs} pairs, {answer_diffs} "
        "differences (best_above decision, score and index; nearest score and index)"
    )

    # -- bulk build and memory ---------------------------------------------------------
    entries = pool[: max(POOL_SIZES)]
    t0 = time.process_time()
    NoveltyIndex().add_many(entries)
    build_s = time.process_time() - t0
    tracemalloc.start()
    index = NoveltyIndex()
    index.add_many(entries)
    traced, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    text_bytes = sum(sys.getsizeof(t) for t in entries)
    print(
        f"add_many({len(entries)}): {build_s:.2f} CPU-s; index {traced / len(entries):.0f} "
        f"bytes/entry (tracemalloc; the texts, held by the caller too, are "
        f"{text_bytes / len(entries):.0f} bytes/entry more)"
    )
    del index

    # -- sequential replay ---------------------------------------------------------------
    index = NoveltyIndex()
    index.add_many(seeds)
    pool_texts = list(seeds)
    pool_size_before: list[int] = []
    decisions: list[bool] = []
    c0 = time.process_time()
    w0 = time.perf_counter()
    for cand in candidates:
        pool_size_before.append(len(pool_texts))
        rejected = index.best_above(cand) is not None
        decisions.append(rejected)
        if not rejected:
            index.add(cand)
            pool_texts.append(cand)
    replay_cpu = time.process_time() - c0
    replay_wall = time.perf_counter() - w0
    kept = len(pool_texts) - len(seeds)
    print(
        f"replay: {len(candidates)} candidates, pool {len(seeds)} -> {len(pool_texts)} "
        f"(kept {kept}, rejected {len(candidates) - kept} = "
        f"{(len(candidates) - kept) / len(candidates):.0%}): {replay_cpu:.1f} CPU-s, "
        f"{replay_wall:.1f} s wall, {replay_cpu / len(candidates) * 1e3:.3f} ms/candidate"
    )
    # Spot-check replay decisions with rouge-score scans of the pool as it was then.
    spot = sorted(rng.sample(range(len(candidates)), 4 if quick else 12))
    spot_pairs = spot_diffs = 0
    for i in spot:
        tokens = [scorer._tokenizer.tokenize(t) for t in pool_texts[: pool_size_before[i]]]
        spot_pairs += len(tokens)
        ref = max(reference_full_scan(scorer, candidates[i], tokens)) > ROUGE_THRESHOLD
        spot_diffs += ref != decisions[i]
    mismatches += spot_diffs
    print(
        f"replay spot checks: {len(spot)} candidates, {spot_pairs} pairs, {spot_diffs} differences"
    )

    # -- dedup command and LCS kernels -----------------------------------------------
    dedup_s, dedup_kept, dedup_rejected = time_dedup(pool, candidates)
    print(
        f"dedup_file on a {len(candidates)}-record Alpaca JSON file: {dedup_s:.1f} s wall "
        f"(kept {dedup_kept}, rejected {dedup_rejected})"
    )
    rapid_us, bits_us = time_lcs_kernels(pool, 5_000 if quick else 20_000)
    print(
        f"LCS kernel per pair: rapidfuzz LCSseq on id strings {rapid_us:.2f} us, "
        f"bit-parallel on Python ints {bits_us:.2f} us"
    )
    print("identical to rouge-score" if mismatches == 0 else f"MISMATCHES: {mismatches}")
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    with saved_output("--save" in sys.argv, __file__):
        raise SystemExit(main())
