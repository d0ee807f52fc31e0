"""What the check-in domain reacts to."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from server.events.dispatch import DomainEvent, declare_internal, on
from server.tasks.service import zone_changed

if TYPE_CHECKING:
    from server.context import Context


declare_internal("member.timezone_changed", "checkin.completed")


@on("member.timezone_changed")
async def on_zone_changed(ctx: Context, session: AsyncSession, event: DomainEvent) -> None:
    await zone_changed(ctx, session, event.member_id, event.properties["timezone"], event.occurred_at)
