"""What badges and tiers react to: events from the dispatch (growth comes through the ledger)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from server.badges.service import progress_badges, wants
from server.events.dispatch import DomainEvent, declare_internal, on_batch

if TYPE_CHECKING:
    from server.context import Context

declare_internal(
    "badge.earned",
    {"badge_id": "string", "level": "integer", "round": "integer"},
    nouns=("badge", "badges"),
)
declare_internal(
    "tier.changed",
    {"tier": "string", "previous": "string", "direction": "string", "reason": "string"},
    nouns=("tier change", "tier changes"),
)


@on_batch(wants)
async def on_badge_events(ctx: Context, session: AsyncSession, events: list[DomainEvent]) -> None:
    """Every event type a badge's criterion counts, under the content serving now."""
    await progress_badges(ctx, session, events)
