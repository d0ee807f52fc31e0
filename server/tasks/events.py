"""What check-ins and quests react to."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from server.events.dispatch import DomainEvent, declare_internal, on, on_batch
from server.tasks.quests import progress_quests, wants
from server.tasks.service import zone_changed

if TYPE_CHECKING:
    from server.context import Context


declare_internal("member.timezone_changed", {"timezone": "string", "previous": "string"})
declare_internal(
    "checkin.completed",
    {"date": "string", "streak": "integer", "cycle_day": "integer", "chest": "boolean"},
    nouns=("check-in", "check-ins"),
)


@on("member.timezone_changed")
async def on_zone_changed(ctx: Context, session: AsyncSession, event: DomainEvent) -> None:
    await zone_changed(ctx, session, event.member_id, event.properties["timezone"], event.occurred_at)


@on_batch(wants)
async def on_quest_events(ctx: Context, session: AsyncSession, events: list[DomainEvent]) -> None:
    """Every event type a quest's goal names, under the content serving now."""
    await progress_quests(ctx, session, events)
