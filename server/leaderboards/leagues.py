"""Leagues: a weekly board played in cohorts of members of one league level.

A member is placed in a cohort of their level the first time they score in a week: the n-th
member of a level to act that week sits in cohort n // size, so cohorts fill one after another
and a member who does nothing is in none. At the weekly reset (the archive of the week) the top
ranks of each cohort go up a level and the bottom ranks down one. A cohort smaller than the size
(the last one of a level) promotes and demotes in proportion: promotions rounded up, demotions
down. A score of zero or less never promotes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from server.db import utcnow
from server.leaderboards.content import Board, League
from server.leaderboards.models import BoardScore, LeagueMember, LeagueSeats
from server.realtime.hub import send_live

if TYPE_CHECKING:
    from server.context import Context
    from server.leaderboards.periods import Span

SEATS = LeagueSeats.__table__
LEVELS = LeagueMember.__table__
SCORES = BoardScore.__table__


async def levels_of(session: AsyncSession, board_id: str, member_ids: list[str]) -> dict[str, int]:
    rows = await session.execute(
        sa.select(LEVELS.c.member_id, LEVELS.c.level).where(
            LEVELS.c.board_id == board_id, LEVELS.c.member_id.in_(member_ids)
        )
    )
    return {r.member_id: r.level for r in rows}


class Seat(Protocol):
    """What placing a member in a cohort needs of a board write: the board, its period, the member."""

    @property
    def board(self) -> Board: ...
    @property
    def span(self) -> Span: ...
    @property
    def member_id(self) -> str: ...


async def place(
    ctx: Context, session: AsyncSession, writes: Sequence[Seat]
) -> dict[tuple[str, str, str], str]:
    """The cohort ("<level>:<n>") of each member of a league write; seats handed out to newcomers."""
    out: dict[tuple[str, str, str], str] = {}
    by_board: dict[tuple[str, str], list[Seat]] = {}
    for w in writes:
        by_board.setdefault((w.board.id, w.span.key), []).append(w)
    for (board_id, period), group in sorted(by_board.items()):
        members = sorted({w.member_id for w in group})
        placed = {
            r.member_id: r.cohort
            for r in await session.execute(
                sa.select(SCORES.c.member_id, SCORES.c.cohort).where(
                    SCORES.c.board_id == board_id, SCORES.c.period == period, SCORES.c.member_id.in_(members)
                )
            )
            if r.cohort
        }
        newcomers = [m for m in members if m not in placed]
        if newcomers:
            league = group[0].board.league
            assert league is not None
            levels = await levels_of(session, board_id, newcomers)
            top = len(league.levels) - 1
            by_level: dict[int, list[str]] = {}
            for member_id in newcomers:
                by_level.setdefault(min(levels.get(member_id, 0), top), []).append(member_id)
            for level, seated in sorted(by_level.items()):
                last = await _take_seats(ctx, session, board_id, period, level, len(seated))
                for k, member_id in enumerate(seated):
                    seat = last - len(seated) + k  # 0-based
                    placed[member_id] = f"{level}:{seat // league.size}"
        for m in members:
            out[(board_id, period, m)] = placed[m]
    return out


async def _take_seats(
    ctx: Context, session: AsyncSession, board_id: str, period: str, level: int, count: int
) -> int:
    """Hand out `count` seats of a week's level; returns the last one's number (1-based).

    On PostgreSQL in a transaction of its own (on a pool of its own, so that it never waits for
    a connection held by a unit of work like the caller's), holding the counter's row for one
    statement: the first action of the week of every member of a level meets on this row, and
    holding it until the caller's unit of work commits would line them all up. A seat whose unit
    of work rolls back stays empty (a cohort one short); no seat is ever given twice.
    """
    insert = (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert(SEATS)
    stmt = (
        insert.values(board_id=board_id, period=period, level=level, seats=count)
        .on_conflict_do_update(
            index_elements=[SEATS.c.board_id, SEATS.c.period, SEATS.c.level],
            set_={"seats": SEATS.c.seats + count},
        )
        .returning(SEATS.c.seats)
    )
    if session.get_bind().dialect.name != "postgresql":
        return int((await session.execute(stmt)).scalar_one())  # SQLite: one writer at a time anyway
    async with ctx.db.side_engine.begin() as conn:
        return int((await conn.execute(stmt)).scalar_one())


def moves(league: League, cohort_size: int) -> tuple[int, int]:
    """How many of a cohort of `cohort_size` go up and how many go down."""
    up = min(league.promote, math.ceil(league.promote * cohort_size / league.size))
    down = min(league.demote, math.floor(league.demote * cohort_size / league.size))
    up = min(up, cohort_size)
    return up, min(down, cohort_size - up)


async def close_week(
    ctx: Context, session: AsyncSession, board: Board, period: str, ranked: list[dict[str, Any]]
) -> None:
    """Move members between levels by their rank in their cohort (rows of one archived week, each
    with member_id, score, cohort and cohort_rank), and tell each member how their week ended."""
    league = board.league
    assert league is not None
    cohorts: dict[str, list[dict[str, Any]]] = {}
    for row in ranked:
        if row["cohort"]:
            cohorts.setdefault(row["cohort"], []).append(row)
    top = len(league.levels) - 1
    now = utcnow()
    changes: list[dict[str, Any]] = []
    for cohort, rows in sorted(cohorts.items()):
        rows.sort(key=lambda r: r["cohort_rank"])
        level = min(int(cohort.split(":")[0]), top)
        up, down = moves(league, len(rows))
        for i, row in enumerate(rows):
            new_level, outcome = level, "stayed"
            if i < up and level < top and row["score"] > 0:
                new_level, outcome = level + 1, "promoted"
            elif i >= len(rows) - down and level > 0:
                new_level, outcome = level - 1, "demoted"
            changes.append(
                {"board_id": board.id, "member_id": row["member_id"], "level": new_level, "updated_at": now}
            )
            send_live(
                ctx,
                session,
                row["member_id"],
                "leaderboard.league_result",
                {
                    "board_id": board.id,
                    "period": period,
                    "rank": row["cohort_rank"],
                    "cohort_size": len(rows),
                    "score": row["score"],
                    "outcome": outcome,
                    "league": league.levels[level],
                    "next_league": league.levels[new_level],
                },
                at=now,
            )
    if not changes:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    insert = dialect.insert(LEVELS)
    stmt = insert.on_conflict_do_update(
        index_elements=[LEVELS.c.board_id, LEVELS.c.member_id],
        set_={"level": insert.excluded.level, "updated_at": insert.excluded.updated_at},
    )
    for i in range(0, len(changes), 2000):
        await session.execute(stmt, changes[i : i + 2000])
