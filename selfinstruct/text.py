"""Make untrusted text safe: teacher text at the parse boundary, server text on the terminal.

The teacher is untrusted input (DESIGN.md sec. 6). Its text is normalised once, where it is
parsed: characters that carry no content (a byte-order mark, zero-width spaces, bidi
controls) are dropped and every line break becomes "\\n". What would corrupt the dataset
(a control character, a lone surrogate, a replacement character standing for bytes that
were lost) is not repaired but named by `invalid_char`, so the field is rejected with
reason ``invalid_text``. `printable` neutralises text a server wrote before it reaches the
terminal.
"""

from __future__ import annotations

import logging
import re
import unicodedata

# Invisible characters that carry no content: BOM / zero-width no-break space, zero-width
# space, word joiner, Mongolian vowel separator, and the bidi controls (marks, embeddings,
# overrides, isolates: Unicode UAX #9, sec. 2), which can make text read in another order
# than it is stored ("Trojan Source", CVE-2021-42574). ZWJ and ZWNJ stay: emoji sequences
# and some scripts need them.
_BIDI = "\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_INVISIBLE = "\ufeff\u200b\u2060\u180e" + _BIDI
# Line breaks other than "\n" (Unicode UAX #14 mandatory breaks): CR, VT, FF, NEL, and the
# line and paragraph separators, which JavaScript and JSON-lines readers treat differently.
_LINE_BREAKS = "\r\x0b\x0c\x85\u2028\u2029"
_TABLE = {ord(c): None for c in _INVISIBLE} | {ord(c): "\n" for c in _LINE_BREAKS}
# What a dataset must not hold: C0 controls but tab and newline, DEL, C1 controls, lone
# surrogates (not encodable as UTF-8), and U+FFFD, which a decoder puts where it lost bytes.
_INVALID = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffd]")
# Everything `printable` escapes besides what str.isprintable() already flags as safe.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def normalise(text: str) -> str:
    """Drop invisible format characters and turn every line break into a newline."""
    if text.isascii() and "\r" not in text and "\x0b" not in text and "\x0c" not in text:
        return text  # the common case, without building a copy
    return text.replace("\r\n", "\n").translate(_TABLE)


def _describe(char: str) -> str:
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:
        kind = "a lone surrogate"
    elif code == 0xFFFD:
        kind = "a replacement character: bytes were lost before it"
    else:
        kind = "a control character"
    return f"U+{code:04X} ({kind})"


def invalid_char(text: str) -> str | None:
    """Describe the first character that a dataset must not hold, or return None."""
    match = _INVALID.search(text)
    if match is None:
        return None
    return f"{_describe(match.group())} at character {match.start()}"


def escape_invalid(text: str) -> str:
    """Replace what `invalid_char` finds by its escape (\\x00, \\ud800), as visible text."""
    return _INVALID.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def printable(text: str) -> str:
    """Escape control characters, line breaks, lone surrogates and bidi controls for a terminal.

    A server's error message may hold ESC or OSC sequences (retitling the window, clearing
    the screen, faking a prompt) or a line break that forges a message of ours; each comes
    out as its escape (\\x1b, \\n), so what is printed stays one line of visible text.
    """
    if text.isprintable():
        return text
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if ch in _BIDI or unicodedata.category(ch) in _UNSAFE_CATEGORIES
        else ch
        for ch in text
    )


class PrintableFormatter(logging.Formatter):
    """Format log records for a terminal: a warning may quote what a server sent."""

    def format(self, record: logging.LogRecord) -> str:
        """Format the record as usual, then make it `printable`."""
        return printable(super().format(record))
