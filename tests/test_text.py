"""Table tests for selfinstruct.text: the boundary's normalisation and the terminal's escapes."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from selfinstruct.text import (
    PrintableFormatter,
    escape_invalid,
    invalid_char,
    normalise,
    printable,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain ascii", "plain ascii"),
        ("a\r\nb\rc\x0bd\x0ce", "a\nb\nc\nd\ne"),
        ("a\x85b\u2028c\u2029d", "a\nb\nc\nd"),
        ("\ufeffa\u200bb\u2060c", "abc"),
        ("\u202ea\u202c \u2066b\u2069 \u200ec\u200f", "a b c"),
        ("中文\u3000文本", "中文\u3000文本"),
        ("\U0001f469\u200d\U0001f52c", "\U0001f469\u200d\U0001f52c"),  # ZWJ kept
        ("a\x00b\x1bc\ud800", "a\x00b\x1bc\ud800"),  # left for invalid_char to name
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("clean text\twith tab\nand newline, 中文, é", None),
        ("a\x00", "U+0000 (a control character) at character 1"),
        ("\x1b[2J", "U+001B (a control character) at character 0"),
        ("x\x7f", "U+007F (a control character) at character 1"),
        ("x\x9b", "U+009B (a control character) at character 1"),
        ("ab\udc80", "U+DC80 (a lone surrogate) at character 2"),
        ("\ufffd", "U+FFFD (a replacement character: bytes were lost before it) at character 0"),
    ],
)
def test_invalid_char(text: str, found: str | None) -> None:
    assert invalid_char(text) == found


def test_escape_invalid_makes_text_loggable() -> None:
    escaped = escape_invalid("a\x00b\ud800c\x1b[2Jd\ufffd é")
    assert escaped == "a\\x00b\\ud800c\\x1b[2Jd\\ufffd é"
    escaped.encode("utf-8")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("HTTP 503: overloaded", "HTTP 503: overloaded"),
        ("\x1b]0;pwned\x07\x1b[2J", "\\x1b]0;pwned\\x07\\x1b[2J"),
        ("a\r\nerror: forged", "a\\r\\nerror: forged"),
        ("\x9b2J \u202eevil \u2028x \ud800", "\\x9b2J \\u202eevil \\u2028x \\ud800"),
        ("中文 é \u00a0", "中文 é \u00a0"),
    ],
)
def test_printable(text: str, expected: str) -> None:
    assert printable(text) == expected


@given(st.text())
def test_printable_output_is_one_safe_line(text: str) -> None:
    shown = printable(text)
    shown.encode("utf-8")
    assert "\x1b" not in shown and "\n" not in shown and "\r" not in shown
    assert len(shown.splitlines()) <= 1


def test_formatter_neutralises_a_warning() -> None:
    record = logging.LogRecord(
        "selfinstruct", logging.WARNING, "f", 1, "said %s", ("\x1b[2J",), None
    )
    assert PrintableFormatter("%(levelname)s: %(message)s").format(record) == (
        "WARNING: said \\x1b[2J"
    )
