"""Content of a test's own for badges, tiers and earning rules, on the repository's other content."""

from __future__ import annotations

from server.content.loader import ContentStore, read_files, validate_files
from server.ledger import service as ledger
from tests.support import ROOT
from tests.tasks.quest_support import without_quest_help

QUESTS = """
quests:
  - id: starter
    title: Two orders
    goal: {event: purchase, count: 2}
    reward: {points: 5}
  - id: gift
    title: One review
    goal: {event: review_posted, count: 1}
    reward: {badge: founder}
"""


def files_with(
    badges: str | None = None, *, quests: str = QUESTS, tiers: str | None = None, earning: str | None = None
) -> dict[str, str]:
    """The repository's content, with the badges (and quests, tiers, earning rules) replaced."""
    files = {
        k: v for k, v in read_files(ROOT / "content").items() if not k.startswith(("quests/", "badges/"))
    }
    without_quest_help(files)
    files["quests/test.yaml"] = quests
    if badges is not None:
        files["badges/test.yaml"] = badges
    if tiers is not None:
        files["tiers.yaml"] = tiers
    if earning is not None:
        files["earning.yaml"] = earning
    return files


def store_with(badges: str | None = None, **kw: str) -> ContentStore:
    store, issues = validate_files(files_with(badges, **kw), "test")
    assert not issues, "\n".join(map(str, issues))
    return store


def issues_of(badges: str | None = None, **kw: str) -> list[tuple[str, int, str, str]]:
    _, issues = validate_files(files_with(badges, **kw), "test")
    return [(i.file, i.line, i.field, i.message) for i in issues]


async def points(ctx, member_id: str) -> dict[str, int]:
    async with ctx.db.session() as session:
        return await ledger.balances(session, member_id)
