"""The claim: a new member names the code of whoever referred them, once, within a window after
signing up; the referral it makes converts within its own window, or expires."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from server.db import execute_counting, lock_members, utcnow
from server.errors import ProblemError
from server.members.service import Profile, check_member_id, ensure_member, profiles
from server.realtime.hub import send_live
from server.referrals import fraud
from server.referrals.codes import active_code, ensure_code, skeleton
from server.referrals.content import ReferralsContent, disabled, program
from server.referrals.models import Referral, ReferralCode

if TYPE_CHECKING:
    from server.context import Context

log = structlog.get_logger(__name__)

# A referral claimed and not decided yet: waiting for the qualifying action, or held for review.
OPEN = ("claimed", "held")


@dataclass
class Claimed:
    referral: Referral
    referrer_name: str | None
    display_code: str
    created: bool


async def claim(
    ctx: Context,
    friend_id: str,
    code_text: str,
    *,
    by: str,
    signals: dict[str, Any] | None = None,
    now: datetime | None = None,
    known_only: bool = False,
) -> Claimed:
    """Attribute `friend_id` to the owner of a code. Within the claim window after sign-up, once
    per member (the same claim again answers with the first), never one's own code.

    `signals` are the raw `device_id`, `payment_fingerprint` and `ip` known of the friend; only
    their keyed hashes are kept. `known_only` (a brand system claiming) refuses a member the
    server does not know (404 `member_not_found`) instead of creating them.
    """
    content = program(ctx)
    if not content.enabled:
        raise disabled()
    check_member_id(friend_id)
    now = now or utcnow()
    key = skeleton(code_text)
    if key is None:
        raise _no_such_code()
    prints = fraud.fingerprints_of(ctx, signals or {})
    async with ctx.db.transaction() as session:
        code = await _claimable_code(session, key, friend_id)
        referrer_id = code.member_id
        await lock_members(session, [friend_id, referrer_id])
        friend, referrer = await _both_sides(ctx, session, friend_id, referrer_id, create=not known_only)
        existing = await session.get(Referral, friend_id)
        if existing is not None:
            if existing.referrer_id == referrer_id:
                return Claimed(existing, referrer.display_name, code.display, False)
            raise ProblemError(
                409,
                "already_referred",
                "You were referred by someone else already; a referral cannot change.",
            )
        await _check_may_claim(session, content, friend, referrer_id, now)
        referral = await _attribute(ctx, session, content, friend, code, by=by, prints=prints, now=now)
        return Claimed(referral, referrer.display_name, code.display, True)


async def claim_for(
    ctx: Context,
    session: AsyncSession,
    friend_id: str,
    referrer_id: str,
    *,
    by: str,
    signals: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Referral | None:
    """A claim another domain makes for a new member in its own transaction (a friend who joined
    to help a member: the member's code, as if the friend had typed it), under the same rules as a
    claim by code: the program running, within the claim window, once per member, never oneself
    and never circular; the same fraud checks, which may hold it. None when the rules do not
    allow it: nothing is refused, nothing changes. One level only, as every referral. The
    caller holds both members' locks."""
    content = program(ctx)
    if not content.enabled or friend_id == referrer_id:
        return None
    now = now or utcnow()
    if await session.get(Referral, friend_id) is not None:
        return None
    code = active_code(await ensure_code(ctx, session, referrer_id))
    friend = (await profiles(ctx, session, [friend_id]))[friend_id]
    if code is None or not friend.known:
        return None
    try:
        await _check_may_claim(session, content, friend, referrer_id, now)
    except ProblemError:
        return None
    prints = fraud.fingerprints_of(ctx, signals or {})
    return await _attribute(ctx, session, content, friend, code, by=by, prints=prints, now=now)


def _no_such_code() -> ProblemError:
    return ProblemError(404, "code_not_found", "There is no referral code like that; check it and try again.")


async def _claimable_code(session: AsyncSession, key: str, friend_id: str) -> ReferralCode:
    """The code claimed: one that exists, is still in use, and is not the friend's own."""
    code = await session.get(ReferralCode, key)
    if code is None:
        raise _no_such_code()
    if code.retired_at is not None:
        raise ProblemError(
            410,
            "code_expired",
            "This referral code is no longer in use; ask your friend for their new one.",
        )
    if code.member_id == friend_id:
        raise ProblemError(409, "self_referral", "You cannot use your own referral code.")
    return code


async def _both_sides(
    ctx: Context, session: AsyncSession, friend_id: str, referrer_id: str, *, create: bool
) -> tuple[Profile, Profile]:
    """The friend's and the referrer's profiles. A friend not known yet is created as a bare
    member, or with `create` off refused (404 `member_not_found`)."""
    if create:
        await ensure_member(session, friend_id)
    sides = await profiles(ctx, session, [friend_id, referrer_id])
    if not sides[friend_id].known:
        raise ProblemError(
            404,
            "member_not_found",
            f"There is no member '{friend_id}'; create them first (PUT /v1/members).",
        )
    return sides[friend_id], sides[referrer_id]


async def _check_may_claim(
    session: AsyncSession, content: ReferralsContent, friend: Profile, referrer_id: str, now: datetime
) -> None:
    """A claim comes within the window after the friend joined, and is not circular: a member
    the friend referred cannot refer them back."""
    joined = friend.joined_at
    assert joined is not None  # a known member has appeared at least
    if now > joined + timedelta(days=content.claim_window_days):
        raise ProblemError(
            409,
            "claim_window_closed",
            f"A referral code is claimed within {content.claim_window_days} days of signing up.",
        )
    circular = await session.get(Referral, referrer_id)
    if circular is not None and circular.referrer_id == friend.member_id:
        raise ProblemError(409, "circular_referral", "You referred this member; they cannot refer you back.")


async def _attribute(
    ctx: Context,
    session: AsyncSession,
    content: ReferralsContent,
    friend: Profile,
    code: ReferralCode,
    *,
    by: str,
    prints: dict[str, str],
    now: datetime,
) -> Referral:
    """Make the referral, scored on the claim's signals (held for review when that scores high),
    and tell the referrer."""
    friend_id, referrer_id = friend.member_id, code.member_id
    await fraud.remember(session, [(friend_id, k, v) for k, v in prints.items()], now)
    found = await fraud.assess(
        session,
        content.fraud,
        friend_id=friend_id,
        referrer_id=referrer_id,
        now=now,
        claim=(prints.get("ip"), prints.get("device")),
    )
    held = found.holds(content.fraud)
    referral = Referral(
        friend_id=friend_id,
        referrer_id=referrer_id,
        code=code.code,
        status="held" if held else "claimed",
        claimed_at=now,
        claimed_by=by,
        convert_by=now + timedelta(days=content.conversion.window_days),
        ip_hash=prints.get("ip"),
        device_hash=prints.get("device"),
        risk_score=found.score,
        risk_signals=found.signals,
        held_at=now if held else None,
    )
    session.add(referral)
    await session.flush()
    send_live(
        ctx,
        session,
        referrer_id,
        "referral.claimed",
        {"friend_name": friend.display_name, "convert_by": referral.convert_by.isoformat()},
        at=now,
    )
    if held:
        log.info("referral_held", friend_id=friend_id, referrer_id=referrer_id, score=found.score)
    return referral


async def expire_unconverted(ctx: Context, now: datetime | None = None) -> int:
    """Referrals whose conversion window passed without the qualifying action."""
    now = now or utcnow()
    t = Referral.__table__
    async with ctx.db.transaction() as session:
        return await execute_counting(
            session,
            sa.update(t).where(t.c.status == "claimed", t.c.convert_by < now).values(status="expired"),
        )
