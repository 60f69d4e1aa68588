"""Check the ROUGE-L novelty index against rouge-score, the reference implementation."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer, tokenizers

from selfinstruct import similarity
from selfinstruct.similarity import (
    ROUGE_THRESHOLD,
    Match,
    NoveltyIndex,
    Tokenizer,
    rouge_l,
    tokenize,
)

SCORER = rouge_scorer.RougeScorer(["rougeL"])
ROUGE_TOKENIZER = tokenizers.DefaultTokenizer(use_stemmer=False)

# The machine running the suite may be loaded; correctness, not speed, is tested here.
FAST = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])


def reference(target: str, prediction: str) -> float:
    """Score a pair the way Self-Instruct does: scorer.score(candidate, pool_entry)."""
    return float(SCORER.score(target, prediction)["rougeL"].fmeasure)


def brute_best(pool: list[str], text: str) -> tuple[float, int] | None:
    """Return the maximum reference score and its lowest index, or None if all are 0."""
    scores = [reference(text, entry) for entry in pool]
    if not scores or max(scores) == 0:
        return None
    best = max(scores)
    return best, scores.index(best)


def words(count: int, stem: str) -> list[str]:
    return [f"{stem}{i}" for i in range(count)]


def pair_with(lcs: int, len_a: int, len_b: int) -> tuple[str, str]:
    """Build two texts of the given token counts whose LCS is exactly lcs tokens."""
    shared = words(lcs, "w")
    a = shared + words(len_a - lcs, "x")
    b = shared + words(len_b - lcs, "y")
    return " ".join(a), " ".join(b)


# -- tokenizer ----------------------------------------------------------------

TOKENIZER_CASES = [
    "",
    "   ",
    "!!! ... ???",
    "Hello, World!",
    "foo_bar baz-qux",
    "Write a 500-word essay on the U.S.A.'s history.",
    "ÀÉÎõü café naïve",
    "İstanbul",  # lowercases to "i" + COMBINING DOT ABOVE
    "\u212a elvin",  # KELVIN SIGN lowercases to ASCII "k"
    "ﬁnd the ﬂow",  # ligatures stay non-ASCII
    "ＡＢＣ full width",
    "١٢٣ Arabic-Indic digits",
    "请把这句话翻译成英文",
    "tab\tnew\nline\r\nend",
    "x" * 1000,
]


@pytest.mark.parametrize("text", TOKENIZER_CASES)
def test_rouge_tokenizer_matches_rouge_score_on_edge_cases(text: str) -> None:
    assert tokenize(text) == ROUGE_TOKENIZER.tokenize(text)


@FAST
@given(st.text())
def test_rouge_tokenizer_matches_rouge_score_on_any_text(text: str) -> None:
    assert tokenize(text, "rouge") == ROUGE_TOKENIZER.tokenize(text)


@FAST
@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_unicode_tokenizer_equals_rouge_tokenizer_on_ascii(text: str) -> None:
    assert tokenize(text, "unicode") == tokenize(text, "rouge")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Café au lait", ["café", "au", "lait"]),
        ("cafe\u0301 noir", ["café", "noir"]),  # NFKC composes the accent
        ("snake_case words", ["snake", "case", "words"]),
        ("ＡＢＣ１２３", ["abc123"]),  # full-width forms fold to ASCII
        ("नमस्ते दुनिया", ["नमस्ते", "दुनिया"]),  # combining vowel signs stay in the word
        ("東京タワーに行く", ["東", "京", "タ", "ワ", "ー", "に", "行", "く"]),
        ("한국어 문장", ["한", "국", "어", "문", "장"]),
        ("GPT-4で要約して", ["gpt", "4", "で", "要", "約", "し", "て"]),
        ("Ελληνικά κείμενα", ["ελληνικά", "κείμενα"]),
    ],
)
def test_unicode_tokenizer(text: str, expected: list[str]) -> None:
    assert tokenize(text, "unicode") == expected


def test_unknown_tokenizer_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown tokenizer"):
        tokenize("x", "bert")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown tokenizer"):
        NoveltyIndex(tokenizer="bert")  # type: ignore[arg-type]


# -- pairwise scores ---------------------------------------------------------

SCORE_CASES = [
    ("", ""),
    ("", "write a poem"),
    ("!!!", "???"),
    ("write a poem", "..."),
    ("Write a poem.", "write a POEM!"),
    ("the the the the", "the"),
    ("a a b b a a", "a b a b a b"),
    ("a b c d e f g", "g f e d c b a"),
    ("list three fruits", "name three vegetables"),
    ("Translate 'café' into English", "Translate 'cafe' into English"),
    ("请把这句话翻译成英文", "请把这句话翻译为英文"),
    (" ".join(words(300, "t")), " ".join(words(280, "t") + words(50, "u"))),
]


@pytest.mark.parametrize(("a", "b"), SCORE_CASES)
def test_rouge_l_equals_rouge_score(a: str, b: str) -> None:
    assert rouge_l(a, b) == reference(a, b)
    assert rouge_l(b, a) == reference(b, a) == rouge_l(a, b)


@pytest.mark.parametrize(
    ("lcs", "len_a", "len_b", "expected"),
    [
        # True F is exactly 7/10 in every row; rouge-score's float result decides.
        (7, 8, 12, "0.7000000000000001"),
        (7, 7, 13, "0.7000000000000001"),
        (14, 18, 22, "0.7000000000000001"),
        (7, 10, 10, "0.7"),
        (14, 17, 23, "0.7"),
        (21, 29, 31, "0.7"),
        (21, 23, 37, "0.6999999999999998"),
    ],
)
def test_exact_threshold_pairs_follow_rouge_score_rounding(
    lcs: int, len_a: int, len_b: int, expected: str
) -> None:
    a, b = pair_with(lcs, len_a, len_b)
    assert repr(reference(a, b)) == expected
    assert repr(rouge_l(a, b)) == expected
    rejected = float(expected) > ROUGE_THRESHOLD
    for pool, query in ((a, b), (b, a)):
        index = NoveltyIndex()
        index.add(pool)
        found = index.first_above(query)
        assert (found is not None) == rejected
        assert index.nearest(query) == Match(float(expected), pool, 0)


PAIR_WORDS = st.lists(st.sampled_from(["a", "b", "c", "the", "x1", "Y", "é", "_"]), max_size=12)


@FAST
@given(PAIR_WORDS, PAIR_WORDS)
def test_rouge_l_equals_rouge_score_on_generated_pairs(a: list[str], b: list[str]) -> None:
    ta, tb = " ".join(a), " ".join(b)
    assert rouge_l(ta, tb) == reference(ta, tb) == rouge_l(tb, ta)


@FAST
@given(st.text(max_size=40), st.text(max_size=40))
def test_rouge_l_equals_rouge_score_on_arbitrary_text(a: str, b: str) -> None:
    assert rouge_l(a, b) == reference(a, b)


# -- the index against brute force --------------------------------------------

VOCAB = ["write", "a", "poem", "about", "the", "sea", "list", "three", "é", "Ünï", "42", "of"]
TEXTS = st.lists(st.sampled_from(VOCAB), max_size=10).map(" ".join)


def check_index(index: NoveltyIndex, pool: list[str], queries: list[str]) -> None:
    """Compare every query answer of the index with a rouge-score scan of the pool."""
    assert len(index) == len(pool)
    for query in queries:
        best = brute_best(pool, query)
        above = best is not None and best[0] > index.threshold
        found = index.first_above(query)
        assert (found is not None) == above
        if found is not None:
            assert found.text == pool[found.index]
            assert found.score == reference(query, pool[found.index]) > index.threshold
        best_above = index.best_above(query)
        nearest = index.nearest(query)
        expected = None if best is None else Match(best[0], pool[best[1]], best[1])
        assert nearest == expected
        assert best_above == (expected if above else None)


@FAST
@given(
    pool=st.lists(TEXTS, max_size=25),
    queries=st.lists(TEXTS, min_size=1, max_size=8),
    threshold=st.sampled_from([0.0, 0.3, 0.5, ROUGE_THRESHOLD, 0.9, 1.0]),
    split=st.integers(min_value=0, max_value=25),
    learned=st.lists(TEXTS, max_size=5),
)
def test_index_matches_brute_force(
    pool: list[str], queries: list[str], threshold: float, split: int, learned: list[str]
) -> None:
    index = NoveltyIndex(threshold=threshold)
    index.learn_vocabulary(learned)  # changes ids, never answers
    index.add_many(pool[:split])
    for text in pool[split:]:
        index.add(text)
    check_index(index, pool, queries + pool[:3])


@FAST
@given(
    pool=st.lists(st.text(max_size=30), max_size=15),
    queries=st.lists(st.text(max_size=30), min_size=1, max_size=5),
)
def test_index_matches_brute_force_on_arbitrary_text(pool: list[str], queries: list[str]) -> None:
    index = NoveltyIndex()
    index.add_many(pool)
    check_index(index, pool, queries)


def test_sequential_growth_matches_full_scans() -> None:
    """Replay a Self-Instruct style loop and compare every decision with a full scan."""
    import random

    rng = random.Random(1234)
    vocab = words(40, "w") + ["the", "a", "of", "write", "list"]
    kept: list[str] = []
    index = NoveltyIndex()
    for _ in range(400):
        if kept and rng.random() < 0.3:
            tokens = rng.choice(kept).split()
            tokens[rng.randrange(len(tokens))] = rng.choice(vocab)
        else:
            tokens = rng.choices(vocab, k=rng.randint(1, 14))
        text = " ".join(tokens)
        reject = any(reference(text, entry) > ROUGE_THRESHOLD for entry in kept)
        assert (index.first_above(text) is not None) == reject
        if not reject:
            index.add(text)
            kept.append(text)
    assert 50 < len(kept) < 400


def test_long_instructions_cross_length_buckets() -> None:
    # Lengths from 150 to 450 tokens span the exact buckets and the shared
    # power-of-two buckets (192-255, 256-511).
    base = words(450, "t")
    pool = [" ".join(base[:n]) for n in (150, 200, 260, 330, 450)]
    queries = [
        " ".join(base[:300]),
        " ".join(base[:140] + words(60, "u")),
        " ".join(base[50:400]),
        " ".join(words(10, "v") + base[:240]),
    ]
    index = NoveltyIndex()
    index.add_many(pool[:2])
    for text in pool[2:]:
        index.add(text)
    check_index(index, pool, queries)


def test_repeated_tokens_are_counted_as_a_multiset() -> None:
    pool = ["the the the cat", "cat the", "the"]
    index = NoveltyIndex(threshold=0.5)
    index.add_many(pool)
    check_index(index, pool, ["the the", "the the the the the", "cat cat the the", "the cat"])


def test_ties_resolve_to_the_lowest_index() -> None:
    index = NoveltyIndex()
    index.add_many(["write a poem", "something else", "write a poem", "Write a poem!"])
    assert index.nearest("write a poem") == Match(1.0, "write a poem", 0)
    assert index.best_above("write a poem") == Match(1.0, "write a poem", 0)
    assert index.nearest("write a short poem") == Match(
        reference("write a short poem", "write a poem"), "write a poem", 0
    )


def test_empty_pool_and_empty_queries() -> None:
    index = NoveltyIndex()
    assert len(index) == 0
    assert index.first_above("anything") is None
    assert index.nearest("anything") is None
    index.add("")
    index.add("!!!")
    index.add("write a poem")
    assert len(index) == 3
    assert index.first_above("...") is None
    assert index.nearest("") is None
    assert index.nearest("unrelated words only") is None
    assert index.first_above("write a poem") == Match(1.0, "write a poem", 2)


def test_threshold_and_tokenizer_properties() -> None:
    index = NoveltyIndex(threshold=0.5, tokenizer="unicode")
    assert index.threshold == 0.5
    assert index.tokenizer == "unicode"
    assert NoveltyIndex().threshold == ROUGE_THRESHOLD == 0.7
    assert NoveltyIndex().tokenizer == "rouge"
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="threshold"):
            NoveltyIndex(threshold=bad)


def test_threshold_one_never_rejects_and_zero_rejects_any_shared_token() -> None:
    strict = NoveltyIndex(threshold=1.0)
    strict.add("write a poem")
    assert strict.first_above("write a poem") is None
    loose = NoveltyIndex(threshold=0.0)
    loose.add("write a poem")
    assert loose.first_above("poem") == Match(reference("poem", "write a poem"), "write a poem", 0)
    assert loose.first_above("essay") is None


# -- Unicode -------------------------------------------------------------------

CJK_NEAR_DUPLICATES = [
    ("请把这句话翻译成英文。", "请将这句话翻译成英文。"),
    ("日本の首都はどこですか？", "日本の首都はどこでしょうか？"),
    ("다음 문장을 영어로 번역하세요.", "다음 문장을 영어로 번역해 주세요."),
]


@pytest.mark.parametrize(("pool_text", "candidate"), CJK_NEAR_DUPLICATES)
def test_unicode_tokenizer_catches_cjk_near_duplicates(pool_text: str, candidate: str) -> None:
    assert reference(candidate, pool_text) == 0.0
    rouge_index = NoveltyIndex()
    rouge_index.add(pool_text)
    assert rouge_index.first_above(candidate) is None
    unicode_index = NoveltyIndex(tokenizer="unicode")
    unicode_index.add(pool_text)
    match = unicode_index.first_above(candidate)
    assert match is not None
    assert match.score == rouge_l(candidate, pool_text, "unicode") > ROUGE_THRESHOLD


@FAST
@given(
    pool=st.lists(st.text(alphabet="日本語のテキスト한국어 abc", max_size=12), max_size=12),
    queries=st.lists(st.text(alphabet="日本語のテキスト한국어 abc", max_size=12), min_size=1),
)
def test_unicode_index_matches_brute_force(pool: list[str], queries: list[str]) -> None:
    index = NoveltyIndex(tokenizer="unicode")
    index.add_many(pool)
    for query in queries:
        scores = [rouge_l(query, entry, "unicode") for entry in pool]
        expected = any(score > ROUGE_THRESHOLD for score in scores)
        assert (index.first_above(query) is not None) == expected
        nearest = index.nearest(query)
        if not scores or max(scores) == 0:
            assert nearest is None
        else:
            assert nearest is not None
            assert (nearest.score, nearest.index) == (max(scores), scores.index(max(scores)))


def test_rouge_l_unicode_matches_a_direct_lcs() -> None:
    a, b = "東京タワーに行く", "東京スカイツリーに行く"
    ta, tb = tokenize(a, "unicode"), tokenize(b, "unicode")
    # LCS is 東 京 ー に 行 く (6 tokens): precision 6/11, recall 6/8.
    lcs = 6
    p, r = lcs / len(tb), lcs / len(ta)
    assert rouge_l(a, b, "unicode") == 2 * p * r / (p + r)


# -- representation limits -------------------------------------------------------


def test_sequences_fall_back_to_tuples_beyond_the_code_point_range(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(similarity, "_MAX_CODEPOINT", 30)
    vocab = words(60, "w")
    pool = [" ".join(vocab[i : i + 8]) for i in range(0, 52, 3)]
    index = NoveltyIndex()
    index.add_many(pool[:5])
    for text in pool[5:]:
        index.add(text)
    queries = [" ".join(vocab[i : i + 7]) for i in range(0, 56, 5)] + ["w1 w2 w59 w58"]
    check_index(index, pool, queries)


def test_token_ids_skip_the_surrogate_block() -> None:
    count = 0xD800 + 600  # enough distinct tokens to cross U+D800..U+DFFF
    tokens = [f"{letters}" for letters in _distinct_words(count)]
    index = NoveltyIndex()
    index.add_many(tokens)
    probe = tokens[0xD800 - 5 : 0xD800 + 5]
    for position, token in enumerate(probe, start=0xD800 - 5):
        assert index.first_above(token) == Match(1.0, token, position)
    pair = f"{tokens[0xD7FF]} {tokens[0xD800]}"
    index.add(pair)
    assert index.nearest(f"{tokens[0xD800]} {tokens[0xD7FF]}") is not None


def _distinct_words(count: int) -> list[str]:
    """Return count distinct lowercase words, each of them a single rouge token."""
    letters = string.ascii_lowercase
    out: list[str] = []
    n = 0
    while len(out) < count:
        word, k = "", n
        while True:
            word += letters[k % 26]
            k //= 26
            if not k:
                break
        out.append("z" + word)
        n += 1
    return out


def test_tokenizer_type_alias_lists_both_tokenizers() -> None:
    from typing import get_args

    assert set(get_args(Tokenizer)) == {"rouge", "unicode"}
