"""The team goals' routes: a team's goals as one of its members sees them."""

from __future__ import annotations

from litestar import Controller, get

from server.context import Context
from server.teams.goal_schemas import TeamGoalsOut
from server.teams.goals import team_goals
from server.teams.schemas import TeamIdPath
from server.teams.service import check_team_id


class TeamGoalsController(Controller):
    path = "/v1/teams"
    tags = ["teams"]

    @get("/{team_id:str}/goals", operation_id="getTeamGoals")
    async def get_team_goals(self, ctx: Context, current_member: str, team_id: TeamIdPath) -> TeamGoalsOut:
        """The team's goals now: progress, milestones with what I earned (or why not), my
        contribution, share and rank, and each member's contribution (a community team: the top
        ten and me). For the team's members; a community team's for every member."""
        return await team_goals(ctx, current_member, check_team_id(team_id))
