"""The managers' review: approve or reject a held referral (taking back what was paid), correct
who referred a member, and the queue of held referrals. The decisions run in the caller's
transaction; the admin package wraps them in its own, with its audit."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from server.db import lock_members, utcnow
from server.errors import ProblemError
from server.ledger import service as ledger
from server.ledger.earning import end_boost
from server.members.service import Profile, check_member_id, profiles
from server.referrals.codes import skeleton
from server.referrals.models import Referral, ReferralCode, ReferralReward
from server.referrals.rewards import converted_count, pay, rewards_where

if TYPE_CHECKING:
    from server.context import Context


async def _locked_referral(session: AsyncSession, friend_id: str, *others: str) -> Referral:
    """The member's referral, under the locks of both sides (and of `others`), read again."""
    check_member_id(friend_id)
    found = await session.get(Referral, friend_id)
    if found is None:
        raise ProblemError(404, "referral_not_found", f"Member '{friend_id}' has no referral.")
    await lock_members(session, sorted({found.friend_id, found.referrer_id, *others}))
    await session.refresh(found)
    return found


async def _review(session: AsyncSession, friend_id: str, actor: str, reason: str, now: datetime) -> Referral:
    """The held referral a manager decides on, locked, with the decision's who, when and why."""
    _check_reason(reason)
    referral = await _locked_referral(session, friend_id)
    if referral.status != "held":
        raise ProblemError(
            409, "referral_not_held", f"The referral of '{friend_id}' is {referral.status}, not held."
        )
    referral.reviewed_at, referral.reviewed_by, referral.review_reason = now, actor, reason
    return referral


async def approve(
    ctx: Context, session: AsyncSession, friend_id: str, *, actor: str, reason: str
) -> Referral:
    """A manager clears a held referral: pending rewards are paid (or, before the qualifying
    action, the referral waits for it and is not held again). In the caller's transaction."""
    now = utcnow()
    referral = await _review(session, friend_id, actor, reason, now)
    if referral.paid_at is not None:
        referral.status = "converted"  # held after payment: nothing more to pay
    elif referral.converted_at is not None:
        await pay(ctx, session, referral, now)
    else:
        referral.status = "claimed"
    return referral


async def reject(
    ctx: Context, session: AsyncSession, friend_id: str, *, actor: str, reason: str
) -> tuple[Referral, dict[str, Any]]:
    """A manager refuses a held referral: pending rewards are dropped, and what was paid already
    (a referral held after payment) is reversed through the ledger, with the referrer's boost and
    any milestone the referral no longer reaches. Returns the referral and what was undone; in the
    caller's transaction."""
    now = utcnow()
    referral = await _review(session, friend_id, actor, reason, now)
    referral.status = "rejected"
    undone: dict[str, Any] = {"dropped": 0, "reversed_points": 0, "reversed_growth": 0, "unrecovered": []}
    await _take_back(
        ctx,
        session,
        await rewards_where(
            session, ReferralReward.friend_id == friend_id, ReferralReward.role != "milestone"
        ),
        f"referral rejected: {reason}"[:200],
        now,
        undone,
    )
    await end_boost(session, referral.referrer_id, f"referral:{friend_id}", now)
    # Milestones the referrer no longer reaches without this referral (only a paid one counted).
    await session.flush()
    count = await converted_count(session, referral.referrer_id)
    over = [
        r
        for r in await rewards_where(
            session, ReferralReward.member_id == referral.referrer_id, ReferralReward.role == "milestone"
        )
        if referral.paid_at is not None and r.milestone is not None and r.milestone > count
    ]
    await _take_back(
        ctx, session, over, "referral milestone taken back: a referral was rejected", now, undone
    )
    return referral, undone


