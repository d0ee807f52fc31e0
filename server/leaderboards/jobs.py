"""Period ends: the final standings of each finished period are archived to SQL, once. And the
boards' Redis index, restored from SQL when Redis has lost it.

The archive job ticks on every instance; a period is archived by the one transaction that moves it
from open to archived. Scores still arrive for `leaderboard_grace_seconds` after a period ends
(events on their way through the outbox); the archive waits for that, and a little more for
transactions that began before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import structlog
from redis.exceptions import RedisClusterException, RedisError
from sqlalchemy.exc import SQLAlchemyError

from server.db import execute_counting, utcnow
from server.leaderboards.content import Board
from server.leaderboards.index import IndexLockLost, live_periods, restore_lost
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


async def guard_index_job(ctx: Context, _period: str) -> None:
    """On every instance: restore the boards' index if Redis lost it (see `index.restore_lost`).

    The restore runs beside the scheduler (a large board takes a while), one at a time per
    process, and is stopped with the process: its lock then lapses and another instance goes on.
    """
    running: asyncio.Task[None] | None = ctx.extras.get("lb_restoring")
    if running is not None and not running.done():
        return
    if running is None:
        ctx.on_close(lambda: _stop_restoring(ctx))
    ctx.extras["lb_restoring"] = asyncio.get_running_loop().create_task(_restore(ctx))


async def _restore(ctx: Context) -> None:
    try:
        await restore_lost(ctx, await live_periods(ctx, with_next=True))
    except (RedisError, RedisClusterException, OSError, SQLAlchemyError, IndexLockLost) as exc:
        # Redis or SQL unavailable, or another instance took over: the next tick looks again.
        # Said once per spell, not every few seconds.
        if not ctx.extras.get("lb_guard_failing"):
            log.warning("leaderboard_index_unchecked", error=type(exc).__name__)
        ctx.extras["lb_guard_failing"] = True
        return
    except Exception:
        log.exception("leaderboard_index_restore_failed")
        return
    ctx.extras["lb_guard_failing"] = False


async def _stop_restoring(ctx: Context) -> None:
    task: asyncio.Task[None] | None = ctx.extras.get("lb_restoring")
    if task is not None and not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


JOBS = (
    Job("leaderboards.archive", archive_job, lambda ctx: ctx.settings.leaderboard_archive_seconds),
    Job(
        "leaderboards.guard_index",
        guard_index_job,
        lambda ctx: ctx.settings.leaderboard_index_check_seconds,
        once_per_period=False,
    ),
)
