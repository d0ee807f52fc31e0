"""Conversion and rewards: the friend's qualifying action pays both sides, boosts the referrer
and pays the milestones the referrer's conversions reach.

One level only: a conversion pays the friend and their referrer, never the referrer's referrer.
Every reward goes through the ledger under a key naming the referral, so nothing pays twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from server.content.goals import Reward
from server.db import insert_ignore, lock_members, utcnow
from server.errors import ProblemError
from server.events.dispatch import DomainEvent, emit
from server.ledger import service as ledger
from server.ledger.earning import grant_boost
from server.members.service import Profile, profiles
from server.realtime.hub import send_live
from server.referrals import fraud
from server.referrals.claims import OPEN
from server.referrals.content import Milestone, ReferralsContent, program
from server.referrals.models import Referral, ReferralReward

if TYPE_CHECKING:
    from server.context import Context

log = structlog.get_logger(__name__)

SOURCE = "referral"  # the source of every referral reward in the ledger


def _reward_rows(
    referral: Referral,
    member_id: str,
    role: str,
    reward: Reward,
    key: str,
    now: datetime,
    milestone: int | None = None,
) -> list[dict[str, Any]]:
    """A reward's rows, pending until `pay` posts them: one per currency, one for a badge."""
    rows = [
        {"currency": c, "amount": a, "badge_id": None}
        for c, a in (("points", reward.points), ("growth", reward.growth))
        if a
    ]
    if reward.badge:
        rows.append({"currency": "badge", "amount": 0, "badge_id": reward.badge})
    return [
        {
            **r,
            "friend_id": referral.friend_id,
            "member_id": member_id,
            "role": role,
            "milestone": milestone,
            "key": key,
            "status": "pending",
            "created_at": now,
            "settled_at": None,
            "ledger_entry_id": None,
        }
        for r in rows
    ]


def _keys(referral: Referral) -> dict[str, str]:
    return {
        "referrer": f"referral:{referral.friend_id}:referrer",
        "friend": f"referral:{referral.friend_id}:friend",
    }


async def _write_rewards(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert_ignore(session, ReferralReward.__table__), rows)


async def _pay_rows(
    ctx: Context, session: AsyncSession, rows: list[ReferralReward], reason: dict[str, str], now: datetime
) -> None:
    """Post reward rows through the ledger (points and growth) and the badges domain (badges)."""
    postings = [
        ledger.Posting(
            r.member_id,
            r.currency,
            r.amount,
            reason[r.role],
            SOURCE,
            r.key,
            {"friend_id": r.friend_id, "role": r.role, **({"milestone": r.milestone} if r.milestone else {})},
        )
        for r in rows
        if r.currency in ("points", "growth")
    ]
    posted = await ledger.post_many(ctx, session, postings)
    by_key = {(p.entry.member_id, p.entry.currency, p.entry.idempotency_key): p.entry.id for p in posted}
    for r in rows:
        if r.currency == "badge" and r.badge_id:
            from server.badges.service import grant

            try:
                await grant(
                    ctx,
                    session,
                    r.member_id,
                    r.badge_id,
                    idempotency_key=r.key,
                    reason=reason[r.role],
                    source=SOURCE,
                )
            except ProblemError as exc:  # content changed since: the badge gone or out of its window
                log.warning(
                    "referral_badge_not_given", member_id=r.member_id, badge_id=r.badge_id, code=exc.code
                )
        r.status = "earned"
        r.settled_at = now
        r.ledger_entry_id = by_key.get((r.member_id, r.currency, r.key))


async def rewards_where(session: AsyncSession, *conds: Any) -> list[ReferralReward]:
    found = await session.execute(sa.select(ReferralReward).where(*conds).order_by(col(ReferralReward.id)))
    return list(found.scalars())


