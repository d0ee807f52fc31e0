"""Referrals: codes and links, the claim that attributes a new member to a referrer, the
conversion that pays both sides, milestones and boosts, and the review of held referrals.

One level only: a conversion pays the friend and their referrer, never the referrer's referrer.
Every reward goes through the ledger under a key naming the referral, so nothing pays twice.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from server.content.goals import Reward
from server.db import insert_ignore, lock_members, utcnow
from server.errors import ProblemError
from server.events.dispatch import DomainEvent, emit
from server.ledger import service as ledger
from server.ledger.earning import end_boost, grant_boost
from server.members.service import check_member_id, ensure_member, profile, profiles
from server.realtime.hub import send_live
from server.referrals import fraud
from server.referrals.content import ReferralsContent, program
from server.referrals.models import Referral, ReferralClick, ReferralCode, ReferralReward

if TYPE_CHECKING:
    from server.context import Context

log = structlog.get_logger(__name__)

# Generated codes avoid characters read one for another: 0/O, 1/I/L (and U, read as V).
ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
_FOLD = str.maketrans({"O": "0", "I": "1", "L": "1"})
_CODE_TEXT = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38}[A-Za-z0-9])?$")
# Look-alike digits members use to slip a word past the blocklist.
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g"})
OPEN = ("claimed", "held")
SOURCE = "referral"


def skeleton(text: str) -> str | None:
    """The form a code is kept and looked up by, or None for text that cannot be a code."""
    text = text.strip()
    if not _CODE_TEXT.match(text):
        return None
    return text.upper().replace("-", "").translate(_FOLD)


def link_for(ctx: Context, display: str) -> str:
    return f"{ctx.settings.public_base_url.rstrip('/')}/r/{display}"


def _disabled() -> ProblemError:
    return ProblemError(404, "referrals_disabled", "The referral program is not running.")


# --- codes ------------------------------------------------------------------------------------


async def _codes_of(session: AsyncSession, member_id: str) -> list[ReferralCode]:
    rows = await session.execute(
        sa.select(ReferralCode).where(ReferralCode.member_id == member_id).order_by(ReferralCode.created_at)
    )
    return list(rows.scalars())


def active_code(codes: list[ReferralCode]) -> ReferralCode | None:
    """The code a member shares: their current vanity code, else the generated one."""
    vanity = [c for c in codes if c.kind == "vanity" and c.retired_at is None]
    if vanity:
        return vanity[-1]
    return next((c for c in codes if c.kind == "generated"), None)


async def ensure_code(ctx: Context, session: AsyncSession, member_id: str) -> list[ReferralCode]:
    """The member's codes, a generated one made on first use (held under the member's lock, so
    two first requests at once make one)."""
    await lock_members(session, [member_id])
    codes = await _codes_of(session, member_id)
    if any(c.kind == "generated" for c in codes):
        return codes
    await ensure_member(session, member_id)
    length = program(ctx).code_length
    for _ in range(20):
        code = "".join(secrets.choice(ALPHABET) for _ in range(length))
        made = await session.execute(
            insert_ignore(session, ReferralCode.__table__)
            .values(code=code, display=code, member_id=member_id, kind="generated", created_at=utcnow())
            .returning(ReferralCode.__table__.c.code)
        )
        if made.first() is not None:
            return await _codes_of(session, member_id)
    raise ProblemError(503, "code_space_exhausted", "No free referral code was found; try again.")


def blocked_word(content: ReferralsContent, text: str) -> str | None:
    """The blocked word a vanity code contains, also spelt with look-alike digits."""
    plain = text.lower().replace("-", "")
    folded = plain.translate(_LEET)
    for word in content.vanity.allowlist:
        plain, folded = plain.replace(word, "-"), folded.replace(word, "-")
    for word in content.vanity.blocklist:
        if word in plain or word in folded:
            return word
    return None


async def set_vanity(ctx: Context, member_id: str, wanted: str) -> list[ReferralCode]:
    """Give the member the vanity code `wanted` (their previous vanity code is retired but stays
    theirs). Refuses a malformed code (400 `invalid_code`), one with a blocked word (422
    `vanity_code_blocked`), one taken (409 `vanity_code_taken`) and more changes than allowed
    (409 `vanity_code_limit`)."""
    content = program(ctx)
    if not content.enabled:
        raise _disabled()
    rules = content.vanity
    if not rules.enabled:
        raise ProblemError(403, "vanity_codes_disabled", "Vanity codes are not offered.")
    text = wanted.strip()
    key = skeleton(text)
    if (
        key is None
        or len(text) > 32
        or not rules.min_length <= len(text.replace("-", "")) <= rules.max_length
    ):
        raise ProblemError(
            400,
            "invalid_code",
            f"A vanity code is {rules.min_length} to {rules.max_length} letters or digits,"
            " with '-' between them if you like.",
        )
    if text.replace("-", "").isdigit():
        raise ProblemError(400, "invalid_code", "A vanity code has at least one letter.")
    if blocked_word(content, text):
        raise ProblemError(422, "vanity_code_blocked", "This code is not allowed; choose another one.")
    async with ctx.db.transaction() as session:
        codes = await ensure_code(ctx, session, member_id)
        now = utcnow()
        mine = next((c for c in codes if c.code == key), None)
        if mine is not None and mine.kind == "vanity" and mine.retired_at is None:
            return codes  # already the member's code: nothing to change
        if mine is None and sum(1 for c in codes if c.kind == "vanity") >= rules.max_changes:
            raise ProblemError(
                409, "vanity_code_limit", f"A member may choose {rules.max_changes} vanity codes in all."
            )
        if mine is not None and mine.kind == "generated":
            raise ProblemError(409, "vanity_code_taken", "That is your generated code already.")
        if mine is None:
            made = await session.execute(
                insert_ignore(session, ReferralCode.__table__)
                .values(code=key, display=text, member_id=member_id, kind="vanity", created_at=now)
                .returning(ReferralCode.__table__.c.code)
            )
            if made.first() is None:
                raise ProblemError(409, "vanity_code_taken", "That code is taken; choose another one.")
        t = ReferralCode.__table__
        await session.execute(
            sa.update(t)
            .where(
                t.c.member_id == member_id, t.c.kind == "vanity", t.c.code != key, t.c.retired_at.is_(None)
            )
            .values(retired_at=now)
        )
        if mine is not None:  # a member's own earlier vanity code, taken back
            await session.execute(sa.update(t).where(t.c.code == key).values(retired_at=None, display=text))
        forget_code(ctx)
        return await _codes_of(session, member_id)


# --- the landing page's lookups (a per-process cache: the page is the hot path) ----------------


@dataclass(frozen=True)
class CodeOwner:
    code: str  # skeleton
    display: str
    member_id: str
    name: str | None
    retired: bool


_CODE_CACHE_SECONDS = 30.0
_MISS_CACHE_SECONDS = 5.0
_CODE_CACHE_MAX = 100_000


def forget_code(ctx: Context) -> None:
    ctx.extras.pop("referral_codes", None)


async def find_code(ctx: Context, text: str) -> CodeOwner | None:
    """Who a code belongs to, remembered briefly per process (a display name or a vanity code
    changed shows on every instance within half a minute)."""
    key = skeleton(text)
    if key is None:
        return None
    cache: dict[str, tuple[float, CodeOwner | None]] = ctx.extras.setdefault("referral_codes", {})
    hit = cache.get(key)
    now = time.monotonic()
    if hit is not None and hit[0] > now:
        return hit[1]
    async with ctx.db.session() as session:
        row = (
            await session.execute(
                sa.select(
                    ReferralCode.code, ReferralCode.display, ReferralCode.member_id, ReferralCode.retired_at
                ).where(ReferralCode.code == key)
            )
        ).first()
        name = (await profile(ctx, session, row.member_id)).display_name if row is not None else None
    owner = (
        CodeOwner(row.code, row.display, row.member_id, name, row.retired_at is not None)
        if row is not None
        else None
    )
    if len(cache) >= _CODE_CACHE_MAX:
        cache.clear()
    cache[key] = (now + (_CODE_CACHE_SECONDS if owner else _MISS_CACHE_SECONDS), owner)
    return owner


# --- claims -----------------------------------------------------------------------------------


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
        raise _disabled()
    check_member_id(friend_id)
    now = now or utcnow()
    key = skeleton(code_text)
    if key is None:
        raise ProblemError(
            404, "code_not_found", "There is no referral code like that; check it and try again."
        )
    prints = fraud.fingerprints_of(ctx, signals or {})
    async with ctx.db.transaction() as session:
        code = await session.get(ReferralCode, key)
        if code is None:
            raise ProblemError(
                404, "code_not_found", "There is no referral code like that; check it and try again."
            )
        if code.retired_at is not None:
            raise ProblemError(
                410,
                "code_expired",
                "This referral code is no longer in use; ask your friend for their new one.",
            )
        referrer_id = code.member_id
        if referrer_id == friend_id:
            raise ProblemError(409, "self_referral", "You cannot use your own referral code.")
        await lock_members(session, [friend_id, referrer_id])
        if not known_only:
            await ensure_member(session, friend_id)
        sides = await profiles(ctx, session, [friend_id, referrer_id])
        friend, referrer = sides[friend_id], sides[referrer_id]
        if not friend.known:
            raise ProblemError(
                404,
                "member_not_found",
                f"There is no member '{friend_id}'; create them first (PUT /v1/members).",
            )
        existing = await session.get(Referral, friend_id)
        if existing is not None:
            if existing.referrer_id == referrer_id:
                return Claimed(existing, referrer.display_name, code.display, False)
            raise ProblemError(
                409,
                "already_referred",
                "You were referred by someone else already; a referral cannot change.",
            )
        joined = friend.joined_at
        assert joined is not None  # a known member has appeared at least
        if now > joined + timedelta(days=content.claim_window_days):
            raise ProblemError(
                409,
                "claim_window_closed",
                f"A referral code is claimed within {content.claim_window_days} days of signing up.",
            )
        circular = await session.get(Referral, referrer_id)
        if circular is not None and circular.referrer_id == friend_id:
            raise ProblemError(
                409, "circular_referral", "You referred this member; they cannot refer you back."
            )
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
            code=key,
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
        return Claimed(referral, referrer.display_name, code.display, True)


# --- conversion and rewards -------------------------------------------------------------------


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


async def _rows(session: AsyncSession, *conds: Any) -> list[ReferralReward]:
    found = await session.execute(sa.select(ReferralReward).where(*conds).order_by(ReferralReward.id))
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
    pending = await _rows(
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
    boost = None
    if content.boost is not None:
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
        boost = {"factor": b.factor, "ends_at": b.ends_at.isoformat(), "currencies": b.currencies}
    count = await converted_count(session, referral.referrer_id)
    reached = await _milestones(ctx, session, referral, count, now)
    emit(
        ctx,
        session,
        DomainEvent(
            event_id=f"referral.converted:{referral.friend_id}",
            member_id=referral.referrer_id,
            type="referral.converted",
            occurred_at=now,
            properties={"friend_id": referral.friend_id, "conversions": count},
            source="referrals",
        ),
    )
    nxt = content.milestone_after(count)
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
            "next_milestone": (
                {"count": nxt.count, "remaining": nxt.count - count, "reward": nxt.reward.model_dump()}
                if nxt
                else None
            ),
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


async def _milestones(
    ctx: Context, session: AsyncSession, referral: Referral, count: int, now: datetime
) -> list[Any]:
    """Milestones the referrer's count of converted referrals reaches and that they do not hold
    (under the referrer's lock, so concurrent conversions pay each once)."""
    content = program(ctx)
    referrer = referral.referrer_id
    taken = await _rows(session, ReferralReward.member_id == referrer, ReferralReward.role == "milestone")
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
        fresh = await _rows(session, ReferralReward.member_id == referrer, ReferralReward.key == key)
        label = m.name or f"{m.count} friends joined"
        await _pay_rows(ctx, session, fresh, {"milestone": f"referral milestone: {label}"}, now)
        reached.append(m)
    return reached


# --- review -----------------------------------------------------------------------------------


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
        await _rows(session, ReferralReward.friend_id == friend_id, ReferralReward.role != "milestone"),
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
        for r in await _rows(
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
        q = (
            sa.select(Referral)
            .where(Referral.status == "held")
            .order_by(Referral.held_at, Referral.friend_id)
        )
        if after:
            try:
                check_member_id(after)
            except ProblemError:
                raise ProblemError(400, "invalid_cursor", "The cursor is not one this list gave.") from None
            mark = await session.get(Referral, after)
            if mark is not None and mark.held_at is not None:
                q = q.where(
                    sa.or_(
                        Referral.held_at > mark.held_at,
                        sa.and_(Referral.held_at == mark.held_at, Referral.friend_id > mark.friend_id),
                    )
                )
        found = list((await session.execute(q.limit(limit))).scalars())
        if not found:
            return []
        ids = [r.friend_id for r in found]
        rewards = await _rows(session, ReferralReward.friend_id.in_(ids))
        people = await profiles(ctx, session, sorted({*ids, *(r.referrer_id for r in found)}))
    out = []
    for r in found:
        mine = [w for w in rewards if w.friend_id == r.friend_id]
        out.append(
            {
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
                    for w in mine
                ],
            }
        )
    return out


# --- the member's view ------------------------------------------------------------------------


async def my_referrals(ctx: Context, member_id: str) -> dict[str, Any]:
    """The member's code and link, what their sharing did (clicks, claims, conversions), their
    pending and earned referral rewards, the milestones and their rank on the referral board."""
    content = program(ctx)
    if not content.enabled:
        raise _disabled()
    async with ctx.db.session() as session:
        codes = await _codes_of(session, member_id)
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
            for row in await _rows(
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


async def expire_unconverted(ctx: Context, now: datetime | None = None) -> int:
    """Referrals whose conversion window passed without the qualifying action."""
    now = now or utcnow()
    t = Referral.__table__
    async with ctx.db.transaction() as session:
        result = await session.execute(
            sa.update(t).where(t.c.status == "claimed", t.c.convert_by < now).values(status="expired")
        )
        return int(result.rowcount or 0)
