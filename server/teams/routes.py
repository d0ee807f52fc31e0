"""The teams API: members find, make, join and leave teams and their captains lead them (member
token); the brand's systems make assigned teams and place members (API key); invite links open
a public page (`/t/{code}`)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, MediaType, Request, Response, delete, get, post, put
from litestar.openapi import ResponseSpec
from litestar.params import Parameter

from server.auth import ApiClient, member_from_token, provide_api_client
from server.context import Context
from server.members.schemas import MemberIdPath
from server.teams import invites, service
from server.teams.schemas import (
    TEAM_ID_PATTERN,
    AssignedTeamIn,
    CaptainIn,
    FeedOut,
    HandlePath,
    InviteIn,
    InviteOut,
    JoinIn,
    JoinOut,
    JoinRequestOut,
    JoinRequestsOut,
    KindPath,
    MyTeamOut,
    MyTeamsOut,
    PersonOut,
    PlacementIn,
    PlacementOut,
    PostOut,
    TeamDetailOut,
    TeamIdPath,
    TeamIn,
    TeamInviteOut,
    TeamMemberOut,
    TeamOut,
    TeamsOut,
    UnplacedOut,
    placement_out,
    team_out,
)

_Limit = Annotated[int, Parameter(ge=1, le=100)]
_Cursor = Annotated[str | None, Parameter(max_length=400)]
_PostCursor = Annotated[str | None, Parameter(pattern=r"^[1-9][0-9]{0,17}$")]
_Code = Annotated[str, Parameter(max_length=64)]


def person_out(person: service.Person, viewer: str | None) -> PersonOut:
    """A member as the caller may see them: by handle; the id on the caller's own row, and on
    every row for a brand system (`viewer` None)."""
    me = person.member_id == viewer
    return PersonOut(
        person.handle, person.display_name, me, person.member_id if me or viewer is None else None
    )


def _row_out(row: service.RosterRow, viewer: str | None) -> TeamMemberOut:
    me = row.person.member_id == viewer
    return TeamMemberOut(
        handle=row.person.handle,
        display_name=row.person.display_name,
        role=row.role,
        joined_at=row.joined_at,
        is_me=me,
        member_id=row.person.member_id if me or viewer is None else None,
    )


def join_out(joined: service.Joined) -> JoinOut:
    return JoinOut(team_out(joined.team), joined.status, joined.role)


async def _viewer(ctx: Context, request: Request[Any, Any, Any]) -> str | None:
    """The member calling with a token, or None for a brand system calling with `X-Api-Key`."""
    if request.headers.get("x-api-key"):
        await provide_api_client(ctx, request)
        return None
    return await member_from_token(ctx, request)


class TeamsController(Controller):
    """Teams as members play them (`Authorization: Bearer <member token>`), and the assigned
    teams the brand's systems make (`X-Api-Key`): one controller, as a path has one handler per
    method."""

    path = "/v1"
    tags = ["teams"]

    @get("/teams", operation_id="listTeams")
    async def list_teams(
        self,
        ctx: Context,
        current_member: str,
        kind: Annotated[str | None, Parameter(max_length=64)] = None,
        q: Annotated[str | None, Parameter(max_length=60, description="a part of the name, any case")] = None,
        limit: _Limit = 20,
        cursor: _Cursor = None,
    ) -> TeamsOut:
        """Teams members may join by themselves (open and invite-only kinds), by name: `kind`
        keeps one kind, `q` finds a part of the name; `cursor` is the `next_cursor` of the page
        before."""
        teams, following = await service.list_teams(ctx, kind_id=kind, q=q, limit=limit, cursor=cursor)
        return TeamsOut([team_out(t) for t in teams], following)

    @post("/teams", operation_id="createTeam", status_code=201)
    async def create(self, ctx: Context, current_member: str, data: TeamIn) -> TeamOut:
        """Make a team of a kind members make; its maker is its captain. Names are unique within
        a kind, whatever their case or spacing."""
        return team_out(
            await service.create_team(ctx, current_member, data.kind, data.name, data.description)
        )

    @get("/teams/me", operation_id="getMyTeams")
    async def mine(self, ctx: Context, current_member: str) -> MyTeamsOut:
        """The member's teams with their role, and the community teams every member is in."""
        found = await service.my_teams(ctx, current_member)
        return MyTeamsOut([MyTeamOut(team_out(t.team), t.role, t.joined_at) for t in found])

    @get("/teams/{team_id:str}", operation_id="getTeam")
    async def get_one(
        self, ctx: Context, request: Request[Any, Any, Any], team_id: TeamIdPath
    ) -> TeamDetailOut:
        """A team with its members, longest in the team first (a member token, or a brand
        system's `X-Api-Key`). A community team (every member) lists nobody."""
        viewer = await _viewer(ctx, request)
        detail = await service.team_detail(ctx, team_id, viewer)
        rows = [_row_out(r, viewer) for r in detail.roster] if detail.roster is not None else None
        captain = next((r for r in rows or [] if r.role == "captain"), None)
        return TeamDetailOut(team_out(detail.team), captain, rows, detail.my_role)

    @put(
        "/teams/{team_id:str}",
        operation_id="putTeam",
        status_code=200,
        response_description="Updated",
        responses={201: ResponseSpec(TeamOut, description="Created")},
    )
    async def put_team(
        self, ctx: Context, api_client: ApiClient, team_id: TeamIdPath, data: AssignedTeamIn
    ) -> Response[TeamOut]:
        """Create or update an assigned team (a store, a region) under the brand's own id."""
        team, created = await service.put_team(
            ctx, team_id, data.kind, data.name, data.description, actor=api_client.actor
        )
        return Response(team_out(team), status_code=201 if created else 200)

    @post(
        "/teams/{team_id:str}/join",
        operation_id="joinTeam",
        status_code=200,
        response_description="Joined (or a member already)",
        responses={202: ResponseSpec(JoinOut, description="Asked: the captain answers (status `requested`)")},
    )
    async def join(
        self, ctx: Context, current_member: str, team_id: TeamIdPath, data: JoinIn | None = None
    ) -> Response[JoinOut]:
        """Join a team: an open one at once; an invite-only one with an `invite` code, or else by
        asking its captain (202, status `requested`)."""
        joined = await service.join(ctx, current_member, team_id, data.invite if data else None)
        return Response(join_out(joined), status_code=202 if joined.status == "requested" else 200)

    @post("/teams/{team_id:str}/leave", operation_id="leaveTeam", status_code=200)
    async def leave(self, ctx: Context, current_member: str, team_id: TeamIdPath) -> TeamOut:
        """Leave a team; a captain who leaves hands the captaincy to the member longest in it."""
        return team_out(await service.leave(ctx, current_member, team_id))

    @post("/teams/{team_id:str}/invites", operation_id="createTeamInvite", status_code=201)
    async def invite(
        self, ctx: Context, current_member: str, team_id: TeamIdPath, data: InviteIn | None = None
    ) -> InviteOut:
        """An invite link to the captain's team (`/t/{code}`), good for `days` and `uses` joins
        (the content's defaults for what is not given)."""
        made = await service.new_invite(
            ctx, current_member, team_id, days=data.days if data else None, uses=data.uses if data else None
        )
        return InviteOut(
            made.code, invites.link_for(ctx, made.code), made.team_id, made.expires_at, made.uses_left
        )

    @get("/teams/{team_id:str}/requests", operation_id="listTeamRequests")
    async def requests(self, ctx: Context, current_member: str, team_id: TeamIdPath) -> JoinRequestsOut:
        """The requests to join the captain's team, oldest first."""
        found = await service.join_requests(ctx, current_member, team_id)
        return JoinRequestsOut(
            [JoinRequestOut(person_out(r.person, current_member), r.requested_at) for r in found]
        )

    @post(
        "/teams/{team_id:str}/requests/{handle:str}/accept", operation_id="acceptTeamRequest", status_code=200
    )
    async def accept(
        self, ctx: Context, current_member: str, team_id: TeamIdPath, handle: HandlePath
    ) -> JoinOut:
        """The captain lets the member with this handle in."""
        return join_out(await service.answer_request(ctx, current_member, team_id, handle, accept=True))

    @post(
        "/teams/{team_id:str}/requests/{handle:str}/decline",
        operation_id="declineTeamRequest",
        status_code=200,
    )
    async def decline(
        self, ctx: Context, current_member: str, team_id: TeamIdPath, handle: HandlePath
    ) -> JoinOut:
        """The captain turns the request of the member with this handle down."""
        return join_out(await service.answer_request(ctx, current_member, team_id, handle, accept=False))

    @delete("/teams/{team_id:str}/members/{handle:str}", operation_id="removeTeamMember", status_code=200)
    async def remove(
        self, ctx: Context, current_member: str, team_id: TeamIdPath, handle: HandlePath
    ) -> TeamOut:
        """The captain takes the member with this handle out of the team."""
        return team_out(await service.remove_from_team(ctx, current_member, team_id, handle))

    @post("/teams/{team_id:str}/captain", operation_id="handOverCaptaincy", status_code=200)
    async def captain(
        self, ctx: Context, current_member: str, team_id: TeamIdPath, data: CaptainIn
    ) -> TeamOut:
        """The captain makes another member of the team captain (by handle)."""
        return team_out(await service.hand_over(ctx, current_member, team_id, data.handle))

    @get("/team-invites/{code:str}", operation_id="getTeamInvite")
    async def read_invite(self, ctx: Context, current_member: str, code: _Code) -> TeamInviteOut:
        """The team an invite code opens (for an app that got the code from its page or from a
        friend): join it with `POST /v1/teams/{team_id}/join` `{invite}`."""
        found, team = await service.invite_of(ctx, code)
        return TeamInviteOut(
            found.code, invites.link_for(ctx, found.code), team_out(team), found.expires_at, found.uses_left
        )

    @get("/teams/{team_id:str}/feed", operation_id="getTeamFeed")
    async def feed(
        self,
        ctx: Context,
        request: Request[Any, Any, Any],
        team_id: TeamIdPath,
        limit: _Limit = 50,
        cursor: _PostCursor = None,
    ) -> FeedOut:
        """The team's posts, newest first: joins, leaves, captains, contributions, milestones. For
        its members (a community team's: every member's) and the brand's systems."""
        viewer = await _viewer(ctx, request)
        posts, following = await service.feed(
            ctx, team_id, viewer, before=int(cursor) if cursor else None, limit=limit
        )
        return FeedOut(
            [
                PostOut(p.id or 0, p.type, p.at, person_out(who, viewer) if who else None, p.data)
                for p, who in posts
            ],
            str(following) if following else None,
        )


