"""What referrals react to: the friend's qualifying action (conversion) and the signals events
carry (a device, a payment means, an address), which can hold a referral for review."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from server.db import utcnow
from server.events.pipeline import DomainEvent, Emits, OnEvents, Reactions
from server.referrals import fraud
from server.referrals.content import program
from server.referrals.models import Referral
from server.referrals.service import OPEN, convert, reassess

if TYPE_CHECKING:
    from server.context import Context

log = structlog.get_logger(__name__)


def wants(ctx: Context, event_type: str) -> bool:
    content = program(ctx)
    return content.enabled and (
        event_type == content.conversion.event or event_type in content.fraud.signal_events
    )


# A referral whose window passed may still convert on a qualifying action dated inside it that
# arrives late (the brand's systems send events after the fact).
CONVERTIBLE = (*OPEN, "expired")


def _split(ctx: Context, events: list[DomainEvent]) -> tuple[list[tuple[str, str, str]], list[DomainEvent]]:
    """The signals the events carry (member, kind, hash) and the qualifying actions among them."""
    content = program(ctx)
    signal_types = set(content.fraud.signal_events)
    prints = [
        (e.member_id, kind, value)
        for e in events
        if e.type in signal_types
        for kind, value in fraud.fingerprints_of(ctx, e.properties).items()
    ]
    qualifying = [
        e for e in events if e.type == content.conversion.event and content.conversion.accepts(e.properties)
    ]
    return prints, qualifying


def _touching(ctx: Context, prints: list[tuple[str, str, str]], qualifying: list[DomainEvent]) -> Any:
    """The condition on referrals a run of events may convert or bring new evidence to, or None."""
    signalled = sorted({m for m, _, _ in prints})
    members = sorted(set(signalled) | {e.member_id for e in qualifying})
    if not members:
        return None
    t = Referral.__table__
    since = utcnow() - timedelta(days=program(ctx).fraud.review_days)
    return sa.and_(
        sa.or_(t.c.friend_id.in_(members), t.c.referrer_id.in_(signalled)),
        sa.or_(t.c.status.in_(CONVERTIBLE), sa.and_(t.c.status == "converted", t.c.paid_at >= since)),
    )


async def _other_sides(ctx: Context, session: AsyncSession, events: list[DomainEvent]) -> set[str]:
    """Both sides of the referrals the run touches: the dispatch holds them with the run's members.
    Only their ids are read (before the locks); the handler reads the rows under them."""
    cond = _touching(ctx, *_split(ctx, events))
    if cond is None:
        return set()
    t = Referral.__table__
    rows = await session.execute(sa.select(t.c.friend_id, t.c.referrer_id).where(cond))
    return {m for r in rows for m in r}


async def on_referral_events(ctx: Context, session: AsyncSession, events: list[DomainEvent]) -> None:
    """Record the signals events carry, assess open referrals they touch, and convert the
    referrals whose friend did the qualifying action inside the window."""
    content = program(ctx)
    now = utcnow()
    prints, qualifying = _split(ctx, events)
    await fraud.remember(session, prints, now)
    cond = _touching(ctx, prints, qualifying)
    if cond is None:
        return
    referrals = {r.friend_id: r for r in (await session.execute(sa.select(Referral).where(cond))).scalars()}
    for event in qualifying:
        referral = referrals.get(event.member_id)
        if (
            referral is not None
            and referral.converted_at is None
            and referral.status in CONVERTIBLE
            and referral.claimed_at <= event.occurred_at <= referral.convert_by
        ):
            await convert(ctx, session, referral, event)
    # New evidence on a referral not converted now, or converted lately: held if it now scores high.
    touched = {m for m, _, _ in prints}
    for referral in referrals.values():
        if referral.friend_id not in touched and referral.referrer_id not in touched:
            continue
        if referral.reviewed_at is not None or referral.status in ("held", "expired"):
            continue  # a manager's decision stands; a held one waits for one
        found = await reassess(session, content, referral, now)
        if found.holds(content.fraud):
            referral.status, referral.held_at = "held", now
            log.info(
                "referral_held",
                friend_id=referral.friend_id,
                score=found.score,
                paid=referral.paid_at is not None,
            )


REACTIONS = Reactions(
    events=(OnEvents(on_referral_events, wants, also_lock=_other_sides),),
    emits={
        "referral.converted": Emits(
            {"friend_id": "string", "conversions": "integer"}, nouns=("referral", "referrals")
        )
    },
    masked=fraud.MASKS,
)
