"""Team goals for the tests: content of a test's own (kinds and goals added to the repository's
teams.yaml), teams and members put in place with SQL, events through the real dispatch."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import yaml

from server.content.loader import ContentStore, read_files, validate_files
from server.context import Context
from server.ledger.models import LedgerEntry
from server.members import service as members
from server.members.models import Member
from server.members.service import new_handle
from server.teams import goals as team_goals
from server.teams.models import Team, TeamGoalMilestone
from tests.support import ROOT, pinned, unique
from tests.tasks.quest_support import deliver, event

__all__ = ["deliver", "event"]

# Beside the demo's kinds: a large open kind, and a community kind of the tests' own.
GOAL_KINDS: list[dict[str, Any]] = [
    {"id": "crew", "name": "Crews", "policy": "open", "max_members": 500},
    {"id": "all-tests", "name": "Everyone (tests)", "policy": "community"},
]


def goals_files(goals: list[dict[str, Any]]) -> dict[str, str]:
    """The repository's content files with the test kinds and these goals as the teams' goals."""
    files = read_files(ROOT / "content")
    teams = yaml.safe_load(files["teams.yaml"])
    teams["kinds"] = [*teams.get("kinds", []), *GOAL_KINDS]
    teams["goals"] = goals
    files["teams.yaml"] = yaml.safe_dump(teams, sort_keys=False)
    return files


def goals_store(goals: list[dict[str, Any]]) -> ContentStore:
    store, issues = validate_files(goals_files(goals), "test")
    assert not issues, "\n".join(map(str, issues))
    return store


@contextlib.contextmanager
def serving_goals(ctx: Context, goals: list[dict[str, Any]]) -> Iterator[ContentStore]:
    before = ctx.content
    ctx.content = pinned(ctx, goals_store(goals))
    try:
        yield ctx.content
    finally:
        ctx.content = before


async def new_members(ctx: Context, n: int, created_at: datetime, prefix: str = "gm") -> list[str]:
    """`n` members, made directly in SQL (a bulk load), first seen at `created_at`."""
    base = unique(prefix)
    ids = [f"{base}-{i:05d}" for i in range(n)]
    async with ctx.db.transaction() as session:
        for start in range(0, n, 2000):
            await session.execute(
                sa.insert(Member.__table__),
                [
                    dict(
                        id=m,
                        handle=new_handle(),
                        timezone="UTC",
                        created_at=created_at,
                        updated_at=created_at,
                    )
                    for m in ids[start : start + 2000]
                ],
            )
    return ids


async def new_team(
    ctx: Context, kind: str, member_ids: list[str], joined_at: datetime, team_id: str | None = None
) -> str:
    """A team of `kind` with these members, each placed at `joined_at`."""
    team_id = team_id or unique("team")
    async with ctx.db.transaction() as session:
        session.add(
            Team(
                id=team_id,
                kind=kind,
                name=team_id[:60],
                name_key=team_id[:60],
                created_by="brand",
                size=len(member_ids),
                created_at=joined_at,
                updated_at=joined_at,
            )
        )
        await session.flush()
        for m in member_ids:
            await members.place(ctx, session, m, team_id, kind, "member", joined_at)
    return team_id


async def place(ctx: Context, member_id: str, team_id: str, kind: str, at: datetime) -> None:
    async with ctx.db.transaction() as session:
        await members.place(ctx, session, member_id, team_id, kind, "member", at)


async def unplace(ctx: Context, member_id: str, team_id: str) -> None:
    async with ctx.db.transaction() as session:
        await members.unplace(ctx, session, member_id, team_id)


async def settle(ctx: Context, within: float = 120.0) -> None:
    """Finish every payment (here, or by the job of the served app) and send what waits in the
    outbox."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        await team_goals.pay_due(ctx)
        async with ctx.db.session() as session:
            paying = (
                await session.execute(
                    sa.select(sa.func.count())
                    .select_from(TeamGoalMilestone)
                    .where(TeamGoalMilestone.status == "paying")  # type: ignore[arg-type]
                )
            ).scalar_one()
        if not paying:
            break
        assert asyncio.get_running_loop().time() < deadline, f"{paying} milestone(s) still paying"
        await asyncio.sleep(0.1)
    await ctx.outbox.flush()


async def paid(ctx: Context, member_ids: list[str], goal_id: str) -> dict[str, list[tuple[str, str, int]]]:
    """Each member's team goal entries for a goal: (key, currency, amount)."""
    found: dict[str, list[tuple[str, str, int]]] = {m: [] for m in member_ids}
    async with ctx.db.session() as session:
        for start in range(0, len(member_ids), 1000):
            rows = await session.execute(
                sa.select(
                    LedgerEntry.member_id,
                    LedgerEntry.idempotency_key,
                    LedgerEntry.currency,
                    LedgerEntry.amount,
                )
                .where(
                    LedgerEntry.member_id.in_(member_ids[start : start + 1000]),  # type: ignore[attr-defined]
                    LedgerEntry.source == "team_goal",
                    LedgerEntry.idempotency_key.like(f"team:{goal_id}:%"),  # type: ignore[attr-defined]
                )
                .order_by(LedgerEntry.id)
            )
            for m, key, currency, amount in rows:
                found[m].append((key, currency, amount))
    return found


def points(entries: list[tuple[str, str, int]]) -> int:
    return sum(a for _, c, a in entries if c == "points")
