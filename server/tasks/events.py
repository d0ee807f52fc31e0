"""What quests react to."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from server.events.dispatch import DomainEvent, on_batch
from server.tasks.quests import progress_quests, wants

if TYPE_CHECKING:
    from server.context import Context


@on_batch(wants)
async def on_quest_events(ctx: Context, session: AsyncSession, events: list[DomainEvent]) -> None:
    """Every event type a quest's goal names, under the content serving now."""
    await progress_quests(ctx, session, events)
