"""What check-ins react to, and the event they tell the other domains."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from server.checkins.service import zone_changed
from server.events.dispatch import DomainEvent, declare_internal, on

if TYPE_CHECKING:
    from server.context import Context


declare_internal(
    "checkin.completed",
    {"date": "string", "streak": "integer", "cycle_day": "integer", "chest": "boolean"},
    nouns=("check-in", "check-ins"),
)


@on("member.timezone_changed")
async def on_zone_changed(ctx: Context, session: AsyncSession, event: DomainEvent) -> None:
    await zone_changed(ctx, session, event.member_id, event.properties["timezone"], event.occurred_at)
