"""Period ends: the final standings of each finished period are archived to SQL, once.

The job ticks on every instance; a period is archived by the one transaction that moves it from
open to archived. Scores still arrive for `leaderboard_grace_seconds` after a period ends (events
on their way through the outbox); the archive waits for that, and a little more for transactions
that began before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import structlog

from server.db import execute_counting, utcnow
from server.leaderboards.content import Board
from server.leaderboards.leagues import close_week
from server.leaderboards.models import BoardPeriod, BoardScore, Standing
from server.leaderboards.periods import Span, span_of_key
from server.leaderboards.service import boards
from server.scheduler import Job

if TYPE_CHECKING:
    from server.context import Context

log = structlog.get_logger(__name__)
SCORES = BoardScore.__table__
PERIODS = BoardPeriod.__table__
IN_FLIGHT = timedelta(seconds=30)  # longer than any transaction that took a score before the grace ended


def final_order(board: Board, rows: Sequence[Any]) -> list[Any]:
    """The order Redis ranks a period in: by score, then the earlier tie-break slot, then member id
    (descending on a descending board, as a sorted set read from the top gives them)."""
    if board.order == "desc":
        rows = sorted(rows, key=lambda r: r.member_id, reverse=True)
        return sorted(rows, key=lambda r: (-r.score, r.tiebreak))
    return sorted(rows, key=lambda r: (r.score, r.tiebreak, r.member_id))


async def archive_period(ctx: Context, board: Board, span: Span) -> int | None:
    """Archive one finished period: its standings in every scope, then the league moves.
    Returns the number of members ranked, or None if it was archived already."""
    now = utcnow()
    async with ctx.db.transaction() as session:
        claim = (
            sa.update(PERIODS)
            .where(PERIODS.c.board_id == board.id, PERIODS.c.period == span.key, PERIODS.c.status == "open")
            .values(status="archived", archived_at=now)
        )
        if not await execute_counting(session, claim):
            return None
        rows = (
            await session.execute(
                sa.select(
                    SCORES.c.member_id,
                    SCORES.c.score,
                    SCORES.c.tiebreak,
                    SCORES.c.tier,
                    SCORES.c.team,
                    SCORES.c.cohort,
                    SCORES.c.signed_up_at,
                ).where(SCORES.c.board_id == board.id, SCORES.c.period == span.key)
            )
        ).all()
        counters: dict[tuple[str, str], int] = {}

        def next_in(scope: str, value: str | None) -> int | None:
            if not value:
                return None
            counters[(scope, value)] = counters.get((scope, value), 0) + 1
            return counters[(scope, value)]

        ranked = [
            {
                "board_id": board.id,
                "period": span.key,
                "rank": i,
                "member_id": r.member_id,
                "score": r.score,
                "tier": r.tier,
                "team": r.team,
                "cohort": r.cohort,
                "signed_up_at": r.signed_up_at,
                "tier_rank": next_in("tier", r.tier),
                "team_rank": next_in("team", r.team),
                "cohort_rank": next_in("cohort", r.cohort),
            }
            for i, r in enumerate(final_order(board, rows), start=1)
        ]
        for i in range(0, len(ranked), 5000):
            await session.execute(sa.insert(Standing.__table__), ranked[i : i + 5000])
        await session.execute(
            sa.update(PERIODS)
            .where(PERIODS.c.board_id == board.id, PERIODS.c.period == span.key)
            .values(entries=len(ranked))
        )
        if board.league is not None:
            await close_week(ctx, session, board, span.key, ranked)
    log.info("leaderboard_archived", board=board.id, period=span.key, members=len(ranked))
    return len(ranked)


async def archive_due(ctx: Context, now: datetime | None = None) -> list[tuple[str, str, int]]:
    """Archive every period whose grace has passed. Returns (board, period, members) archived."""
    now = now or utcnow()
    due = now - timedelta(seconds=ctx.settings.leaderboard_grace_seconds) - IN_FLIGHT
    async with ctx.db.session() as session:
        rows = (
            await session.execute(
                sa.select(PERIODS.c.board_id, PERIODS.c.period)
                .where(PERIODS.c.status == "open", PERIODS.c.ends_at.is_not(None), PERIODS.c.ends_at <= due)
                .order_by(PERIODS.c.ends_at)
            )
        ).all()
    done = []
    found = boards(ctx)
    for board_id, period in rows:
        board = found.get(board_id)
        span = span_of_key(board, period) if board is not None else None
        if board is None or span is None:
            continue  # a board taken out of the content: its periods wait until it returns
        count = await archive_period(ctx, board, span)
        if count is not None:
            done.append((board_id, period, count))
    return done


async def archive_job(ctx: Context, _period: str) -> None:
    await archive_due(ctx)


JOBS = (Job("leaderboards.archive", archive_job, lambda ctx: ctx.settings.leaderboard_archive_seconds),)
