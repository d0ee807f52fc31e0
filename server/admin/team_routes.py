"""The managers' teams (`/v1/admin/...`, manager bearer token, editor role): assigned teams and
members' places, through the same teams service as the brand's API, audited with the manager."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, delete, put
from litestar.openapi import ResponseSpec
from litestar.params import Parameter

from server.admin.models import Manager
from server.admin.service import require_role
from server.context import Context
from server.members.schemas import MemberIdPath
from server.teams import service as teams
from server.teams.schemas import (
    TEAM_ID_PATTERN,
    AssignedTeamIn,
    KindPath,
    PlacementIn,
    PlacementOut,
    TeamIdPath,
    TeamOut,
    UnplacedOut,
    placement_out,
    team_out,
)


class AdminTeamsController(Controller):
    path = "/v1/admin"
    tags = ["teams", "admin"]

    @put(
        "/teams/{team_id:str}",
        operation_id="adminPutTeam",
        status_code=200,
        response_description="Updated",
        responses={201: ResponseSpec(TeamOut, description="Created")},
    )
    async def put_team(
        self, ctx: Context, manager: Manager, team_id: TeamIdPath, data: AssignedTeamIn
    ) -> Response[TeamOut]:
        """Create or update an assigned team (editor role), audited as `team.create` / `team.update`."""
        require_role(manager, "editor")
        team, created = await teams.put_team(
            ctx, team_id, data.kind, data.name, data.description, actor=manager.actor
        )
        return Response(team_out(team), status_code=201 if created else 200)

    @put("/members/{member_id:str}/teams/{kind:str}", operation_id="adminPlaceMember", status_code=200)
    async def place(
        self, ctx: Context, manager: Manager, member_id: MemberIdPath, kind: KindPath, data: PlacementIn
    ) -> PlacementOut:
        """Put a member in a team of a kind (editor role), audited as `team.place`."""
        require_role(manager, "editor")
        return placement_out(
            await teams.place_member(ctx, member_id, kind, data.team_id, actor=manager.actor)
        )

    @delete("/members/{member_id:str}/teams/{kind:str}", operation_id="adminUnplaceMember", status_code=200)
    async def unplace(
        self,
        ctx: Context,
        manager: Manager,
        member_id: MemberIdPath,
        kind: KindPath,
        team_id: Annotated[
            str | None,
            Parameter(pattern=TEAM_ID_PATTERN, max_length=64, description="only this team of the kind"),
        ] = None,
    ) -> UnplacedOut:
        """Take a member out of their team(s) of a kind (editor role), audited as `team.unplace`."""
        require_role(manager, "editor")
        left = await teams.unplace_member(ctx, member_id, kind, team_id, actor=manager.actor)
        return UnplacedOut(member_id, kind, left)
