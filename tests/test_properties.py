"""Properties over arbitrary text: filters never raise and account for everything; the
novelty index, grown the way the engine grows it, decides exactly as rouge-score does.

(The parsers' never-raise properties live in test_parse.py and test_parse_stages.py.)
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer

from selfinstruct.config import DEFAULT_BLACKLIST, ZH_BLACKLIST, FilterConfig
from selfinstruct.filters import (
    InstructionFilters,
    blacklist_pattern,
    check_instances,
    check_output,
)
from selfinstruct.parse import parse_yes_no
from selfinstruct.similarity import NoveltyIndex

FAST = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
INSTRUCTION_REASONS = {
    "too_short",
    "too_long",
    "blacklisted_word",
    "write_a_program",
    "starts_with_punctuation",
    "starts_with_non_ascii",
}
OUTPUT_REASONS = {"empty_output", "output_equals_input", "output_ends_with_colon"}
# Text a teacher might send back: ASCII words, accents, combining marks, CJK, emoji,
# Turkish dotted I, ligatures, full-width forms, controls and separators.
ALPHABET = st.sampled_from(
    list("abcdefgh  ABC012.,:;!?-_'\"\n\t")
    + ["é", "e\u0301", "İ", "ﬁ", "Ａ", "日本", "語", "한", "😀", "\u2028", "\x00", "ß", "ς"]
)
TEXT = st.lists(ALPHABET, max_size=40).map("".join)
SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


@FAST
@given(text=st.text() | TEXT, english=st.booleans())
def test_instruction_filters_never_raise(text: str, english: bool) -> None:
    verdict = InstructionFilters(FilterConfig(), english=english).check(text)
    assert verdict is None or verdict.reason in INSTRUCTION_REASONS


@FAST
@given(task_input=st.text() | TEXT, output=st.none() | st.text() | TEXT)
def test_check_output_never_raises(task_input: str, output: str | None) -> None:
    verdict = check_output(task_input, output)
    assert verdict is None or verdict.reason in OUTPUT_REASONS


@FAST
@given(
    pairs=st.lists(st.tuples(st.sampled_from(["", "a", " a ", "b"]) | TEXT, TEXT), max_size=9),
    limit=st.integers(min_value=1, max_value=6),
)
def test_check_instances_accounts_for_every_pair(pairs: list[tuple[str, str]], limit: int) -> None:
    checked = check_instances(pairs, limit)
    assert len(checked.kept) <= limit
    assert len(set(checked.kept)) == len(checked.kept)
    stripped = [(i.strip(), o.strip()) for i, o in pairs]
    if checked.task_verdict is None:
        # Every pair is either kept or dropped with a reason, in order.
        assert checked.kept
        assert len(checked.kept) + len(checked.dropped) == len(pairs)
        assert all(kept in stripped for kept in checked.kept)
    else:
        assert checked.kept == []
        assert checked.task_verdict.reason in {"conflicting_outputs", "no_instances"}
    for verdict, task_input, output in checked.dropped:
        assert verdict.reason  # named, so it is counted
        assert (task_input, output) in stripped


@FAST
@given(text=st.text() | TEXT)
def test_parse_yes_no_never_raises(text: str) -> None:
    assert parse_yes_no(text) in (True, False, None)


@FAST
@given(candidates=st.lists(TEXT | st.text(max_size=30), min_size=1, max_size=30))
def test_index_grown_like_the_engine_decides_like_rouge_score(candidates: list[str]) -> None:
    """Check each candidate, admit it when novel, as _screen does; compare every decision."""
    index = NoveltyIndex()
    admitted: list[str] = []
    for text in candidates:
        scores = [SCORER.score(text, entry)["rougeL"].fmeasure for entry in admitted]
        expected_reject = any(score > index.threshold for score in scores)
        match = index.best_above(text)
        assert (match is not None) == expected_reject
        if match is not None:
            assert match.score == max(scores)
            assert match.text == admitted[scores.index(max(scores))]
        else:
            index.add(text)
            admitted.append(text)
    assert len(index) == len(admitted)


_BLACKLIST_WORDS = sorted(
    {*DEFAULT_BLACKLIST, *ZH_BLACKLIST, "c++", ".net", "图片集", "视频video", "straße"},
    key=len,
    reverse=True,
)


def _first_entry_found(words: list[str], text: str) -> tuple[int, str] | None:
    """Find the leftmost whole-word entry, the earlier entry on a tie, one pattern each."""
    hits = []
    for order, word in enumerate(words):
        if hit := re.compile("(" + blacklist_pattern([word]) + ")", re.I).search(text):
            hits.append((hit.start(), order, hit.group(1)))
    return min(hits)[0::2] if hits else None


@FAST
@given(
    st.lists(
        st.sampled_from(_BLACKLIST_WORDS)
        | st.sampled_from(list("abXY +.-_1é中文图片ßSİiI，"))
        | st.sampled_from(_BLACKLIST_WORDS).map(str.upper),
        max_size=10,
    ).map("".join)
)
def test_the_shared_blacklist_pattern_finds_what_each_entry_would(text: str) -> None:
    # Entries with the same edges share one pair of lookarounds (it compiles 50 times
    # faster); the hit must be the one the entries' own patterns, tried in order, give.
    hit = re.compile(blacklist_pattern(_BLACKLIST_WORDS), re.I).search(text)
    assert (hit and (hit.start(1), hit.group(1))) == _first_entry_found(_BLACKLIST_WORDS, text)
