"""Decide instruction novelty with ROUGE-L exactly as rouge-score does, but fast.

Self-Instruct (and Stanford Alpaca after it) keeps a generated instruction only if
its ROUGE-L F-measure against every instruction already in the pool is at most
0.7.  The reference implementations score a candidate against the whole pool with
``rouge_score`` on every step, which is quadratic in pure Python.  This module
gives the same decisions, bit for bit, with an inverted index:

* tokens become integer ids, and each pool entry is stored as a compact ``str``
  whose code points are those ids, so the LCS runs in rapidfuzz's bit-parallel
  C++ kernel instead of a Python dynamic programme;
* candidate pool entries come from a prefix filter (Chaudhuri et al. 2006,
  "A Primitive Operator for Similarity Joins in Data Cleaning"; Bayardo et al.
  2007, "Scaling Up All Pairs Similarity Search"): ``F > t`` needs an LCS, hence
  a token-multiset overlap, of at least ``tau`` tokens, and two multisets that
  share ``tau`` elements share ``k`` among the first ``size - tau + k`` elements
  of each under any fixed global order (rarest tokens first).  Each entry
  indexes only its shortest useful prefix; a query counts, per entry, how many
  of its own prefix elements it meets there and verifies only entries that meet
  ``k`` of them;
* postings are split by entry length, so a query reads only lengths that pass
  the bound ``F <= 2 * min(la, lb) / (la + lb)``, each with the ``tau`` and
  ``k`` of that length.

Every bound is conservative and the final decision always uses rouge-score's own
floating-point formula, so the pruning never changes an answer.
"""

from __future__ import annotations

import functools
import math
import re
import sys
import unicodedata
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Final, Literal, TypeAlias, get_args

from rapidfuzz import process
from rapidfuzz.distance import Indel, LCSseq

from selfinstruct import collector

__all__ = [
    "ROUGE_THRESHOLD",
    "Match",
    "NoveltyIndex",
    "Tokenizer",
    "rouge_l",
    "tokenize",
]

Tokenizer = Literal["rouge", "unicode"]

# Self-Instruct (Wang et al. 2023, "Self-Instruct: Aligning Language Models with
# Self-Generated Instructions", ACL, sec. 2.3 "Filtering and postprocessing"):
# "a new instruction is added to the task pool only when its ROUGE-L similarity
# with any existing instruction is less than 0.7".  The released code
# (yizhongw/self-instruct, self_instruct/bootstrap_instructions.py) rejects when
# ``max(rouge_scores) > 0.7``, so a score of exactly 0.7 is kept.
ROUGE_THRESHOLD: Final = 0.7

_TOKENIZERS: Final[tuple[str, ...]] = get_args(Tokenizer)

# rouge_score/tokenize.py lowercases the whole (Unicode) string, replaces every run
# of characters outside [a-z0-9] with a space, splits on whitespace and drops empty
# tokens.  Those steps leave exactly the maximal [a-z0-9] runs of the lowercased
# text, which is what findall returns.  Non-ASCII letters therefore vanish unless
# str.lower() maps them into ASCII (U+212A KELVIN SIGN -> "k", U+0130 -> "i" + a
# combining dot, which splits the word there).
_ROUGE_TOKEN_RE: Final = re.compile(r"[a-z0-9]+")

# Scripts written without spaces between words: every character is one token.
# Blocks from the Unicode 15 code charts: CJK Unified Ideographs and extensions
# A-H, compatibility ideographs, the iteration/closing marks U+3005-U+3007,
# Hiragana, Katakana (+ phonetic extensions) and precomposed Hangul syllables.
_SINGLE_CHAR_RANGES: Final = (
    "\u3005-\u3007"
    "\u3040-\u309f"
    "\u30a0-\u30ff"
    "\u31f0-\u31ff"
    "\u3400-\u4dbf"
    "\u4e00-\u9fff"
    "\uac00-\ud7af"
    "\uf900-\ufaff"
    "\U00020000-\U0003ffff"
)
_SINGLE_CHAR_SCRIPT: Final = re.compile(f"[{_SINGLE_CHAR_RANGES}]")


