from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import Parameter, QueryParameter

from server.auth import Reader
from server.context import Context
from server.db import utcnow
from server.leaderboards import standings
from server.leaderboards.periods import status_of
from server.leaderboards.schemas import (
    BoardsOut,
    EntryOut,
    MyStandingOut,
    PeriodOut,
    StandingsOut,
    TeamBreakdownOut,
    TeamEntryOut,
)
from server.leaderboards.service import list_boards
from server.leaderboards.standings import MAX_AROUND, MAX_LIMIT

_Period = Annotated[str | None, Parameter(max_length=64)]
# `scope` is the name of the ASGI scope to Litestar: the query parameter is read under another name.
_Scope = Annotated[str | None, QueryParameter(name="scope", max_length=100)]


def _period(page: standings.Page | standings.TeamPage | standings.Breakdown) -> PeriodOut:
    status = status_of(page.span, utcnow(), page.archived)
    return PeriodOut(page.span.key, page.span.start, page.span.end, status)


def _entries(rows: list[standings.Row], caller: str) -> list[EntryOut]:
    """The rows as the caller may see them: other members by handle and name, never by id."""
    return [
        EntryOut(r.rank, r.handle, r.display_name, r.score, True, r.member_id)
        if r.member_id == caller
        else EntryOut(r.rank, r.handle, r.display_name, r.score, False)
        for r in rows
    ]


def _teams(page: standings.TeamPage) -> list[TeamEntryOut]:
    return [TeamEntryOut(r.rank, r.team_id, r.name, r.score, r.size) for r in page.rows]


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
        `scope` = global, tier, team, friends, rookie or league; `limit` 1-100; `cursor` for the next page.
        On a board that ranks teams (`ranks: teams`) the rows are teams, in `teams`."""
        try:
            board = standings.board_of(ctx, board_id)
            if board.ranks_teams:
                teams = await standings.team_top(
                    ctx, reader.member_id, board, period, board_scope, limit, cursor
                )
            else:
                page = await standings.top(
                    ctx, reader.member_id, board_id, period, board_scope, limit, cursor
                )
        finally:
            await reader.settle()
        if board.ranks_teams:
            period_out = _period(teams)
            return StandingsOut(
                board.id, period_out, teams.scope, teams.total, [], teams.next_cursor, "teams", _teams(teams)
            )
        return StandingsOut(
            page.board.id,
            _period(page),
            page.scope,
            page.total,
            _entries(page.rows, reader.member_id),
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
        """The member's rank and score, and `around` members (0-50) above and below. On a board
        that ranks teams: the member's team's, and `around` teams above and below it."""
        try:
            board = standings.board_of(ctx, board_id)
            if board.ranks_teams:
                teams = await standings.team_around(ctx, reader.member_id, board, period, board_scope, around)
            else:
                page = await standings.around(ctx, reader.member_id, board_id, period, board_scope, around)
        finally:
            await reader.settle()
        if board.ranks_teams:
            return MyStandingOut(
                board.id,
                _period(teams),
                teams.scope,
                reader.member_id,
                teams.me.rank if teams.me else None,
                teams.me.score if teams.me else None,
                teams.total,
                [],
                None,
                "teams",
                teams.my_team,
                _teams(teams),
            )
        me = page.me
        return MyStandingOut(
            page.board.id,
            _period(page),
            page.scope,
            reader.member_id,
            me.rank if me else None,
            me.score if me else None,
            page.total,
            _entries(page.rows, reader.member_id),
            page.my_handle,
        )

    @get("/{board_id:str}/teams/{team_id:str}", operation_id="getLeaderboardTeam")
    async def team(
        self,
        ctx: Context,
        reader: Reader,
        board_id: Annotated[str, Parameter(max_length=64)],
        team_id: Annotated[str, Parameter(max_length=64)],
        period: _Period = None,
        limit: Annotated[int, Parameter(schema_extra={"minimum": 1, "maximum": MAX_LIMIT})] = 30,
        cursor: Annotated[str | None, Parameter(max_length=100)] = None,
    ) -> TeamBreakdownOut:
        """On a board that ranks teams: what each member brought to the team in the period
        (`period` as for the standings), the most first, `limit` 1-100 rows a page; members by
        handle and name, the caller's own row with its `member_id`."""
        try:
            found = await standings.team_breakdown(
                ctx, reader.member_id, board_id, team_id, period, limit, cursor
            )
        finally:
            await reader.settle()
        return TeamBreakdownOut(
            found.board.id,
            _period(found),
            found.team_id,
            found.name,
            found.rank,
            found.score,
            found.size,
            found.total,
            _entries(found.rows, reader.member_id),
            found.next_cursor,
        )