async def converted_count(session: AsyncSession, referrer_id: str) -> int:
    """The referrer's paid referrals that stand: converted, or held for review after payment
    (counted until a manager rejects them)."""
    r = Referral.__table__
    return (
        await session.execute(
            sa.select(sa.func.count()).where(
                r.c.referrer_id == referrer_id,
                r.c.paid_at.is_not(None),
                r.c.status.in_(["converted", "held"]),
            )
        )
    ).scalar_one()


async def reassess(
    session: AsyncSession, content: ReferralsContent, referral: Referral, now: datetime
) -> fraud.Assessment:
    """Score the referral again (under both members' locks) with what has been seen since the
    claim; the bursts found at the claim are kept."""
    # Held already when dispatch named both sides up front (`also_lock`); the row is read again
    # under the locks.
    await lock_members(session, sorted({referral.friend_id, referral.referrer_id}))
    await session.refresh(referral)
    found = await fraud.assess(
        session,
        content.fraud,
        friend_id=referral.friend_id,
        referrer_id=referral.referrer_id,
        now=now,
        kept=referral.risk_signals,
    )
    referral.risk_score, referral.risk_signals = found.score, found.signals
    return found


async def convert(ctx: Context, session: AsyncSession, referral: Referral, event: DomainEvent) -> None:
    """The friend did the qualifying action: assess the referral once more with what has been
    seen since the claim, then pay both sides, or hold the rewards as pending for review."""
    content = program(ctx)
    now = utcnow()
    found = await reassess(session, content, referral, now)
    if referral.converted_at is not None or referral.status not in (*OPEN, "expired"):
        return  # converted (or decided) by another run since it was read
    if referral.status == "expired":  # the action was in time; its event came after the expiry job
        referral.status = "claimed"
    referral.converted_at = now
    referral.conversion_event_id = event.event_id
    approved = referral.reviewed_at is not None
    hold = referral.status == "held" or (found.holds(content.fraud) and not approved)
    # The rewards are written pending; `pay` posts them (now, or when a manager approves).
    keys = _keys(referral)
    rows = _reward_rows(
        referral, referral.referrer_id, "referrer", content.referrer_reward, keys["referrer"], now
    )
    rows += _reward_rows(referral, referral.friend_id, "friend", content.friend_reward, keys["friend"], now)
    await _write_rewards(session, rows)
    if hold:
        referral.status = "held"
        referral.held_at = referral.held_at or now
        log.info("referral_held", friend_id=referral.friend_id, score=found.score)
        return
    await pay(ctx, session, referral, now)


async def pay(ctx: Context, session: AsyncSession, referral: Referral, now: datetime) -> None:
    """Pay a converted referral's pending rewards to both sides, boost the referrer, count it on
    the referral board, and pay any milestone it reaches (each once)."""
    content = program(ctx)
    referral.status = "converted"
    referral.paid_at = now
    pending = await rewards_where(
        session,
        ReferralReward.friend_id == referral.friend_id,
        ReferralReward.status == "pending",
        ReferralReward.role != "milestone",
    )
    sides = await profiles(ctx, session, [referral.referrer_id, referral.friend_id])
    friend, referrer = sides[referral.friend_id], sides[referral.referrer_id]
    friend_name = friend.display_name or "a friend"
    referrer_name = referrer.display_name or "a friend"
    reasons = {"referrer": f"referral: {friend_name} joined", "friend": f"joined with {referrer_name}'s code"}
    await _pay_rows(ctx, session, pending, reasons, now)
    await session.flush()
    boost = await _boost_referrer(ctx, session, content, referral, friend_name, now)
    count = await converted_count(session, referral.referrer_id)
    reached = await _milestones(ctx, session, referral, count, now)
    emit(ctx, session, _converted_event(referral, count, now))
    _tell_both_sides(
        ctx, session, content, referral, friend, referrer, count=count, reached=reached, boost=boost, now=now
    )