def has_single_char_script(text: str) -> bool:
    """Say whether text holds CJK, kana or Hangul: the characters that are tokens alone."""
    return _SINGLE_CHAR_SCRIPT.search(text) is not None


# Code points double as token ids inside the compact sequence strings.  Ids skip
# the surrogate block (a str may not round-trip through codecs with lone
# surrogates) and stop at sys.maxunicode; beyond that, entries fall back to
# tuples of ints (see _encode).
_SURROGATE_FIRST: Final = 0xD800
_SURROGATE_END: Final = 0xE000
_MAX_CODEPOINT = sys.maxunicode  # module-level (not Final) so tests can force the fallback

# A token's k-th repeat (k >= 1) within one text is a multiset element of its own,
# with the negative id -(k << 32 | token id): the global order (descending id) then
# puts repeats after every first occurrence, and fixes it without any table.
_REPEAT_SHIFT: Final = 32

# Pruning bounds are derived from a slightly lowered threshold so that rounding in
# the bound arithmetic can only widen, never narrow, the candidate set.  The
# decisions themselves are taken with rouge-score's exact float formula.
_SLACK: Final = 1e-9

_Seq: TypeAlias = str | tuple[int, ...]
# (probe prefix length, required shared prefix elements, length buckets)
_ProbeGroup: TypeAlias = tuple[int, int, tuple[int, ...]]

# Postings are keyed by element and by the length bucket of the entry, so that a
# query reads only entries whose length can reach the threshold, each bucket with
# the tightest prefix for that length.  Lengths below _EXACT_BUCKETS have their
# own bucket; longer ones share power-of-two buckets (bounds stay conservative).
_EXACT_BUCKETS: Final = 192
_BUCKET_BITS: Final = 8


def _post(postings: dict[int, int | array[int]], key: int, index: int) -> None:
    """Add `index` to the postings under `key`."""
    plist = postings.get(key)
    # Most keys hold a single entry: store it as a bare int, not an array.
    if plist is None:
        postings[key] = index
    elif isinstance(plist, int):
        postings[key] = array("I", (plist, index))
    else:
        plist.append(index)


def _bucket(n: int) -> int:
    return n if n < _EXACT_BUCKETS else _EXACT_BUCKETS + n.bit_length() - 8


def _bucket_range(bucket: int) -> tuple[int, int]:
    if bucket < _EXACT_BUCKETS:
        return bucket, bucket
    bits = bucket - _EXACT_BUCKETS + 8
    return max(_EXACT_BUCKETS, 1 << (bits - 1)), (1 << bits) - 1


def _rouge_tokens(text: str) -> list[str]:
    return _ROUGE_TOKEN_RE.findall(text.lower())


@functools.cache
def _unicode_token_re() -> re.Pattern[str]:
    """Build the unicode tokenizer's pattern once, on first use (about 0.2 s)."""
    # Python's \w excludes combining marks (categories M*), which would split
    # words in Devanagari, Thai, decomposed Latin and many more scripts.
    marks: list[str] = []
    start = -1
    for cp in range(sys.maxunicode + 2):
        is_mark = cp <= sys.maxunicode and unicodedata.category(chr(cp)).startswith("M")
        if is_mark and start < 0:
            start = cp
        elif not is_mark and start >= 0:
            marks.append(f"{re.escape(chr(start))}-{re.escape(chr(cp - 1))}")
            start = -1
    # A word is a run of letters, digits and marks, minus "_" (rouge-score splits
    # on it too, so ASCII text tokenizes identically) and minus the single-token
    # scripts, each character of which matches the first alternative instead.
    return re.compile(
        f"[{_SINGLE_CHAR_RANGES}]|(?:[^\\W_{_SINGLE_CHAR_RANGES}]|[{''.join(marks)}])+"
    )


