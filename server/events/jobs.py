"""Scheduled upkeep of the event tables."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
import structlog

from server.db import execute_counting, utcnow
from server.events.models import DispatchedEvent
from server.scheduler import Job

if TYPE_CHECKING:
    from server.context import Context

log = structlog.get_logger(__name__)

# A delivery is repeated within minutes (an outbox row applied but not yet deleted when a process
# died, or held through an outage); a month of receipts covers that with a wide margin.
RECEIPTS_KEPT = timedelta(days=30)


async def prune_receipts(ctx: Context, period: str) -> None:
    """Forget the dispatch receipts of events handled more than a month ago."""
    async with ctx.db.transaction() as session:
        table = DispatchedEvent.__table__
        pruned = await execute_counting(
            session, sa.delete(table).where(table.c.dispatched_at < utcnow() - RECEIPTS_KEPT)
        )
    log.info("dispatch_receipts_pruned", period=period, rows=pruned)


JOBS = (Job("events.prune_receipts", prune_receipts, 24 * 3600),)
