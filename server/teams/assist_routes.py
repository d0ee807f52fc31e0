"""Friend help (`/v1/assists`, the share link `/a/{id}`) and friend quests (`/v1/friend-quests`)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.params import Parameter

from server.context import Context
from server.teams import assists, friend_quests
from server.teams.assist_schemas import (
    AssistBody,
    AssistOut,
    AssistsOut,
    FriendQuestIn,
    FriendQuestOut,
    FriendQuestsOut,
    HelpIn,
    HelpOut,
)

_AssistId = Annotated[str, Parameter(max_length=64, description="the request's id, as its link names it")]
_PairId = Annotated[str, Parameter(max_length=64, description="the invitation's id")]


def _address(request: Request[Any, Any, Any]) -> str | None:
    return request.client.host if request.client else None


class AssistsController(Controller):
    """Friend help. A request completes only with friends' helps: nothing can be bought to need
    fewer or to go faster, and no route does so."""

    path = "/v1/assists"
    tags = ["friend help"]

    @post("/", operation_id="askForHelp", status_code=201)
    async def ask(
        self, ctx: Context, current_member: str, request: Request[Any, Any, Any], data: AssistBody
    ) -> AssistOut:
        """Ask friends for help on a quest step (`quest_id`, `step_id` for a chain's step), a team
        goal (`goal_id`) or a draw ticket (`ticket: true`): one open request per target. The answer
        says exactly how many helps it needs (`helps_left`), until when, and the link to share.
        Only friends' helps count: nothing can be bought to speed it up."""
        return await assists.ask(
            ctx,
            current_member,
            quest_id=data.quest_id,
            step_id=data.step_id,
            goal_id=data.goal_id,
            ticket=data.ticket,
            signals={"device_id": data.device_id, "ip": _address(request)},
        )

    @get("/", operation_id="listMyAssists")
    async def mine(self, ctx: Context, current_member: str) -> AssistsOut:
        """The member's requests for help, newest first (the last 50), each with the helps held
        for review (`pending_helps`: not counted until a manager clears them)."""
        return AssistsOut(await assists.my_assists(ctx, current_member))

    @get("/{assist_id:str}", operation_id="getAssist")
    async def get_one(self, ctx: Context, current_member: str, assist_id: _AssistId) -> AssistOut:
        """A request for help, for any member with its id or link: what it is for, who asks (by
        handle), the helps needed and left, and the helpers (by handle). Its asker also sees the
        helps held for review."""
        return await assists.get_assist(ctx, assist_id, current_member)

    @post("/{assist_id:str}/help", operation_id="helpFriend", status_code=200)
    async def help_friend(
        self,
        ctx: Context,
        current_member: str,
        request: Request[Any, Any, Any],
        assist_id: _AssistId,
        data: HelpIn,
    ) -> HelpOut:
        """Help a friend, once per request and up to the daily number of helps (a friend who is
        not a member yet joins first: their first member token makes them one). A counted help
        pays the helper a small reward and moves the asker on; a help that shares a device, an
        address or a payment means with the asker, or comes from a burst of new accounts, is
        `held` for review: neither counted nor paid. The body is `{}`, or names the app's device."""
        return await assists.help_friend(
            ctx,
            assist_id,
            current_member,
            signals={"device_id": data.device_id, "ip": _address(request)},
        )


class AssistPageController(Controller):
    path = "/a"
    tags = ["friend help"]

    @get("/{assist_id:str}", operation_id="assistSharePage", media_type=MediaType.HTML)
    async def page(self, ctx: Context, assist_id: _AssistId) -> Response[str]:
        """The page a shared call for help opens: a preview card for chat apps and social networks,
        what the friend asks and the way into the app (public)."""
        status, html = await assists.share_page(ctx, assist_id)
        return Response(
            html, status_code=status, media_type=MediaType.HTML, headers={"Cache-Control": "no-store"}
        )


class FriendQuestsController(Controller):
    path = "/v1/friend-quests"
    tags = ["friend quests"]

    @get("/", operation_id="listFriendQuests")
    async def mine(self, ctx: Context, current_member: str) -> FriendQuestsOut:
        """The friend quests, the member's pairings of this period (one shared progress bar, the
        target and each member's contribution) and the invitations addressed to them."""
        return await friend_quests.my_friend_quests(ctx, current_member)

    @post("/", operation_id="inviteToFriendQuest", status_code=201)
    async def invite(self, ctx: Context, current_member: str, data: FriendQuestIn) -> FriendQuestOut:
        """Invite a friend to a friend quest for this period: a friend by `friend_id`, any member by
        `handle`, or nobody named (whoever has the invitation's id may accept). One pairing per
        quest and period per member."""
        return await friend_quests.invite(
            ctx, current_member, data.quest_id, friend_id=data.friend_id, handle=data.handle
        )

    @post("/{pair_id:str}/accept", operation_id="acceptFriendQuest", status_code=200)
    async def accept(self, ctx: Context, current_member: str, pair_id: _PairId) -> FriendQuestOut:
        """Accept an invitation: from now on both members' events count to one total."""
        return await friend_quests.accept(ctx, current_member, pair_id)

    @post("/{pair_id:str}/decline", operation_id="declineFriendQuest", status_code=200)
    async def decline(self, ctx: Context, current_member: str, pair_id: _PairId) -> FriendQuestOut:
        """Decline an invitation (the invited friend), or withdraw it (the inviter), before it is accepted."""
        return await friend_quests.decline(ctx, current_member, pair_id)
