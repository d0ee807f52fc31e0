"""What the boards that rank teams show of a team: its name, kind and size (the boards sit below
the teams, so `server.app` hands them this)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.leaderboards.service import TeamFacts
from server.teams.service import teams_by_id

if TYPE_CHECKING:
    from server.context import Context


async def team_facts(ctx: Context, team_ids: list[str]) -> dict[str, TeamFacts]:
    """The teams known among `team_ids`, in one statement."""
    async with ctx.db.session() as session:
        found = await teams_by_id(session, team_ids)
    return {t.id: TeamFacts(t.name, t.kind, t.size) for t in found.values()}