async def _take_back(
    ctx: Context,
    session: AsyncSession,
    rows: list[ReferralReward],
    reason: str,
    now: datetime,
    undone: dict[str, Any],
) -> None:
    """Drop pending rewards; reverse earned ones through the ledger (counted in `undone`). A
    reversal the member's balance no longer covers (the points were spent) is left and reported."""
    for r in rows:
        if r.status == "pending":
            r.status, r.settled_at = "dropped", now
            undone["dropped"] += 1
        elif r.status == "earned" and r.ledger_entry_id is not None:
            balance = (await ledger.lock_account(session, r.member_id))[r.currency]
            if balance < r.amount:
                undone["unrecovered"].append(
                    {"member_id": r.member_id, "currency": r.currency, "amount": r.amount, "balance": balance}
                )
                continue
            await ledger.reverse(ctx, session, r.member_id, r.ledger_entry_id, reason)
            r.status, r.settled_at = "reversed", now
            undone[f"reversed_{r.currency}"] += r.amount


def _check_reason(reason: str) -> None:
    if not reason.strip() or len(reason) > 500 or any(ord(c) < 32 and c not in "\n\t" for c in reason):
        raise ProblemError(400, "invalid_reason", "A review states its reason, 1 to 500 characters.")


async def reassign(
    ctx: Context, session: AsyncSession, friend_id: str, code_text: str, *, reason: str
) -> tuple[Referral, str]:
    """A manager corrects who referred a member (before any reward was paid), in the caller's
    transaction. Returns the referral and its referrer before."""
    _check_reason(reason)
    key = skeleton(code_text)
    code = await session.get(ReferralCode, key) if key else None
    if code is None:
        raise ProblemError(404, "code_not_found", "There is no referral code like that.")
    if code.member_id == friend_id:
        raise ProblemError(409, "self_referral", "A member cannot be their own referrer.")
    referral = await _locked_referral(session, friend_id, code.member_id)
    if referral.converted_at is not None or referral.status == "converted":
        raise ProblemError(
            409,
            "referral_converted",
            "This referral has converted (its rewards are set); it cannot change.",
        )
    before = referral.referrer_id
    referral.referrer_id, referral.code = code.member_id, code.code
    return referral, before


async def held(ctx: Context, *, limit: int = 50, after: str | None = None) -> list[dict[str, Any]]:
    """Held referrals, longest waiting first, with their signals and pending rewards."""
    async with ctx.db.session() as session:
        found = await _held_page(session, limit, after)
        if not found:
            return []
        ids = [r.friend_id for r in found]
        rewards = await rewards_where(session, col(ReferralReward.friend_id).in_(ids))
        people = await profiles(ctx, session, sorted({*ids, *(r.referrer_id for r in found)}))
    return [_held_view(r, [w for w in rewards if w.friend_id == r.friend_id], people) for r in found]


async def _held_page(session: AsyncSession, limit: int, after: str | None) -> list[Referral]:
    """Up to `limit` held referrals, longest waiting first, after the one of member `after` (the
    cursor: the last friend of the page before)."""
    held_at, friend = col(Referral.held_at), col(Referral.friend_id)
    q = sa.select(Referral).where(col(Referral.status) == "held").order_by(held_at, friend)
    if after:
        try:
            check_member_id(after)
        except ProblemError:
            raise ProblemError(400, "invalid_cursor", "The cursor is not one this list gave.") from None
        mark = await session.get(Referral, after)
        if mark is not None and mark.held_at is not None:
            q = q.where(
                sa.or_(
                    held_at > mark.held_at,
                    sa.and_(held_at == mark.held_at, friend > mark.friend_id),
                )
            )
    return list((await session.execute(q.limit(limit))).scalars())


def _held_view(r: Referral, rewards: list[ReferralReward], people: dict[str, Profile]) -> dict[str, Any]:
    """A held referral as the managers' queue shows it, with its rewards."""
    return {
        "friend_id": r.friend_id,
        "friend_name": people[r.friend_id].display_name,
        "referrer_id": r.referrer_id,
        "referrer_name": people[r.referrer_id].display_name,
        "code": r.code,
        "claimed_at": r.claimed_at,
        "held_at": r.held_at,
        "converted_at": r.converted_at,
        "paid": r.paid_at is not None,
        "risk_score": r.risk_score,
        "signals": r.risk_signals,
        "rewards": [
            {
                "member_id": w.member_id,
                "role": w.role,
                "currency": w.currency,
                "amount": w.amount,
                "badge_id": w.badge_id,
                "status": w.status,
            }
            for w in rewards
        ],
    }
