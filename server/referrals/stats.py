"""The member's view of their referrals: their code and link, what sharing it did (clicks,
claims, conversions), their rewards, the milestones and their rank on the referral board."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from server.errors import ProblemError
from server.members.service import profile
from server.referrals.codes import active_code, codes_of, ensure_code, link_for
from server.referrals.content import ReferralsContent, disabled, program
from server.referrals.models import Referral, ReferralClick, ReferralReward
from server.referrals.rewards import rewards_where

if TYPE_CHECKING:
    from server.context import Context


async def my_referrals(ctx: Context, member_id: str) -> dict[str, Any]:
    """The member's code and link, what their sharing did (clicks, claims, conversions), their
    pending and earned referral rewards, the milestones and their rank on the referral board."""
    content = program(ctx)
    if not content.enabled:
        raise disabled()
    async with ctx.db.session() as session:
        codes = await codes_of(session, member_id)
    if not any(x.kind == "generated" for x in codes):
        async with ctx.db.transaction() as session:
            codes = await ensure_code(ctx, session, member_id)
    r, c, w = Referral.__table__, ReferralClick.__table__, ReferralReward.__table__
    async with ctx.db.session() as session:
        statuses = dict(
            (
                await session.execute(
                    sa.select(r.c.status, sa.func.count())
                    .where(r.c.referrer_id == member_id)
                    .group_by(r.c.status)
                )
            ).all()
        )
        clicks = dict(
            (
                await session.execute(
                    sa.select(c.c.bot, sa.func.count()).where(c.c.referrer_id == member_id).group_by(c.c.bot)
                )
            ).all()
        )
        sums = (
            await session.execute(
                sa.select(w.c.status, w.c.currency, sa.func.sum(w.c.amount))
                .where(w.c.member_id == member_id, w.c.currency.in_(["points", "growth"]))
                .group_by(w.c.status, w.c.currency)
            )
        ).all()
        reached = {
            row.milestone: row.settled_at
            for row in await rewards_where(
                session,
                ReferralReward.member_id == member_id,
                ReferralReward.role == "milestone",
                ReferralReward.status == "earned",
            )
        }
        mine = await session.get(Referral, member_id)
        referrer_name = (await profile(ctx, session, mine.referrer_id)).display_name if mine else None
    pending = {"points": 0, "growth": 0}
    earned = {"points": 0, "growth": 0}
    for status, currency, total in sums:
        if status == "pending":
            pending[currency] += int(total or 0)
        elif status == "earned":
            earned[currency] += int(total or 0)
    converted = int(statuses.get("converted", 0))
    active = active_code(codes)
    assert active is not None
    nxt = content.milestone_after(converted)
    return {
        "code": active.display,
        "link": link_for(ctx, active.display),
        "generated_code": next(x.display for x in codes if x.kind == "generated"),
        "vanity_code": active.display if active.kind == "vanity" else None,
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
        "milestones": [
            {
                "count": m.count,
                "name": m.name,
                "reward": m.reward.model_dump(),
                "reached": m.count in reached,
                "reached_at": reached[m.count].isoformat() if reached.get(m.count) else None,
            }
            for m in content.milestones
        ],
        "next_milestone": (
            {"count": nxt.count, "remaining": nxt.count - converted, "reward": nxt.reward.model_dump()}
            if nxt
            else None
        ),
        "board": await _rank(ctx, member_id, content),
        "referred_by": (
            {"name": referrer_name, "status": mine.status, "claimed_at": mine.claimed_at.isoformat()}
            if mine
            else None
        ),
    }


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
