"""Referral codes: the generated code every member has, the vanity codes they choose, and the
lookup of a code's owner that the landing page runs on (remembered briefly per process)."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from server.db import insert_ignore, lock_members, utcnow
from server.errors import ProblemError
from server.members.service import ensure_member, profile
from server.referrals.content import ReferralsContent, Vanity, disabled, program
from server.referrals.models import ReferralCode

if TYPE_CHECKING:
    from server.context import Context

# Generated codes avoid characters read one for another: 0/O, 1/I/L (and U, read as V).
ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
_FOLD = str.maketrans({"O": "0", "I": "1", "L": "1"})
_CODE_TEXT = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38}[A-Za-z0-9])?$")
# Look-alike digits members use to slip a word past the blocklist.
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g"})


def skeleton(text: str) -> str | None:
    """The form a code is kept and looked up by, or None for text that cannot be a code."""
    text = text.strip()
    if not _CODE_TEXT.match(text):
        return None
    return text.upper().replace("-", "").translate(_FOLD)


def link_for(ctx: Context, display: str) -> str:
    return f"{ctx.settings.public_base_url.rstrip('/')}/r/{display}"


async def codes_of(session: AsyncSession, member_id: str) -> list[ReferralCode]:
    rows = await session.execute(
        sa.select(ReferralCode)
        .where(col(ReferralCode.member_id) == member_id)
        .order_by(col(ReferralCode.created_at))
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
    codes = await codes_of(session, member_id)
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
            return await codes_of(session, member_id)
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
        raise disabled()
    if not content.vanity.enabled:
        raise ProblemError(403, "vanity_codes_disabled", "Vanity codes are not offered.")
    text, key = _vanity_text(content, wanted)
    async with ctx.db.transaction() as session:
        codes = await ensure_code(ctx, session, member_id)
        now = utcnow()
        mine = next((c for c in codes if c.code == key), None)
        if mine is not None and mine.kind == "vanity" and mine.retired_at is None:
            return codes  # already the member's code: nothing to change
        if mine is None:
            await _add_vanity(session, content.vanity, codes, member_id, text, key, now)
        elif mine.kind == "generated":
            raise ProblemError(409, "vanity_code_taken", "That is your generated code already.")
        await _make_current(session, member_id, text, key, now, taken_back=mine is not None)
        forget_code(ctx)
        return await codes_of(session, member_id)


def _vanity_text(content: ReferralsContent, wanted: str) -> tuple[str, str]:
    """The vanity code as written (trimmed) and its skeleton; 400 `invalid_code` for one of the
    wrong length or without a letter, 422 `vanity_code_blocked` for one with a blocked word."""
    rules = content.vanity
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
    return text, key


async def _add_vanity(
    session: AsyncSession,
    rules: Vanity,
    codes: list[ReferralCode],
    member_id: str,
    text: str,
    key: str,
    now: datetime,
) -> None:
    """A new vanity code for the member, within the number of codes they may choose, if no one
    holds it (409 `vanity_code_limit`, `vanity_code_taken`)."""
    if sum(1 for c in codes if c.kind == "vanity") >= rules.max_changes:
        raise ProblemError(
            409, "vanity_code_limit", f"A member may choose {rules.max_changes} vanity codes in all."
        )
    made = await session.execute(
        insert_ignore(session, ReferralCode.__table__)
        .values(code=key, display=text, member_id=member_id, kind="vanity", created_at=now)
        .returning(ReferralCode.__table__.c.code)
    )
    if made.first() is None:
        raise ProblemError(409, "vanity_code_taken", "That code is taken; choose another one.")


async def _make_current(
    session: AsyncSession, member_id: str, text: str, key: str, now: datetime, *, taken_back: bool
) -> None:
    """Make `key` the member's vanity code in use: their others are retired; one of their own
    they chose before is `taken_back`, shown as written now."""
    t = ReferralCode.__table__
    await session.execute(
        sa.update(t)
        .where(t.c.member_id == member_id, t.c.kind == "vanity", t.c.code != key, t.c.retired_at.is_(None))
        .values(retired_at=now)
    )
    if taken_back:
        await session.execute(sa.update(t).where(t.c.code == key).values(retired_at=None, display=text))


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
    codes = ReferralCode.__table__
    async with ctx.db.session() as session:
        row = (
            await session.execute(
                sa.select(codes.c.code, codes.c.display, codes.c.member_id, codes.c.retired_at).where(
                    codes.c.code == key
                )
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
