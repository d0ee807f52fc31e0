"""The text rules every stored string follows, and the cleaning of names that people see."""

from __future__ import annotations

import msgspec
import pytest

from server.errors import ProblemError
from server.text import TEXT_PATTERN, Text, clean_name


class _Body(msgspec.Struct):
    reason: Text


@pytest.mark.parametrize(
    "text", ["a\x00b", "\x00", "line\nbreak", "ends with a newline\n", "\ttab", "del\x7f", "c1\x85x", "\x9f"]
)
def test_text_refuses_control_characters(text: str) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(msgspec.json.encode({"reason": text}), type=_Body)


@pytest.mark.parametrize(
    "text", ["", "plain", "José Ñandú", "李小龙", "👩‍💻 and ❤️‍🔥", "a\u00a0b", 'quote " and \\']
)
def test_text_takes_any_other_text(text: str) -> None:
    assert msgspec.json.decode(msgspec.json.encode({"reason": text}), type=_Body).reason == text


def test_the_pattern_means_the_same_in_ecmascript() -> None:
    """No `$`, `\\Z` or `\\A`: the OpenAPI description carries it to clients' validators as is."""
    for token in ("$", "\\Z", "\\A", "\\z"):
        assert token not in TEXT_PATTERN


def name(value: str) -> str:
    return clean_name(value, code="invalid_display_name", what="A display name")


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("  Ana  ", "Ana"),
        ("Jose\u0301", "José"),  # decomposed: NFC composes it
        ("Ana\n", "Ana"),  # trimmed like any surrounding space
        ("李小龙", "李小龙"),
        ("👩‍💻 Ana", "👩‍💻 Ana"),  # a zero-width joiner inside an emoji sequence
        ("❤️‍🔥 Bo", "❤️‍🔥 Bo"),  # after an emoji presentation selector
        ("👨🏽‍🚀", "👨🏽‍🚀"),  # after a skin tone
        ("می‌خواهم", "می‌خواهم"),  # Persian needs its zero-width non-joiner
        ("क्‍ष", "क्‍ष"),  # and Devanagari its joiner
        ("Ana 🇫🇷", "Ana 🇫🇷"),
        ("a\u00a0b", "a\u00a0b"),
    ],
)
def test_a_name_is_normalised_and_trimmed(given: str, kept: str) -> None:
    assert name(given) == kept


@pytest.mark.parametrize(
    "given",
    [
        "",
        "   ",
        "x" * 101,
        "Bo\x07b",
        "Ana\x00",
        "tab\tname",
        "line\nname",
        "Ad\u200bmin",  # zero-width space
        "ad\u200dmin",  # a joiner between Latin letters only hides a difference
        "ad\u200cmin",
        "\u200dAna",
        "Ana\u200d",
        "\ufeffAna",  # byte-order mark
        "Ana\u202egnp.exe",  # right-to-left override
        "Ana\u2066x\u2069",  # isolates
        "\u200fAna",  # right-to-left mark
        "\u061cAna",  # Arabic letter mark
        "a\u2028b",  # line separator
        "\u3164",  # a Hangul filler: a blank letter
        "Ana\ue000",  # private use
        "Ana\U000e0041",  # a tag character
    ],
)
def test_a_name_that_is_empty_invisible_or_spoofing_is_refused(given: str) -> None:
    with pytest.raises(ProblemError) as caught:
        name(given)
    assert caught.value.status == 400 and caught.value.code == "invalid_display_name"
