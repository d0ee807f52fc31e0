"""content/referrals.yaml: every mistake named with its file, line and field; defaults without it."""

from __future__ import annotations

import pytest

from server.app import install
from server.content.loader import read_files, validate_files
from server.referrals.content import ReferralsContent, program
from server.referrals.service import blocked_word
from tests.support import ROOT

install()  # the kinds and the server's own event types, as a server has them
BASE = (ROOT / "content" / "referrals.yaml").read_text()


def issues_with(text: str | None) -> list[tuple[str, int, str, str]]:
    files = read_files(ROOT / "content")
    if text is None:
        files.pop("referrals.yaml")
    else:
        files["referrals.yaml"] = text
    _, issues = validate_files(files, "test")
    return [(i.file, i.line, i.field, i.message) for i in issues]


def test_the_repository_content_is_valid_and_absent_file_means_defaults():
    assert issues_with(BASE) == []
    assert issues_with(None) == []
    files = read_files(ROOT / "content")
    files.pop("referrals.yaml")
    store, _ = validate_files(files, "test")

    class Ctx:
        content = store

    defaults = program(Ctx())
    assert defaults == ReferralsContent()
    assert defaults.conversion.event == "purchase" and [m.count for m in defaults.milestones] == [3, 10]


@pytest.mark.parametrize(
    ("old", "new", "field", "says"),
    [
        (
            "  event: purchase         #",
            "  event: no_such_event    #",
            "conversion.event",
            "unknown event type",
        ),
        ('  where: "amount >= 10"', '  where: "colour == 2"', "conversion", ""),
        ("board: monthly-referrals", "board: weekly-points", "board", "does not count `referral.converted`"),
        ("board: monthly-referrals", "board: nowhere", "board", "unknown leaderboard"),
        (
            'title: "{referrer} invited you to Acme Rewards"',
            'title: "{friend} invited you"',
            "landing.title",
            "{referrer}",
        ),
        ("  - {count: 3, name: Connector", "  - {count: 30, name: Connector", "milestones", "rising count"),
        (
            "friend_reward: {points: 250}",
            "friend_reward: {points: 250, badge: shopper}",
            "friend_reward.badge",
            "manual",
        ),
        (
            "friend_reward: {points: 250}",
            "friend_reward: {points: 250, badge: nope}",
            "friend_reward.badge",
            "unknown badge",
        ),
        ("  factor: 1.5", "  factor: 0.5", "boost.factor", ""),
        ("blocklist: [admin,", "blocklist: [Admin!,", "vanity.blocklist", "lower-case"),
    ],
)
def test_mistakes_are_named(old, new, field, says):
    assert old in BASE
    found = issues_with(BASE.replace(old, new, 1))
    assert found, "expected a problem"
    assert all(f.endswith("referrals.yaml") and line > 0 for f, line, _, _ in found), found
    assert any(fld.startswith(field) and says in msg for _, _, fld, msg in found), found


def test_blocked_words_with_look_alikes_and_the_allowlist():
    content = ReferralsContent.model_validate(
        {"vanity": {"blocklist": ["shit", "ass", "rape"], "allowlist": ["grape", "classic"]}}
    )
    assert blocked_word(content, "sh1t-happens") == "shit"
    assert blocked_word(content, "B4DASS") == "ass"
    assert blocked_word(content, "GRAPE-JUICE") is None
    assert blocked_word(content, "classic-anna") is None
    assert blocked_word(content, "drapes") == "rape"  # not allowed: only the listed words are
    assert blocked_word(content, "Anna-Runs") is None