async def _boost_referrer(
    ctx: Context,
    session: AsyncSession,
    content: ReferralsContent,
    referral: Referral,
    friend_name: str,
    now: datetime,
) -> dict[str, Any] | None:
    """Boost the referrer's earning for the program's boost hours (None when the program has no
    boost): the boost as the live message tells it."""
    if content.boost is None:
        return None
    b = await grant_boost(
        ctx,
        session,
        referral.referrer_id,
        key=f"referral:{referral.friend_id}",
        factor=content.boost.factor,
        duration=timedelta(hours=content.boost.hours),
        source=SOURCE,
        reason=f"{friend_name} joined with your code",
        currencies=tuple(content.boost.currencies),
        starts_at=now,
    )
    return {"factor": b.factor, "ends_at": b.ends_at.isoformat(), "currencies": b.currencies}


def _converted_event(referral: Referral, count: int, now: datetime) -> DomainEvent:
    """The referrer's `referral.converted`, for the domains that react to it (quests, badges)."""
    return DomainEvent(
        event_id=f"referral.converted:{referral.friend_id}",
        member_id=referral.referrer_id,
        type="referral.converted",
        occurred_at=now,
        properties={"friend_id": referral.friend_id, "conversions": count},
        source="referrals",
    )


def _tell_both_sides(
    ctx: Context,
    session: AsyncSession,
    content: ReferralsContent,
    referral: Referral,
    friend: Profile,
    referrer: Profile,
    *,
    count: int,
    reached: list[Milestone],
    boost: dict[str, Any] | None,
    now: datetime,
) -> None:
    """The live `referral.converted` messages: to the referrer with their count, milestones and
    boost, and to the friend."""
    send_live(
        ctx,
        session,
        referral.referrer_id,
        "referral.converted",
        {
            "role": "referrer",
            "friend_name": friend.display_name,
            "reward": content.referrer_reward.model_dump(),
            "conversions": count,
            "milestones_reached": [
                {"count": m.count, "name": m.name, "reward": m.reward.model_dump()} for m in reached
            ],
            "next_milestone": next_milestone(content, count),
            "boost": boost,
            "celebration": "referral",
        },
        at=now,
    )
    send_live(
        ctx,
        session,
        referral.friend_id,
        "referral.converted",
        {
            "role": "friend",
            "referrer_name": referrer.display_name,
            "reward": content.friend_reward.model_dump(),
            "celebration": "referral",
        },
        at=now,
    )


def next_milestone(content: ReferralsContent, count: int) -> dict[str, Any] | None:
    """The next milestone after `count` conversions and how many remain to it, or None past the
    last one."""
    nxt = content.milestone_after(count)
    if nxt is None:
        return None
    return {"count": nxt.count, "remaining": nxt.count - count, "reward": nxt.reward.model_dump()}


async def _milestones(
    ctx: Context, session: AsyncSession, referral: Referral, count: int, now: datetime
) -> list[Milestone]:
    """Milestones the referrer's count of converted referrals reaches and that they do not hold
    (under the referrer's lock, so concurrent conversions pay each once)."""
    content = program(ctx)
    referrer = referral.referrer_id
    taken = await rewards_where(
        session, ReferralReward.member_id == referrer, ReferralReward.role == "milestone"
    )
    reached = []
    for m in content.milestones:
        if m.count > count:
            break
        mine = [r for r in taken if r.milestone == m.count]
        if any(r.status in ("earned", "pending") for r in mine):
            continue
        round_ = len({r.key for r in mine}) + 1  # taken back before (a rejection): earned again anew
        key = f"referral:milestone:{m.count}" + (f":{round_}" if round_ > 1 else "")
        rows = _reward_rows(referral, referrer, "milestone", m.reward, key, now, milestone=m.count)
        await _write_rewards(session, rows)
        fresh = await rewards_where(session, ReferralReward.member_id == referrer, ReferralReward.key == key)
        label = m.name or f"{m.count} friends joined"
        await _pay_rows(ctx, session, fresh, {"milestone": f"referral milestone: {label}"}, now)
        reached.append(m)
    return reached
