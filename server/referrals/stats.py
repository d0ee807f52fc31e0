"""The member's view of their referrals: their code and link, what sharing it did (clicks,
claims, conversions), their rewards, the milestones and their rank on the referral board."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from server.errors import ProblemError
from server.members.service import profile
from server.referrals.codes import active_code, codes_of, ensure_code, link_for
from server.referrals.content import ReferralsContent, disabled, program
from server.referrals.models import Referral, ReferralClick, ReferralCode, ReferralReward
from server.referrals.rewards import next_milestone, rewards_where

if TYPE_CHECKING:
    from server.context import Context


async def my_referrals(ctx: Context, member_id: str) -> dict[str, Any]:
    """The member's code and link, what their sharing did (clicks, claims, conversions), their
    pending and earned referral rewards, the milestones and their rank on the referral board."""
    content = program(ctx)
    if not content.enabled:
        raise disabled()
    codes = await _codes(ctx, member_id)
    async with ctx.db.session() as session:
        statuses = await _claims_by_status(session, member_id)
        clicks = await _clicks(session, member_id)
        pending, earned = await _reward_totals(session, member_id)
        reached = await _milestones_reached(session, member_id)
        mine = await session.get(Referral, member_id)
        referrer = await profile(ctx, session, mine.referrer_id) if mine else None
    converted = int(statuses.get("converted", 0))
    return {
        **_sharing(ctx, codes),
        "clicks": int(clicks.get(False, 0)),
        "previews": int(clicks.get(True, 0)),
        "claims": int(sum(statuses.values())),
        "conversions": converted,
        "waiting": int(statuses.get("claimed", 0)),
        "held": int(statuses.get("held", 0)),
        "pending_rewards": pending,
        "earned_rewards": earned,
        "rewards": {
            "referrer": content.referrer_reward.model_dump(),
            "friend": content.friend_reward.model_dump(),
        },
        "qualifying_action": content.conversion.event,
        "milestones": _milestones(content, reached),
        "next_milestone": next_milestone(content, converted),
        "board": await _rank(ctx, member_id, content),
        "referred_by": (
            {
                "name": referrer.display_name,
                "handle": referrer.handle,
                "status": mine.status,
                "claimed_at": mine.claimed_at.isoformat(),
            }
            if mine and referrer
            else None
        ),
    }


async def _codes(ctx: Context, member_id: str) -> list[ReferralCode]:
    """The member's codes: read, and only when they have no generated code yet, made in a
    transaction (most views change nothing)."""
    async with ctx.db.session() as session:
        codes = await codes_of(session, member_id)
    if not any(x.kind == "generated" for x in codes):
        async with ctx.db.transaction() as session:
            codes = await ensure_code(ctx, session, member_id)
    return codes


def _sharing(ctx: Context, codes: list[ReferralCode]) -> dict[str, Any]:
    """The code and link the member shares, their generated code and their vanity code."""
    active = active_code(codes)
    assert active is not None
    return {
        "code": active.display,
        "link": link_for(ctx, active.display),
        "generated_code": next(x.display for x in codes if x.kind == "generated"),
        "vanity_code": active.display if active.kind == "vanity" else None,
    }


async def _claims_by_status(session: AsyncSession, member_id: str) -> dict[str, int]:
    """How many of the member's referrals are in each status."""
    r = Referral.__table__
    found = await session.execute(
        sa.select(r.c.status, sa.func.count()).where(r.c.referrer_id == member_id).group_by(r.c.status)
    )
    return dict(found.all())


async def _clicks(session: AsyncSession, member_id: str) -> dict[bool, int]:
    """Views of the member's landing pages: by people (False) and by link previews (True)."""
    c = ReferralClick.__table__
    found = await session.execute(
        sa.select(c.c.bot, sa.func.count()).where(c.c.referrer_id == member_id).group_by(c.c.bot)
    )
    return dict(found.all())


async def _reward_totals(session: AsyncSession, member_id: str) -> tuple[dict[str, int], dict[str, int]]:
    """The member's referral rewards in points and growth: pending, and earned."""
    w = ReferralReward.__table__
    sums = (
        await session.execute(
            sa.select(w.c.status, w.c.currency, sa.func.sum(w.c.amount))
            .where(w.c.member_id == member_id, w.c.currency.in_(["points", "growth"]))
            .group_by(w.c.status, w.c.currency)
        )
    ).all()
    pending = {"points": 0, "growth": 0}
    earned = {"points": 0, "growth": 0}
    for status, currency, total in sums:
        if status == "pending":
            pending[currency] += int(total or 0)
        elif status == "earned":
            earned[currency] += int(total or 0)
    return pending, earned


async def _milestones_reached(session: AsyncSession, member_id: str) -> dict[int | None, datetime | None]:
    """The milestones the member holds, by count, with when each was earned."""
    return {
        row.milestone: row.settled_at
        for row in await rewards_where(
            session,
            ReferralReward.member_id == member_id,
            ReferralReward.role == "milestone",
            ReferralReward.status == "earned",
        )
    }


def _milestones(
    content: ReferralsContent, reached: dict[int | None, datetime | None]
) -> list[dict[str, Any]]:
    """The program's milestones, each with whether and when the member reached it."""
    return [
        {
            "count": m.count,
            "name": m.name,
            "reward": m.reward.model_dump(),
            "reached": m.count in reached,
            "reached_at": at.isoformat() if (at := reached.get(m.count)) else None,
        }
        for m in content.milestones
    ]


async def _rank(ctx: Context, member_id: str, content: ReferralsContent) -> dict[str, Any] | None:
    """The member on the referral board: rank and score, or None off the board (or Redis down)."""
    if content.board is None:
        return None
    from server.leaderboards.standings import around

    try:
        page = await around(ctx, member_id, content.board, None, None, 0)
    except ProblemError:
        return {"board_id": content.board, "rank": None, "score": None, "total": None}
    me = page.me
    return {
        "board_id": content.board,
        "rank": me.rank if me else None,
        "score": me.score if me else 0,
        "total": page.total,
    }
