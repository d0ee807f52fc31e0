"""What check-ins react to, and the event they tell the other domains."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from server.checkins.service import zone_changed
from server.events.pipeline import DomainEvent, Emits, OnEvents, Reactions, each_event, of_types

if TYPE_CHECKING:
    from server.context import Context


async def on_zone_changed(ctx: Context, session: AsyncSession, event: DomainEvent) -> None:
    await zone_changed(ctx, session, event.member_id, event.properties["timezone"], event.occurred_at)


REACTIONS = Reactions(
    events=(OnEvents(each_event(on_zone_changed), of_types("member.timezone_changed")),),
    emits={
        "checkin.completed": Emits(
            {"date": "string", "streak": "integer", "cycle_day": "integer", "chest": "boolean"},
            nouns=("check-in", "check-ins"),
        )
    },
)