class BrandTeamsController(Controller):
    """Members' places in teams, by the brand's systems (`X-Api-Key`)."""

    path = "/v1"
    tags = ["teams"]

    @put("/members/{member_id:str}/teams/{kind:str}", operation_id="placeMember", status_code=200)
    async def place(
        self, ctx: Context, api_client: ApiClient, member_id: MemberIdPath, kind: KindPath, data: PlacementIn
    ) -> PlacementOut:
        """Put a member in a team of a kind, out of their team of that kind (one-team kinds)."""
        placed = await service.place_member(ctx, member_id, kind, data.team_id, actor=api_client.actor)
        return placement_out(placed)

    @delete("/members/{member_id:str}/teams/{kind:str}", operation_id="unplaceMember", status_code=200)
    async def unplace(
        self,
        ctx: Context,
        api_client: ApiClient,
        member_id: MemberIdPath,
        kind: KindPath,
        team_id: Annotated[
            str | None,
            Parameter(pattern=TEAM_ID_PATTERN, max_length=64, description="only this team of the kind"),
        ] = None,
    ) -> UnplacedOut:
        """Take a member out of their team(s) of a kind; `left` lists them (empty: nothing to do)."""
        left = await service.unplace_member(ctx, member_id, kind, team_id, actor=api_client.actor)
        return UnplacedOut(member_id, kind, left)


class TeamInviteController(Controller):
    path = "/t"
    tags = ["teams"]

    @get("/{code:str}", operation_id="teamInvitePage", media_type=MediaType.HTML)
    async def page(self, ctx: Context, code: _Code) -> Response[str]:
        """The page an invite link opens: a preview card for chat apps and social networks, who
        invites to which team, the code and the way into the app (public)."""
        page = await invites.invite_page(ctx, code)
        return Response(
            page.html,
            status_code=page.status,
            media_type=MediaType.HTML,
            headers={"Cache-Control": "no-store"},
        )
