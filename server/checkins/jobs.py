"""Streak upkeep: the state is right even for members who do not open the app."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
import structlog
from sqlmodel import col

from server.checkins.models import StreakState
from server.checkins.service import next_midnight, rules, settle
from server.content.periods import local_day
from server.db import execute_counting, utcnow
from server.realtime.hub import send_live
from server.scheduler import Job

if TYPE_CHECKING:
    from server.context import Context

log = structlog.get_logger(__name__)
BATCH = 500


async def _candidates(ctx: Context, where: sa.ColumnElement[bool]) -> list[str]:
    ids: list[str] = []
    after = ""
    while True:
        async with ctx.db.session() as session:
            page = (
                (
                    await session.execute(
                        sa.select(col(StreakState.member_id))
                        .where(col(StreakState.current) > 0, col(StreakState.member_id) > after, where)
                        .order_by(col(StreakState.member_id))
                        .limit(BATCH)
                    )
                )
                .scalars()
                .all()
            )
        ids.extend(page)
        if len(page) < BATCH:
            return ids
        after = page[-1]


async def streak_upkeep(ctx: Context, period: str) -> None:
    """After each member's local midnight: cover missed dates with held freezes, or break the streak."""
    now = utcnow()
    # No zone is more than 14 hours ahead of UTC: a member whose last covered date is on or after
    # UTC's today cannot have missed a date yet.
    stale = await _candidates(ctx, col(StreakState.last_date) < now.date())
    settled = 0
    for member_id in stale:
        async with ctx.db.transaction() as session:
            _, _, _, upkeep = await settle(ctx, session, member_id, now)
            settled += bool(upkeep.frozen or upkeep.broke or upkeep.excused)
    if settled:
        log.info("streak_upkeep", period=period, members=settled)


async def streaks_at_risk(ctx: Context, period: str) -> None:
    """A 'streak at risk' message some hours before the local day ends, once per member and date."""
    now = utcnow()
    hours = rules(ctx).at_risk.hours_before_midnight
    recent = col(StreakState.last_date) >= now.date() - timedelta(days=2)
    for member_id in await _candidates(ctx, recent):
        async with ctx.db.transaction() as session:
            state = await session.get(StreakState, member_id)
            if state is None or state.zone is None or state.last_date is None:
                continue
            today = local_day(state.zone, now)
            ends = next_midnight(state.zone, now)
            if state.last_date != today - timedelta(days=1) or now < ends - timedelta(hours=hours):
                continue
            claim = (
                sa.update(StreakState)
                .where(
                    col(StreakState.member_id) == member_id,
                    sa.or_(
                        col(StreakState.at_risk_sent_on).is_(None), col(StreakState.at_risk_sent_on) != today
                    ),
                )
                .values(at_risk_sent_on=today)
            )
            if await execute_counting(session, claim):
                send_live(
                    ctx,
                    session,
                    member_id,
                    "streak.at_risk",
                    {
                        "streak": state.current,
                        "date": today.isoformat(),
                        "ends_at": ends.isoformat(),
                        "freezes_held": state.freezes_held,
                    },
                )


JOBS = (
    Job("checkin.upkeep", streak_upkeep, lambda ctx: ctx.settings.checkin_upkeep_seconds),
    Job("checkin.at_risk", streaks_at_risk, lambda ctx: ctx.settings.checkin_upkeep_seconds),
)