def _unicode_tokens(text: str) -> list[str]:
    if text.isascii():
        # NFKC and the full pattern agree with the rouge pattern on ASCII.
        return _ROUGE_TOKEN_RE.findall(text.lower())
    # NFKC folds full-width forms, ligatures and compatibility ideographs into
    # their plain forms before lowercasing.
    return _unicode_token_re().findall(unicodedata.normalize("NFKC", text).lower())


def _check_tokenizer(tokenizer: str) -> None:
    if tokenizer not in _TOKENIZERS:
        raise ValueError(f"unknown tokenizer {tokenizer!r}; expected one of {_TOKENIZERS}")


def tokenize(text: str, tokenizer: Tokenizer = "rouge") -> list[str]:
    """Split text into the tokens that ROUGE-L compares.

    ``"rouge"`` reproduces rouge-score's default tokenizer (no stemmer) exactly.
    ``"unicode"`` applies NFKC, lowercases, and keeps Unicode words (letters,
    digits and combining marks; ``_`` separates words) while making every CJK
    ideograph, kana and Hangul syllable a token of its own.  Both give identical
    tokens on ASCII text.
    """
    if tokenizer == "rouge":
        return _rouge_tokens(text)
    _check_tokenizer(tokenizer)
    return _unicode_tokens(text)


def _fmeasure(lcs: int, n_target: int, n_prediction: int) -> float:
    """Compute rouge-score's F-measure for an LCS length, in its float order."""
    # rouge_score/rouge_scorer.py _score_lcs and scoring.py fmeasure: precision
    # is relative to the prediction, recall to the target, and F = 2pr/(p+r).
    # The expression is symmetric in floating point as well (x*y == y*x, 2*x is
    # exact, x+y == y+x), so swapping target and prediction cannot change it.
    if lcs == 0:  # also covers empty token lists, where rouge-score returns 0
        return 0.0
    precision = lcs / n_prediction
    recall = lcs / n_target
    return 2 * precision * recall / (precision + recall)


def _lcs_of_tokens(a: Sequence[str], b: Sequence[str]) -> int:
    """Return the LCS length of two token lists."""
    ids: dict[str, int] = {}
    # Local ids compared as code points: exact, unlike hashing the strings.
    sa = "".join(chr(ids.setdefault(t, len(ids))) for t in a)
    sb = "".join(chr(ids.setdefault(t, len(ids))) for t in b)
    return int(LCSseq.similarity(sa, sb))


def rouge_l(a: str, b: str, tokenizer: Tokenizer = "rouge") -> float:
    """Return the ROUGE-L F-measure of two texts as rouge-score computes it.

    Equals ``RougeScorer(["rougeL"]).score(a, b)["rougeL"].fmeasure`` (target
    ``a``, prediction ``b``; the value is symmetric) for the rouge tokenizer.
    """
    ta = tokenize(a, tokenizer)
    tb = tokenize(b, tokenizer)
    if not ta or not tb:
        return 0.0
    return _fmeasure(_lcs_of_tokens(ta, tb), len(ta), len(tb))


@dataclass(frozen=True)
class Match:
    """A pool entry similar to a query, with its ROUGE-L F-measure."""

    score: float
    text: str
    index: int  # insertion position in the pool (0-based)


def _as_tuple(seq: _Seq) -> tuple[int, ...]:
    return seq if isinstance(seq, tuple) else tuple(map(ord, seq))


def _lcs_mixed(a: _Seq, b: _Seq, score_cutoff: int | None = None) -> int:
    """Return the LCS length of two id sequences of either representation."""
    if isinstance(a, str) and isinstance(b, str):
        return int(LCSseq.similarity(a, b, score_cutoff=score_cutoff))
    # rapidfuzz compares tuples of ints by value (hash(int) is the int itself).
    return int(LCSseq.similarity(_as_tuple(a), _as_tuple(b), score_cutoff=score_cutoff))


