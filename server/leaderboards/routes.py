from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import Parameter, QueryParameter

from server.auth import Reader
from server.context import Context
from server.db import utcnow
from server.leaderboards import standings
from server.leaderboards.periods import status_of
from server.leaderboards.schemas import BoardsOut, EntryOut, MyStandingOut, PeriodOut, StandingsOut
from server.leaderboards.service import list_boards
from server.leaderboards.standings import MAX_AROUND, MAX_LIMIT

_Period = Annotated[str | None, Parameter(max_length=64)]
# `scope` is the name of the ASGI scope to Litestar: the query parameter is read under another name.
_Scope = Annotated[str | None, QueryParameter(name="scope", max_length=100)]


def _period(page: standings.Page) -> PeriodOut:
    status = status_of(page.span, utcnow(), page.archived)
    return PeriodOut(page.span.key, page.span.start, page.span.end, status)


def _entries(page: standings.Page, caller: str) -> list[EntryOut]:
    """The rows as the caller may see them: other members by handle and name, never by id."""
    return [
        EntryOut(r.rank, r.handle, r.display_name, r.score, True, r.member_id)
        if r.member_id == caller
        else EntryOut(r.rank, r.handle, r.display_name, r.score, False)
        for r in page.rows
    ]


class LeaderboardsController(Controller):
    """Board reads count against the member's rate limit like any request; the count travels to
    Redis with the read itself (`Reader`), and an over-limit request is refused once it is known."""

    path = "/v1/leaderboards"
    tags = ["leaderboards"]

    @get("/", operation_id="listLeaderboards")
    async def list_all(self, ctx: Context, current_member: str) -> BoardsOut:
        """The boards and their current and previous periods."""
        return await list_boards(ctx, current_member)

    @get("/{board_id:str}", operation_id="getLeaderboard")
    async def standings(
        self,
        ctx: Context,
        reader: Reader,
        board_id: Annotated[str, Parameter(max_length=64)],
        period: _Period = None,
        board_scope: _Scope = None,
        limit: Annotated[int, Parameter(schema_extra={"minimum": 1, "maximum": MAX_LIMIT})] = 10,
        cursor: Annotated[str | None, Parameter(max_length=100)] = None,
    ) -> StandingsOut:
        """Standings from the top: `period` = current (default), previous, a period name or a date;
        `scope` = global, tier, team, friends, rookie or league; `limit` 1-100; `cursor` for the next page."""
        try:
            page = await standings.top(ctx, reader.member_id, board_id, period, board_scope, limit, cursor)
        finally:
            await reader.settle()
        return StandingsOut(
            page.board.id,
            _period(page),
            page.scope,
            page.total,
            _entries(page, reader.member_id),
            page.next_cursor,
        )

    @get("/{board_id:str}/me", operation_id="getMyLeaderboardStanding")
    async def me(
        self,
        ctx: Context,
        reader: Reader,
        board_id: Annotated[str, Parameter(max_length=64)],
        period: _Period = None,
        board_scope: _Scope = None,
        around: Annotated[int, Parameter(schema_extra={"minimum": 0, "maximum": MAX_AROUND})] = 5,
    ) -> MyStandingOut:
        """The member's rank and score, and `around` members (0-50) above and below."""
        try:
            page = await standings.around(ctx, reader.member_id, board_id, period, board_scope, around)
        finally:
            await reader.settle()
        me = page.me
        return MyStandingOut(
            page.board.id,
            _period(page),
            page.scope,
            reader.member_id,
            me.rank if me else None,
            me.score if me else None,
            page.total,
            _entries(page, reader.member_id),
            page.my_handle,
        )
