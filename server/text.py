"""Text that callers send: what every string the server keeps must be, the same on SQLite and
PostgreSQL, and how the names that people see are cleaned."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

import msgspec

from server.errors import PATTERN_MESSAGES, ProblemError

# C0 and C1 control characters and DEL. PostgreSQL refuses NUL outright (SQLite stores it), and
# none of them has a place in a name, a key, a code or a reason. Written with escapes, and as a
# lookahead rather than `^[^…]*$`, so that the pattern means the same in Python (where `$` also
# matches before a final newline) and in the OpenAPI description's ECMAScript.
CONTROL_CLASS = r"[\x00-\x1f\x7f-\x9f]"
TEXT_PATTERN = rf"^(?![\s\S]*{CONTROL_CLASS})"
CONTROL_RE = re.compile(CONTROL_CLASS)

Text = Annotated[str, msgspec.Meta(pattern=TEXT_PATTERN)]
"""A string field of a request body: any text without control characters."""

PATTERN_MESSAGES[TEXT_PATTERN] = "Text must not hold control characters (U+0000 to U+001F, U+007F to U+009F)."


def has_control(value: str) -> bool:
    return CONTROL_RE.search(value) is not None


# Shown nowhere, or shown as something else: formats (zero-width spaces, joiners, the byte-order
# mark, bidi embeddings, overrides and isolates), line and paragraph separators, private use,
# surrogates, and the Hangul fillers that render as blank letters.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")
_ZWNJ, _ZWJ = "\u200c", "\u200d"
_EMOJI_PRESENTATION = "\ufe0f"
_LATIN_AND_NEIGHBOURS_END = 0x0590  # Latin, Greek, Cyrillic, Armenian: scripts that need no joiner


def _joiner_fits(prev: str, nxt: str, joiner: str) -> bool:
    """A zero-width joiner inside an emoji sequence (👩‍💻), or a joiner between two letters of a
    script that needs it (Persian, the Indic scripts); never between Latin letters, where it only
    hides a difference."""
    if joiner == _ZWJ and (prev == _EMOJI_PRESENTATION or unicodedata.category(prev) in ("So", "Sk")):
        if unicodedata.category(nxt) == "So":
            return True
    return all(
        ord(c) >= _LATIN_AND_NEIGHBOURS_END and unicodedata.category(c)[0] in "LM" for c in (prev, nxt)
    )


def clean_name(value: str, *, code: str, what: str, max_length: int = 100) -> str:
    """A name that people see (a member's display name, a team's, a manager's): NFC-normalised and
    trimmed. 400 `code` when it is empty or longer than `max_length`, or holds a character that is
    invisible or changes how the text around it reads (controls, zero-width characters outside the
    scripts and emoji that need them, right-to-left overrides): a name must look like what it is."""
    name = unicodedata.normalize("NFC", value).strip()
    if not 1 <= len(name) <= max_length:
        raise ProblemError(400, code, f"{what} is 1 to {max_length} characters.")
    for i, char in enumerate(name):
        if char.isascii() and char.isprintable():
            continue
        refused = char in _BLANK_LETTERS or unicodedata.category(char) in _REFUSED_CATEGORIES
        if refused and char in (_ZWJ, _ZWNJ) and 0 < i < len(name) - 1:
            refused = not _joiner_fits(name[i - 1], name[i + 1], char)
        if refused:
            raise ProblemError(
                400,
                code,
                f"{what} holds U+{ord(char):04X}, a character that is invisible or changes how"
                " text reads (a control, zero-width or direction character).",
                character=f"U+{ord(char):04X}",
            )
    return name