class NoveltyIndex:
    """Answer ROUGE-L threshold and nearest-neighbour queries over a growing pool.

    Decisions equal rouge-score's ``RougeScorer(["rougeL"])`` (default tokenizer,
    no stemmer) F-measure compared with ``> threshold``.  A query is scored as
    the target and the pool entry as the prediction, the order both reference
    implementations use: yizhongw/self-instruct bootstrap_instructions.py maps
    ``partial(scorer.score, inst)`` over the pool, and tatsu-lab/stanford_alpaca
    generate_instruction.py maps ``partial(rouge_scorer._score_lcs,
    new_instruction_tokens)`` over the pool's tokens.  The F-measure is symmetric
    anyway, bit for bit (see _fmeasure), and the tests check both orders.
    """

    def __init__(self, threshold: float = ROUGE_THRESHOLD, tokenizer: Tokenizer = "rouge") -> None:
        """Create an empty index for a threshold in [0, 1] and a tokenizer."""
        _check_tokenizer(tokenizer)
        if not 0.0 <= threshold <= 1.0:  # also rejects NaN
            raise ValueError(f"threshold must be within [0, 1], got {threshold!r}")
        self._threshold = float(threshold)
        self._tokenizer: Tokenizer = tokenizer
        self._tokenize = _rouge_tokens if tokenizer == "rouge" else _unicode_tokens
        self._texts: list[str] = []
        self._seqs: list[_Seq] = []
        self._lens = array("I")
        self._max_len = 0
        self._all_str = True
        # token -> id; the id also names the token's first occurrence as an
        # element of the multiset (see _REPEAT_SHIFT for repeats).
        self._vocab: dict[str, int] = {}
        self._next_id = 1  # 0 stands for "not in the pool" in query sequences
        # (element id, length bucket) -> insertion position(s) of the entries
        # whose prefix holds that element: an int for one entry, else an array.
        self._postings: dict[int, int | array[int]] = {}
        # Minimal LCS (conservative) for F > threshold, by la + lb; grown lazily.
        lowered = max(0.0, self._threshold - _SLACK)
        self._half_t = lowered / 2
        self._prefix_ratio = lowered / (2 - lowered)
        self._need_by_total: list[int] = []
        self._min_overlap_cache: dict[int, int] = {}
        self._prefix_by_len: list[int] = []
        # query length -> (max_len when computed, still valid if longer entries come, plan)
        self._plans: dict[int, tuple[int, bool, list[_ProbeGroup]]] = {}

    @property
    def threshold(self) -> float:
        """The F-measure above which an entry counts as a near duplicate."""
        return self._threshold

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer every text in this index goes through."""
        return self._tokenizer

    def __len__(self) -> int:
        """Return the number of pool entries."""
        return len(self._texts)

    # -- id and element bookkeeping -------------------------------------------

    def _new_id(self) -> int:
        i = self._next_id
        if i == _SURROGATE_FIRST:
            i = _SURROGATE_END
        self._next_id = i + 1
        return i

    def _encode(self, ids: list[int]) -> _Seq:
        """Pack token ids into a str of code points, or a tuple once ids outgrow Unicode."""
        if self._next_id <= _MAX_CODEPOINT + 1 or max(ids, default=0) <= _MAX_CODEPOINT:
            return "".join(map(chr, ids))
        return tuple(ids)

    def _min_overlap(self, size: int) -> int:
        """Return a lower bound on the LCS that any F > threshold pair with this side needs."""
        t = self._min_overlap_cache.get(size)
        if t is None:
            # F = 2L/(la+lb) and lb >= L, so F > thr needs 2L/(L+la) >= thr,
            # i.e. L >= thr * la / (2 - thr); the epsilon keeps rounding safe.
            t = max(1, math.ceil(self._prefix_ratio * size - 1e-6))
            self._min_overlap_cache[size] = t
        return t

    def _prefix_lengths(self, max_len: int) -> list[int]:
        """Return the indexed prefix length n - t(n) + 1 for every n up to max_len."""
        prefix = self._prefix_by_len
        if len(prefix) <= max_len:
            prefix.extend(n - self._min_overlap(n) + 1 for n in range(len(prefix), max_len + 1))
        return prefix

    def _ensure_need(self, total: int) -> list[int]:
        need = self._need_by_total
        if len(need) <= total:
            half = self._half_t
            # F = 2L/(la+lb) > thr needs L >= thr * (la+lb) / 2.
            need.extend(max(1, math.ceil(half * s - 1e-6)) for s in range(len(need), 2 * total + 2))
        return need

    @staticmethod
    def _elements(ids: list[int]) -> tuple[list[int], int]:
        """Return the element ids of a token-id multiset and how many tokens are unknown (0)."""
        distinct = set(ids)
        if len(distinct) == len(ids):
            if 0 in distinct:
                distinct.discard(0)
                return list(distinct), 1
            return list(distinct), 0
        counts = Counter(ids)
        unknown = counts.pop(0, 0)
        elements = list(counts)
        elements += [
            -(k << _REPEAT_SHIFT | i) for i, c in counts.items() if c > 1 for k in range(1, c)
        ]
        return elements, unknown

    def _store(self, text: str, ids: list[int]) -> None:
        index = len(self._texts)
        seq = self._encode(ids)
        if seq.__class__ is not str:
            self._all_str = False
        self._texts.append(text)
        self._seqs.append(seq)
        n = len(ids)
        self._lens.append(n)
        if n > self._max_len:
            self._max_len = n
        if n == 0:
            return
        # Global order: descending element id.  Ids are handed out in order of
        # first appearance (by frequency within add_many batches), so common
        # tokens have small ids and sit at the end of every prefix.
        elements = sorted(self._elements(ids)[0], reverse=True)
        postings = self._postings
        bucket = _bucket(n)
        for e in elements[: self._prefix_lengths(n)[n]]:
            key = e << _BUCKET_BITS | bucket
            _post(postings, key, index)

    # -- building ---------------------------------------------------------------

    def add(self, text: str) -> None:
        """Append one text to the pool (O(tokens))."""
        vocab = self._vocab
        ids: list[int] = []
        for tok in self._tokenize(text):
            i = vocab.get(tok)
            if i is None:
                i = vocab[tok] = self._new_id()
            ids.append(i)
        self._store(text, ids)

    def add_many(self, texts: Iterable[str]) -> None:
        """Append many texts in order, assigning ids by frequency for sharper prefixes."""
        batch = list(texts)
        # Building creates ~2 containers per text and no reference cycles; with
        # the cyclic GC running, its full passes over them double the build time.
        with collector.paused():
            self._add_batch(batch)

    def learn_vocabulary(self, texts: Iterable[str]) -> None:
        """Give the tokens of texts ids by frequency now, before those texts are added.

        Optional and speed-only: answers never change.  Prefixes hold the tokens
        with the highest ids, which are the rarest only if ids follow frequency;
        ``add`` alone hands them out in order of first appearance.  Call this with
        everything known ahead of a sequential run (a file to deduplicate, say).
        """
        with collector.paused():
            self._assign_ids(list(map(self._tokenize, texts)))

    def _assign_ids(self, token_lists: list[list[str]]) -> None:
        """Hand out ids from the most to the least frequent new token."""
        vocab = self._vocab
        counts = Counter(chain.from_iterable(token_lists))
        for token, _ in sorted(counts.items(), key=lambda kv: -kv[1]):
            if token not in vocab:
                vocab[token] = self._new_id()

    def _add_batch(self, batch: list[str]) -> None:
        tokenize_ = self._tokenize
        token_lists = [tokenize_(t) for t in batch]
        self._assign_ids(token_lists)
        vocab = self._vocab
        # The loop below is _store, inlined: it is most of the bulk build time.
        id_lists = [list(map(vocab.__getitem__, toks)) for toks in token_lists]
        del token_lists
        if self._next_id <= _MAX_CODEPOINT + 1:
            seqs: list[_Seq] = ["".join(map(chr, ids)) for ids in id_lists]
        else:
            seqs = [self._encode(ids) for ids in id_lists]
            self._all_str = self._all_str and all(isinstance(seq, str) for seq in seqs)
        lengths = list(map(len, id_lists))
        self._max_len = max(self._max_len, max(lengths, default=0))
        prefix = self._prefix_lengths(self._max_len)
        postings = self._postings
        index = len(self._texts)
        for ids in id_lists:
            n = len(ids)
            if n:
                distinct = set(ids)
                size = prefix[n]
                # Repeats (negative ids) sort after every distinct token, so they
                # matter only when the prefix is longer than the distinct tokens.
                if len(distinct) >= size:
                    elements = sorted(distinct, reverse=True)
                else:
                    elements = sorted(self._elements(ids)[0], reverse=True)
                bucket = n if n < _EXACT_BUCKETS else _bucket(n)
                for e in elements[:size]:
                    key = e << _BUCKET_BITS | bucket
                    _post(postings, key, index)
            index += 1
        self._texts.extend(batch)
        self._seqs.extend(seqs)
        self._lens.extend(lengths)

    # -- querying ---------------------------------------------------------------

    def _plan(self, m: int) -> list[_ProbeGroup]:
        """Return, for a query of m tokens, which buckets to probe with which prefix and count."""
        cached = self._plans.get(m)
        max_len = self._max_len
        if cached is not None and (cached[0] == max_len or cached[1]):
            return cached[2]
        need = self._ensure_need(m + max(m, max_len) + 1)
        min_overlap = self._min_overlap
        # Feasible partner lengths form an interval around m: F <= 2 min/(m+n).
        n_lo = 1
        while n_lo < m and need[m + n_lo] > n_lo:
            n_lo += 1
        n_hi = m
        while n_hi < max_len and need[m + n_hi + 1] <= m:
            n_hi += 1
        complete = n_hi < max_len  # later, longer entries cannot become feasible
        n_hi = min(n_hi, max_len)  # no entry is longer yet
        groups: dict[tuple[int, int], list[int]] = {}
        for bucket in range(_bucket(n_lo), _bucket(n_hi) + 1 if n_lo <= n_hi else 0):
            lo, hi = _bucket_range(bucket)
            first, last = max(lo, n_lo), min(hi, n_hi)
            if first > last:
                continue
            # Both need(m, n) and t(n) grow with n, so bound over the bucket by
            # its ends; exact buckets (first == last) lose nothing.
            tau = need[m + first]
            # k-prefix filter: if |X & Y| >= tau, the first m - tau + k elements
            # of X and the first n - tau + k of Y share k elements; Y's indexed
            # prefix (n - t(n) + 1 elements) covers that for k <= tau - t(n) + 1.
            k = max(1, tau - min_overlap(last) + 1)
            groups.setdefault((m - tau + k, k), []).append(bucket)
        plan = [(probe_len, k, tuple(buckets)) for (probe_len, k), buckets in groups.items()]
        # Probe the buckets of similar length first: early exits find matches there.
        plan.sort(key=lambda g: min(abs(_bucket(m) - b) for b in g[2]))
        self._plans[m] = (max_len, complete, plan)
        return plan

    def _search(self, text: str, first: bool) -> Match | None:
        """Return a pool entry above the threshold: the first found, or the best."""
        if not self._texts:
            return None
        vocab = self._vocab
        ids = [vocab.get(t, 0) for t in self._tokenize(text)]
        m = len(ids)
        if m == 0:
            return None
        elements, unknown = self._elements(ids)
        if not elements:
            return None
        # Unknown elements come first in the global order (they would receive
        # the largest ids) but match nothing, so they use up prefix slots.
        elements.sort(reverse=True)
        seq = self._encode(ids)
        need = self._ensure_need(m + self._max_len)
        lens = self._lens
        seqs = self._seqs
        postings = self._postings
        thr = self._threshold
        lcs = LCSseq.similarity if self._all_str and isinstance(seq, str) else _lcs_mixed
        best_index = -1
        best_score = -1.0
        for probe_len, k, buckets in self._plan(m):
            probe = elements[: probe_len - unknown]
            if len(probe) < k:
                continue
            found = [
                plist
                for e in probe
                for b in buckets
                if (plist := postings.get(e << _BUCKET_BITS | b)) is not None
            ]
            if not found:
                continue
            singles = [p for p in found if isinstance(p, int)]
            lists = [p for p in found if not isinstance(p, int)]
            if k == 1:
                candidates: Iterable[int] = set(singles).union(*lists)
            else:
                counts = Counter(singles)
                counts.update(chain.from_iterable(lists))
                candidates = [y for y, c in counts.items() if c >= k]
            for y in candidates:
                n = lens[y]
                nd = need[m + n]
                if nd > n or nd > m:  # length bound: F <= 2 min(m, n) / (m + n)
                    continue
                lcs_len = lcs(seq, seqs[y], score_cutoff=nd)
                if not lcs_len:
                    continue
                score = _fmeasure(lcs_len, m, n)
                if score <= thr:
                    continue
                if first:
                    return Match(score, self._texts[y], y)
                if score > best_score or (score == best_score and y < best_index):
                    best_score = score
                    best_index = y
        if best_index < 0:
            return None
        return Match(best_score, self._texts[best_index], best_index)

    def first_above(self, text: str) -> Match | None:
        """Return some pool entry scoring above the threshold, stopping at the first found."""
        return self._search(text, first=True)

    def best_above(self, text: str) -> Match | None:
        """Return the highest-scoring entry above the threshold (ties: lowest index)."""
        return self._search(text, first=False)

    def nearest(self, text: str) -> Match | None:
        """Return the entry with the maximum score (ties: lowest index); None if all are 0."""
        found = self._search(text, first=False)
        if found is not None:
            return found
        # Nothing above the threshold: the prefix index cannot bound lower
        # scores, so scan every entry with the C++ kernel.
        if not self._texts:
            return None
        vocab = self._vocab
        ids = [vocab.get(t, 0) for t in self._tokenize(text)]
        m = len(ids)
        if m == 0 or not any(ids):
            return None
        seq = self._encode(ids)
        positions: Sequence[int]
        if self._all_str and isinstance(seq, str):
            positions = _top_positions(seq, self._seqs)
        else:
            positions = range(len(self._seqs))
        lens = self._lens
        seqs = self._seqs
        best_index = -1
        best_score = 0.0
        for y in positions:
            lcs_len = _lcs_mixed(seq, seqs[y])
            if lcs_len:
                score = _fmeasure(lcs_len, m, lens[y])
                if score > best_score or (score == best_score and y < best_index):
                    best_score = score
                    best_index = y
        if best_index < 0:
            return None
        return Match(best_score, self._texts[best_index], best_index)


def _top_positions(query: str, choices: list[_Seq]) -> list[int]:
    """Return the positions of every choice whose ROUGE-L could be the maximum."""
    # Indel's normalized similarity is 1 - (la + lb - 2 LCS) / (la + lb), which
    # is the LCS F-measure 2 LCS / (la + lb) up to float rounding.  Rank with it
    # in C++, then keep everything within 1e-6 of the top (distinct F values of
    # texts under ~10^5 tokens differ by far more) for an exact rescoring.
    # No score_cutoff: rapidfuzz turns a normalized cutoff into an integer
    # distance bound that can drop entries sitting exactly at the cutoff.
    limit = 16
    while True:
        hits = process.extract(query, choices, scorer=Indel.normalized_similarity, limit=limit)
        if not hits or hits[0][1] <= 0:
            return []
        floor = hits[0][1] - 1e-6
        top = [int(h[2]) for h in hits if h[1] >= floor]
        if len(top) < len(hits) or len(hits) == len(choices):
            return top
        limit *= 4
