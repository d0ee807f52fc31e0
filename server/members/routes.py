from __future__ import annotations

from litestar import Controller, Response, get, put
from litestar.openapi import ResponseSpec

from server.auth import ApiClient
from server.checkins.service import current_streak
from server.context import Context
from server.errors import not_found
from server.ledger.service import balances
from server.members.schemas import FriendsIn, FriendsOut, MemberIdPath, MemberIn, MemberOut, MeOut
from server.members.service import (
    check_member_id,
    friends_of,
    get_member,
    set_friends,
    tier_of,
    to_out,
    upsert_member,
)
from server.teams import service as teams  # `team_id` places the member in a team of the brand's kind


class MembersController(Controller):
    path = "/v1"
    tags = ["members"]

    @put(
        "/members/{member_id:str}",
        operation_id="upsertMember",
        status_code=200,
        response_description="Updated",
        responses={201: ResponseSpec(MemberOut, description="Created")},
    )
    async def upsert(
        self, ctx: Context, api_client: ApiClient, member_id: MemberIdPath, data: MemberIn
    ) -> Response[MemberOut]:
        """Create or update a member's profile (brand systems)."""
        async with ctx.db.transaction() as session:
            member, created = await upsert_member(ctx, session, member_id, data)
            if data.team_id is not None:
                await teams.place_brand_team(ctx, session, member_id, data.team_id)
            team_id = await teams.brand_team_of(ctx, session, member_id)
        return Response(to_out(ctx, member, team_id), status_code=201 if created else 200)

    @get("/members/{member_id:str}", operation_id="getMember")
    async def get_one(self, ctx: Context, api_client: ApiClient, member_id: MemberIdPath) -> MemberOut:
        """A member's profile (brand systems)."""
        check_member_id(member_id)
        async with ctx.db.session() as session:
            member = await get_member(session, member_id)
            if member is None:
                raise not_found("member", member_id)
            team_id = await teams.brand_team_of(ctx, session, member_id)
        return to_out(ctx, member, team_id)

    @put("/members/{member_id:str}/friends", operation_id="setFriends", status_code=200)
    async def put_friends(
        self, ctx: Context, api_client: ApiClient, member_id: MemberIdPath, data: FriendsIn
    ) -> FriendsOut:
        """Replace a member's friend list (brand systems); the member must exist, friends need not."""
        async with ctx.db.transaction() as session:
            friends = await set_friends(ctx, session, member_id, data.friends)
        return FriendsOut(member_id=member_id, friends=friends)

    @get("/members/{member_id:str}/friends", operation_id="getFriends")
    async def get_friends(self, ctx: Context, api_client: ApiClient, member_id: MemberIdPath) -> FriendsOut:
        """A member's friend list, sorted (brand systems)."""
        check_member_id(member_id)
        async with ctx.db.session() as session:
            if await get_member(session, member_id) is None:
                raise not_found("member", member_id)
            friends = await friends_of(session, member_id)
        return FriendsOut(member_id=member_id, friends=friends)

    @get("/me", operation_id="getMe")
    async def me(self, ctx: Context, current_member: str) -> MeOut:
        """The calling member: profile and balances."""
        async with ctx.db.session() as session:
            member = await get_member(session, current_member)
            money = await balances(session, current_member)
            streak = await current_streak(session, current_member)
        assert member is not None
        return MeOut(
            member_id=member.id,
            handle=member.handle,
            display_name=member.display_name,
            timezone=member.timezone,
            tier=tier_of(ctx, member),
            points=money["points"],
            growth=money["growth"],
            streak=streak,
            birthday=member.birthday,
            signed_up_at=member.signed_up_at,
            tickets=money["tickets"],
        )
